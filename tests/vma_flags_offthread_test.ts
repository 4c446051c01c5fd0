/**
 * The VmFlags of a dump's collect read from the BPF iterator on another
 * thread, after the injected calls (engine/dump/vm_flags.ts
 * `startFrozenFlagsRead`, `completeFlagsOffThread`): the records the
 * syscall table reads are readVmaBytes' own, a table too short for them is
 * not taken, and the collect's mappings end up with smaps' flags whether
 * the flags given before the freeze are kept, decoded anew after a
 * madvise, or taken from smaps when the records do not pass.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  awaitVmFlags,
  prepareFrozenMaps,
  recordsReuse,
  startVmFlagsCheck,
  type VmFlagsCheck,
  vmFlagsPaths,
} from "../engine/dump/vm_flags.ts";
import { loadVmaIterator, readVmaBytes, startVmaBytesRead } from "../engine/proc/vma_flags_bpf.ts";
import { readSmapsFlags } from "../engine/proc/smaps_flags.ts";
import { freezeTree, thawTree } from "../engine/dump/freeze.ts";
import { withInjection } from "../engine/dump/injected.ts";
import { collectProcess, pipeTopology } from "../engine/dump/process.ts";
import { readFds } from "../engine/proc/fds.ts";
import { Refusals } from "../engine/support.ts";
import { SYS } from "../ffi/sysno.ts";
import { withTargets } from "./helpers/targets.ts";
import { loneRwPages, startRtMaps, withVmFlagsMode } from "./helpers/vmflags_mode.ts";

const BPF_HERE = loadVmaIterator();

Deno.test({
  name: "flags off thread: the table's records are readVmaBytes', a short table is not taken",
  ignore: !BPF_HERE,
  fn: withTargets(async () => {
    // 3,000 spaced mappings: ~3,000 records, three reads of the iterator's 32 KiB.
    const { t } = await startRtMaps(3000);
    const tree = freezeTree(t.pid);
    try {
      const whole = readVmaBytes(t.pid);
      assert.ok(whole.length > 2 * 32 * 1024, `${whole.length} bytes of records`);
      const read = startVmaBytesRead(t.pid, whole.length);
      await read.finished;
      assert.deepEqual(read.take(), whole);
      read.close();
      read.close(); // (again: nothing)
      // Sized for nothing: two reads, not reaching the end, so not taken.
      const short = startVmaBytesRead(t.pid, 0);
      await short.finished;
      assert.equal(short.take(), undefined);
      short.close();
      // Sized for far more: the end is seen, the same records.
      const long = startVmaBytesRead(t.pid, 10 * whole.length);
      await long.finished;
      assert.deepEqual(long.take(), whole);
      long.close();
    } finally {
      thawTree(tree);
      await t.kill();
    }
  }),
});

Deno.test({
  name: "flags off thread: the collect's mappings get smaps' flags, kept, decoded or from smaps",
  ignore: !BPF_HERE,
  fn: withTargets(async () => {
    const { t } = await startRtMaps(300);
    try {
      const other = loneRwPages(t.pid).at(-1);
      assert.ok(other, "a one-page rw-p area alone");
      /** One collect of the frozen target with `check`, `change` run first; its mappings' flags. */
      const collect = async (check: VmFlagsCheck | undefined, change?: () => void) => {
        const tree = freezeTree(t.pid);
        try {
          change?.();
          const p = tree.processes[0];
          const fds = readFds(p.pid);
          const c = collectProcess(
            p.pid,
            p.threads,
            p.children,
            fds,
            pipeTopology([{ pid: p.pid, fds }]),
            new Refusals(),
            undefined,
            undefined,
            check,
          );
          assert.ok(c.vmFlags, "the flags settle off thread");
          await awaitVmFlags([{ collected: c, image: c.image }]);
          const smaps = readSmapsFlags(t.pid);
          assert.equal(c.image.mappings.length, smaps.length);
          c.image.mappings.forEach((m, i) => {
            assert.equal(m.start, `0x${smaps[i].start.toString(16)}`);
            assert.deepEqual(m.vmFlags, smaps[i].vmFlags, `mapping ${m.start}`);
            assert.deepEqual(c.vmas[i].vmFlags, smaps[i].vmFlags, `area ${m.start}`);
          });
          return c.image.mappings.find((m) => m.start === `0x${other.start.toString(16)}`)!;
        } finally {
          thawTree(tree);
        }
      };
      const prepared = async () => {
        const check = await withVmFlagsMode("bpf", () => startVmFlagsCheck(t.pid));
        assert.ok(check?.processes.has(t.pid), `checked: ${vmFlagsPaths.get(t.pid)}`);
        prepareFrozenMaps(check);
        assert.ok(check!.processes.get(t.pid)!.maps?.records, "flags given before the freeze");
        return check!;
      };
      // Nothing changed: the flags given before the freeze are kept.
      let was = { ...recordsReuse };
      await collect(await prepared());
      assert.equal(vmFlagsPaths.get(t.pid), "bpf");
      assert.equal(recordsReuse.reused - was.reused, 1, "kept");
      // MADV_DONTFORK at the freeze (the maps text unchanged): the records read then are decoded.
      was = { ...recordsReuse };
      const madvise = () =>
        withInjection(t.pid, (s) => {
          s.check(t.pid, "madvise", SYS.madvise, other.start, 4096, 10 /* MADV_DONTFORK */);
        });
      const check = await prepared();
      const bits = check.processes.get(t.pid)!.bits;
      const changed = await collect(check, madvise);
      assert.ok(changed.vmFlags.includes("dc"), `"dc" read at the freeze: ${changed.vmFlags}`);
      if (vmFlagsPaths.get(t.pid) === "bpf") {
        assert.equal(recordsReuse.decoded - was.decoded, 1, "decoded");
        assert.equal(recordsReuse.reused - was.reused, 0, "not kept");
      } else {
        // "dc" not confirmed by the check: from smaps (also exact).
        assert.match(vmFlagsPaths.get(t.pid)!, /^smaps: .*did not confirm/);
      }
      // MADV_DOFORK at the freeze, with a check that confirmed no bit: the records read then
      // do not pass, the flags come from smaps.
      const none = await prepared();
      none.processes.get(t.pid)!.bits = 0n;
      assert.ok(bits !== 0n);
      const back = await collect(none, () =>
        withInjection(t.pid, (s) => {
          s.check(t.pid, "madvise", SYS.madvise, other.start, 4096, 11 /* MADV_DOFORK */);
        }));
      assert.match(vmFlagsPaths.get(t.pid)!, /^smaps: .*did not confirm/);
      assert.ok(!back.vmFlags.includes("dc"), `"dc" gone: ${back.vmFlags}`);
    } finally {
      await t.kill();
    }
  }),
});
