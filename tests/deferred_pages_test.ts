/**
 * A dump frozen once with a CPU to spare hands its page writes to other
 * threads, past the thaw (engine/dump/deferred_pages.ts):
 *
 * - the writer puts every buffer's bytes at its offset (a short last
 *   one too), the same file as a `pwrite` per buffer, with a write table
 *   per buffer and with one queue thread for all (ffi/write_queue.ts); a
 *   write the kernel refuses makes `settled` throw; a queue's write that
 *   ran before it was posted (EBADF) says so, and its entries never
 *   posted end at `close`;
 * - a one-freeze `--leave-running` dump of tests/targets/rt_precopy.c
 *   (4 MiB rewritten all the time) with the writes deferred
 *   (`CRYO_COPY_LANES=native`) restores the memory of its freeze, and the
 *   original runs on and checks itself;
 * - the buffers made ready before the freeze are handed out (to a copy
 *   ahead, to a writer) only once the run that readies them (it writes
 *   them) is over, and a process_vm_readv into them runs at the pace of
 *   memory the kernel wrote before (on this VM ~8x faster than into
 *   memory only faulted in: checked where the machine shows the
 *   difference);
 * - cryo SIGKILLed at its first page write, its queue's thread waiting
 *   (`pages`: in the freeze, or after the thaw when every page was read
 *   ahead in it), and after the thaw, its writes perhaps in flight
 *   (`notes`): no image, the target untouched.
 */

import assert from "node:assert/strict";
import {
  DeferredPageWriter,
  deferredStats,
  giveBackReady,
  prepareDeferredBuffers,
  takeReadyBuffers,
} from "../engine/dump/deferred_pages.ts";
import { pageAlignedBuffer } from "../ffi/page_file.ts";
import { addressOf } from "../ffi/libc.ts";
import { processVmReadFully } from "../ffi/process_vm.ts";
import { SyscallTable } from "../ffi/syscall_table.ts";
import { SYS } from "../ffi/sysno.ts";
import { EBADF, WriteQueue } from "../ffi/write_queue.ts";
import { crc32 } from "../engine/image/crc32.ts";
import { closeRawFd, openRawFd, tablesAvailable } from "../ffi/syscall_table.ts";
import { withTargets } from "./helpers/targets.ts";
import { tempDir } from "./helpers/fs.ts";
import { frozenOnceRoundTrip, killedDumpLeavesTarget } from "./helpers/copy_lane_runs.ts";

const MiB = 1 << 20;
const ignore = !tablesAvailable();

for (const queued of [false, true]) {
  Deno.test({
    name: `deferred page writes${
      queued ? " (one queue thread)" : ""
    }: every buffer at its offset; a refused write throws at settled`,
    ignore,
    async fn() {
      const path = `${await tempDir("cryo-deferred-")}/pages`;
      Deno.writeFileSync(path, new Uint8Array());
      const want = new Uint8Array(40 * MiB + 12288);
      for (let i = 0; i < want.length; i += 4) {
        new DataView(want.buffer).setUint32(i, (i * 2654435761) >>> 0);
      }
      // Past 32 MiB in flight: buffers whose writes are done are reused (or waited for).
      const w = new DeferredPageWriter(MiB, path, queued ? want.length : undefined, queued);
      assert.equal(w.sumsSubmits, queued, "the queue sums the buffers");
      const crcs: number[] = [];
      for (let at = 0; at < want.length; at += MiB) {
        const n = Math.min(MiB, want.length - at);
        w.acquire(at).set(want.subarray(at, at + n));
        crcs.push(crc32(want.subarray(at, at + n)));
        w.submit(n, at);
      }
      await w.close(); // nothing to wait for here
      await w.settled();
      assert.deepEqual(Deno.readFileSync(path), want);
      if (queued) assert.deepEqual(w.submittedCrcs(), crcs, "each buffer's CRC, in order");

      const bad = new DeferredPageWriter(MiB, path, queued ? 2 * MiB : undefined);
      bad.acquire(-4096).fill(1);
      bad.submit(4096, -4096); // EINVAL
      await assert.rejects(() => bad.settled(), /pwrite of page data at -4096 failed/);
      await bad.abort(); // after settled: nothing more
    },
  });
}

/** A pattern no read of /dev/zero leaves: word i is i * 2654435761 + seed. */
function pattern(b: Uint8Array, seed: number): void {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i + 4 <= b.length; i += 4) v.setUint32(i, (i * 2654435761 + seed) >>> 0);
}

/** The offset of the first byte of `b` not {@link pattern}'s with `seed`, or -1. */
function firstDifference(b: Uint8Array, seed: number): number {
  const want = new Uint8Array(b.length);
  pattern(want, seed);
  return b.findIndex((x, i) => x !== want[i]);
}

