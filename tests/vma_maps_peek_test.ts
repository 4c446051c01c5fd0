/**
 * The written-page scan of a pre-copied dump takes the maps parsed before
 * the freeze (engine/dump/vm_flags.ts `peekFrozenMaps`) only when the frozen
 * process's maps are the same bytes, and the collect then takes that parse
 * without reading again; a mapping changed between the parse and the
 * freeze makes both read what is there now.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  frozenVmFlags,
  mapsReuse,
  peekFrozenMaps,
  prepareFrozenMaps,
  startVmFlagsCheck,
  vmFlagsPaths,
} from "../engine/dump/vm_flags.ts";
import { loadVmaIterator } from "../engine/proc/vma_flags_bpf.ts";
import { readSmapsFlags } from "../engine/proc/smaps_flags.ts";
import { freezeTree, thawTree } from "../engine/dump/freeze.ts";
import { withInjection } from "../engine/dump/injected.ts";
import { SYS } from "../ffi/sysno.ts";
import { withTargets } from "./helpers/targets.ts";
import { loneRwPages, startRtMaps, withVmFlagsMode } from "./helpers/vmflags_mode.ts";

const BPF_HERE = loadVmaIterator();

/** The check made before a freeze, with CRYO_VMFLAGS=bpf (the iterator for a process of any size). */
async function checkNow(pid: number) {
  return await withVmFlagsMode("bpf", async () => {
    const check = await startVmFlagsCheck(pid);
    assert.ok(check?.processes.has(pid), `checked: ${vmFlagsPaths.get(pid)}`);
    prepareFrozenMaps(check);
    return check;
  });
}

Deno.test({
  name: "maps peek: the scan and the collect share the parse for the same bytes; a change is seen",
  ignore: !BPF_HERE,
  fn: withTargets(async () => {
    const { t } = await startRtMaps(300);
    try {
      const target = loneRwPages(t.pid)[0];
      assert.ok(target, "a one-page rw-p area");

      // Unchanged: the peek gives the parse, the collect takes it without another read.
      const check = await checkNow(t.pid);
      const tree = freezeTree(t.pid);
      try {
        const peeked = peekFrozenMaps(t.pid, check);
        assert.ok(peeked, "the same bytes at the freeze");
        const was = { ...mapsReuse };
        const areas = frozenVmFlags(t.pid, check);
        assert.equal(areas, peeked, "the collect takes the very parse the scan walked");
        assert.equal(mapsReuse.reused - was.reused, 1, "reused");
        assert.deepEqual(areas, readSmapsFlags(t.pid));
      } finally {
        thawTree(tree);
      }

      // Changed between the parse and the freeze's read: neither takes the parse.
      const check2 = await checkNow(t.pid);
      const tree2 = freezeTree(t.pid);
      try {
        withInjection(t.pid, (s) => {
          s.check(t.pid, "mprotect", SYS.mprotect, target.start, 4096, 1 /* PROT_READ */);
        });
        assert.equal(peekFrozenMaps(t.pid, check2), undefined, "not the same bytes");
        const was = { ...mapsReuse };
        const areas = frozenVmFlags(t.pid, check2);
        assert.equal(mapsReuse.parsed - was.parsed, 1, "parsed again");
        assert.equal(areas!.find((a) => a.start === target.start)!.perms, "r--p");
        assert.deepEqual(areas, readSmapsFlags(t.pid));
      } finally {
        thawTree(tree2);
      }
      // Without a check (no BPF path), nothing to peek at.
      assert.equal(peekFrozenMaps(t.pid, undefined), undefined);
    } finally {
      await t.kill();
    }
  }),
});
