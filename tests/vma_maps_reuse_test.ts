/**
 * The maps of a process parsed before the freeze (engine/dump/vm_flags.ts,
 * `prepareFrozenMaps`): the freeze reuses them only when it reads the same
 * bytes; a mapping changed between the parse and the freeze (a protection,
 * same text length) is parsed again, and a change of VmFlags alone (the
 * maps text unchanged) still shows, from the iterator read at the freeze.
 * The VmFlags given before the freeze (from the iterator's records read
 * then) are kept only when the freeze reads the same records; a madvise
 * between them makes the freeze decode what it reads.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  frozenVmFlags,
  mapsReuse,
  prepareFrozenMaps,
  recordsReuse,
  startVmFlagsCheck,
  vmFlagsPaths,
} from "../engine/dump/vm_flags.ts";
import { loadVmaIterator } from "../engine/proc/vma_flags_bpf.ts";
import { readSmapsFlags } from "../engine/proc/smaps_flags.ts";
import { countMappings, parseMapsBytes, sameBytes, takeCountedMaps } from "../engine/proc/maps.ts";
import { freezeTree, thawTree } from "../engine/dump/freeze.ts";
import { withInjection } from "../engine/dump/injected.ts";
import { SYS } from "../ffi/sysno.ts";
import { withTargets } from "./helpers/targets.ts";
import { loneRwPages, startRtMaps, withVmFlagsMode } from "./helpers/vmflags_mode.ts";

const BPF_HERE = loadVmaIterator();

Deno.test("maps reuse: the policy's count hands its bytes on once, fresh, for that pid", async () => {
  const n = countMappings(Deno.pid);
  const bytes = takeCountedMaps(Deno.pid, 60_000);
  assert.ok(bytes, "taken");
  assert.equal(parseMapsBytes(bytes).length, n, "the bytes counted");
  assert.equal(takeCountedMaps(Deno.pid, 60_000), undefined, "once");
  countMappings(Deno.pid);
  assert.equal(takeCountedMaps(Deno.pid + 1, 60_000), undefined, "another pid's");
  assert.equal(takeCountedMaps(Deno.pid, 60_000), undefined, "cleared by the miss");
  countMappings(Deno.pid);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(takeCountedMaps(Deno.pid, 5), undefined, "too old");
});

Deno.test("maps reuse: sameBytes compares every byte, aligned or not", () => {
  const a = new Uint8Array(4099).map((_, i) => i * 7);
  for (const at of [0, 1, 2, 3, 4, 4095, 4096, 4098]) {
    const b = a.slice();
    assert.ok(sameBytes(a, b));
    b[at] ^= 0x80;
    assert.ok(!sameBytes(a, b), `byte ${at}`);
    // Unaligned views of the same bytes.
    const c = new Uint8Array(4101);
    c.set(b, 1);
    assert.ok(!sameBytes(a, c.subarray(1, 4100)), `byte ${at}, unaligned`);
    c[1 + at] ^= 0x80;
    assert.ok(sameBytes(a, c.subarray(1, 4100)), `unaligned equal`);
  }
  assert.ok(!sameBytes(a, a.subarray(0, 4098)), "lengths");
});

Deno.test({
  name: "maps reuse: the freeze reuses the parse only for the same bytes; a change is seen",
  ignore: !BPF_HERE,
  fn: withTargets(async () => {
    const { t } = await startRtMaps(300);
    try {
      // One-page private anonymous read-write areas with a gap on each side (no
      // merge with a neighbour after the changes below), to change.
      const alone = loneRwPages(t.pid);
      const [target, other] = [alone[0], alone[alone.length - 1]];
      assert.ok(target && other && target !== other, `two one-page rw-p areas: ${alone.length}`);
      const round = async () => {
        const check = await withVmFlagsMode("bpf", () => startVmFlagsCheck(t.pid));
        assert.ok(check?.processes.has(t.pid), `checked: ${vmFlagsPaths.get(t.pid)}`);
        prepareFrozenMaps(check);
        const before = check!.processes.get(t.pid)!.maps!;
        assert.ok(before.areas, "parsed before the freeze");
        assert.ok(before.records, "flags given before the freeze");
        const was = { ...mapsReuse, records: { ...recordsReuse } };
        const tree = freezeTree(t.pid);
        try {
          const areas = frozenVmFlags(t.pid, check);
          assert.ok(areas, `bpf: ${vmFlagsPaths.get(t.pid)}`);
          // Whatever the path, the freeze's areas and flags are smaps' of now.
          assert.deepEqual(areas, readSmapsFlags(t.pid));
          assert.equal(recordsReuse.reused - was.records.reused, 1, "the flags given before kept");
          assert.equal(recordsReuse.decoded - was.records.decoded, 0);
          return { reused: mapsReuse.reused - was.reused, parsed: mapsReuse.parsed - was.parsed };
        } finally {
          thawTree(tree);
        }
      };
      // Nothing changed: the parse made before the freeze is the freeze's.
      assert.deepEqual(await round(), { reused: 1, parsed: 0 });
      // A protection changed (same text length): parsed again, the new protection seen.
      let calls = 0;
      const mprotect = (pid: number) =>
        withInjection(pid, (s) => {
          calls++;
          s.check(pid, "mprotect", SYS.mprotect, target.start, 4096, 1 /* PROT_READ */);
        });
      const check = await withVmFlagsMode("bpf", () => startVmFlagsCheck(t.pid));
      prepareFrozenMaps(check);
      const tree = freezeTree(t.pid);
      let changed;
      try {
        mprotect(t.pid);
        const was = { ...mapsReuse, records: { ...recordsReuse } };
        changed = frozenVmFlags(t.pid, check);
        assert.equal(recordsReuse.decoded - was.records.decoded, 1, "a new parse: decoded");
        assert.equal(mapsReuse.parsed - was.parsed, 1, "parsed again");
        assert.equal(mapsReuse.reused - was.reused, 0, "not reused");
        assert.deepEqual(changed, readSmapsFlags(t.pid));
        const area = changed!.find((a) => a.start === target.start)!;
        assert.equal(area.perms, "r--p", "the new protection");
        // The parse from before the freeze still says rw-p: it would have been wrong.
        const old = check!.processes.get(t.pid)!.maps!;
        assert.ok(!sameBytes(old.bytes, Deno.readFileSync(`/proc/${t.pid}/maps`)));
        assert.equal(
          parseMapsBytes(old.bytes).find((a) => a.start === target.start)!.perms,
          "rw-p",
        );
      } finally {
        thawTree(tree);
      }
      assert.equal(calls, 1);
      // VmFlags alone (MADV_DONTFORK: maps unchanged): reused, the flag read at the freeze.
      const check2 = await withVmFlagsMode("bpf", () => startVmFlagsCheck(t.pid));
      prepareFrozenMaps(check2);
      const tree2 = freezeTree(t.pid);
      try {
        withInjection(t.pid, (s) => {
          s.check(t.pid, "madvise", SYS.madvise, other.start, 4096, 10 /* MADV_DONTFORK */);
        });
        const was = { ...mapsReuse, records: { ...recordsReuse } };
        const areas = frozenVmFlags(t.pid, check2);
        const smaps = readSmapsFlags(t.pid);
        assert.ok(smaps.find((a) => a.start === other.start)!.vmFlags.includes("dc"));
        if (areas) {
          // The iterator path: the maps text is the same, so the parse is reused ...
          assert.equal(mapsReuse.reused - was.reused, 1, "reused");
          // ... but not the flags given before the freeze: the records differ, decoded now ...
          assert.equal(recordsReuse.decoded - was.records.decoded, 1, "records decoded");
          assert.equal(recordsReuse.reused - was.records.reused, 0, "flags not kept");
          // ... and the flag comes from the iterator read now.
          assert.deepEqual(areas, smaps);
        } else {
          // A bit the check had not confirmed: smaps at the freeze (also exact).
          assert.match(vmFlagsPaths.get(t.pid)!, /^smaps: /);
        }
      } finally {
        thawTree(tree2);
      }
    } finally {
      await t.kill();
    }
  }),
});