Deno.test({
  name: "buffers made ready before a freeze: handed out only once their readying run is over",
  ignore,
  async fn() {
    // Right after the preparation its run (~25 ms here) still writes the buffers.
    prepareDeferredBuffers(16 * MiB, MiB);
    const taken = takeReadyBuffers(16, MiB);
    assert.equal(taken.length, 16);
    taken.forEach((b, i) => pattern(b, i));
    const path = `${await tempDir("cryo-ready-")}/pages`;
    Deno.writeFileSync(path, new Uint8Array());
    prepareDeferredBuffers(16 * MiB, MiB); // the writer's acquire takes them from the pool
    const w = new DeferredPageWriter(MiB, path, undefined, false);
    const acquired = w.acquire(0);
    pattern(acquired, 99);
    await new Promise((r) => setTimeout(r, 300)); // any run still writing is over by now
    taken.forEach((b, i) => {
      assert.equal(firstDifference(b, i), -1, `buffer ${i} taken ahead kept its bytes`);
    });
    assert.equal(firstDifference(acquired, 99), -1, "the writer's buffer kept its bytes");
    await w.abort();
    giveBackReady(taken);
  },
});

Deno.test({
  name: "buffers made ready before a freeze: a process_vm_readv into them at warm memory's pace",
  ignore,
  async fn() {
    const size = 16 * MiB;
    const source = new Uint8Array(size);
    pattern(source, 7);
    const readInto = (b: Uint8Array) => {
      const t = performance.now();
      for (let at = 0; at < size; at += MiB) {
        processVmReadFully(Deno.pid, addressOf(source) + BigInt(at), b.subarray(at, at + MiB));
      }
      return performance.now() - t;
    };
    readInto(pageAlignedBuffer(size)); // (the source and the code warm)
    let populated = Infinity, ready = Infinity;
    for (let round = 0; round < 3; round++) {
      // Faulted in only, as the buffers were before.
      const plain = pageAlignedBuffer(size);
      const table = new SyscallTable(1);
      table.syscall(SYS.madvise, plain, size, 23 /* MADV_POPULATE_WRITE */);
      await table.run().finished;
      populated = Math.min(populated, readInto(plain));
      prepareDeferredBuffers(size, MiB);
      const taken = takeReadyBuffers(16, MiB); // (waits for their run)
      assert.equal(taken.length, 16);
      const t = performance.now();
      for (let k = 0; k < 16; k++) {
        processVmReadFully(Deno.pid, addressOf(source) + BigInt(k * MiB), taken[k]);
      }
      ready = Math.min(ready, performance.now() - t);
      const last = taken[15].findIndex((x, i) => x !== source[15 * MiB + i]);
      assert.equal(last, -1, "the bytes read");
      // (Not given back: the next round's are fresh.)
    }
    console.log(
      `16 MiB read into populated buffers ${populated.toFixed(1)} ms, into ready ones ${
        ready.toFixed(1)
      } ms`,
    );
    // Where the kernel's first write of a page costs nothing more, there is nothing to check.
    if (populated > 8) assert.ok(ready < populated / 2, `${ready} ms against ${populated} ms`);
  },
});

Deno.test({
  name: "write queue: writes in order, EBADF for a write run unposted, the rest released at close",
  ignore,
  async fn() {
    const path = `${await tempDir("cryo-wqueue-")}/pages`;
    Deno.writeFileSync(path, new Uint8Array(8192));
    const file = openRawFd(path, true);
    try {
      const q = new WriteQueue(4);
      const a = new Uint8Array(4096).fill(7), b = new Uint8Array(4096).fill(9);
      const ja = q.post(file, a, 4096, 4096);
      const jb = q.post(-1, b, 4096, 0); // as a write run before it was posted finds it
      await q.close(); // entries 2 and 3 never posted: released
      assert.equal(q.post(file, a, 4096, 0), -1, "closed");
      assert.equal(q.result(ja), 4096n);
      assert.equal(q.result(jb), -BigInt(EBADF));
      // Woken by their posts (or found set): not early, so their folds are trusted.
      assert.equal(q.wokeEarly(ja), false);
      assert.equal(q.wokeEarly(jb), false);
      const got = Deno.readFileSync(path);
      assert.deepEqual(got.subarray(4096), a);
      assert.deepEqual(got.subarray(0, 4096), new Uint8Array(4096));
    } finally {
      closeRawFd(file);
    }
  },
});

Deno.test({
  name:
    "a dump frozen once with its page writes deferred: exact at the freeze, the original runs on",
  ignore,
  fn: withTargets(() =>
    frozenOnceRoundTrip("native", () => deferredStats.writes, "the page writes were deferred")
  ),
});

for (
  const [at, when] of [
    [
      "pages",
      "at its first page write (frozen, or thawed: read ahead), its queue's thread waiting",
    ],
    ["notes", "after the thaw, its deferred page writes in flight"],
  ] as const
) {
  Deno.test({
    name: `cryo dump --leave-running killed ${when}: no image, the target untouched`,
    ignore,
    fn: withTargets(() => killedDumpLeavesTarget("native", at)),
  });
}
