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
 * - cryo SIGKILLed at its first page write, its queue's thread waiting
 *   (`pages`: in the freeze, or after the thaw when every page was read
 *   ahead in it), and after the thaw, its writes perhaps in flight
 *   (`notes`): no image, the target untouched.
 */

import assert from "node:assert/strict";
import { DeferredPageWriter, deferredStats } from "../engine/dump/deferred_pages.ts";
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
