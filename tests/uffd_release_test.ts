/**
 * The chunked release of a pre-copy's tracking (engine/dump/uffd_release.ts):
 * after the thaw of `dump --leave-running`, cryo lifts the protections and
 * unregisters the mappings a chunk at a time through its copy of the
 * userfaultfd, then closes it, instead of one close that holds the target's
 * mmap lock for writing through the whole walk.
 *
 * - with small chunks (many ioctls, issued by a syscall table on another
 *   thread): every chunk is released by the ioctls
 *   (none left to the close), and the target ends exactly as after the
 *   close: the same mappings and VmFlags in /proc/<pid>/smaps as before
 *   the dump (merged back), no "uw" flag, no write-protected page, the same
 *   fds; it goes on writing and checks itself, and the image restores;
 * - the same for the final dump of a pre-copy chain (`--parent`, left
 *   running: engine/dump/tracking.ts `TrackingRelease`), over the trackable
 *   mappings read after the thaw;
 * - the target killed while cryo is paused in the middle of the release
 *   (on cryo's thread, or by a syscall table on another thread):
 *   cryo finishes (the ioctls fail on a dead mm, the close is harmless) and
 *   the dump succeeds (its image was complete at the thaw).
 *
 * - cryo SIGKILLed in the middle of a chain's final release (the image
 *   already in place): the image is there, and the target ends with no
 *   tracking and its mappings as before (cryo's copies closed by its death).
 *
 * cryo SIGKILLed in the middle of a pre-copy's release is in
 * tests/precopy_test.ts (`precopy-release-chunk`).
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import {
  RELEASE_SPAN_CHUNKS,
  releaseChunk,
  releaseChunks,
  releaseStats,
} from "../engine/dump/uffd_release.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import {
  assertNoTracking,
  assertOriginalThenRestored,
  RT_PRECOPY_CHECKS,
  RT_PRECOPY_READY,
  trackingTraces,
} from "./helpers/tracking.ts";
import { pathExists, tempDir } from "./helpers/fs.ts";
import { startPaused } from "./helpers/kill_anywhere.ts";

/** Each mapping of /proc/<pid>/smaps: its header line and its VmFlags. */
function smapsShape(pid: number): string[] {
  const out: string[] = [];
  for (const l of Deno.readTextFileSync(`/proc/${pid}/smaps`).split("\n")) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(l)) out.push(l);
    else if (l.startsWith("VmFlags:")) out[out.length - 1] += ` | ${l}`;
  }
  return out;
}

for (
  const [what, dumpWith] of [
    [
      "the tracking released in 1 MiB chunks: nothing left to the close, the mappings as before the dump",
      async (pid: number, dir: string) => {
        const dump = await checkpoint(pid, { dir, leaveRunning: true, precopy: true });
        assert.ok(dump.stats.precopy, "the dump pre-copied");
      },
    ],
    [
      "a chain's final dump left running: its tracking released in 1 MiB chunks, the mappings as before",
      async (pid: number, dir: string) => {
        const pre = await tempImageDir();
        await checkpoint(pid, { dir: pre, preDump: true }); // keeps its tracking: no release
        await checkpoint(pid, { dir, parent: pre, leaveRunning: true });
      },
    ],
  ] as const
) {
  Deno.test(
    what,
    withTargets(async () => {
      const { t, trigger, ready } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
        extra: ["64"],
      });
      const region = BigInt(`0x${ready[2]}`), pages = Number(ready[3]);
      const before = trackingTraces(t.pid, region, pages);
      const shape = smapsShape(t.pid);
      const dir = await tempImageDir();
      const saved = releaseChunk.bytes;
      releaseChunk.bytes = 1 << 20;
      const n = releaseStats.length;
      try {
        await dumpWith(t.pid, dir);
      } finally {
        releaseChunk.bytes = saved;
      }
      const stats = releaseStats.slice(n);
      assert.equal(stats.length, 1, "one release");
      // 64 MiB present: chunks of 1 MiB of pages, each ending on a 2 MiB boundary (releaseChunks).
      assert.ok(stats[0].chunks >= 32, `${stats[0].chunks} chunks released by ioctls`);
      assert.equal(stats[0].leftToClose, 0, "no chunk left to the close");
      const after = trackingTraces(t.pid, region, pages);
      assert.deepEqual(after.fds, before.fds, "the same fds");
      assert.equal(after.maps, before.maps, "the same mappings");
      assert.deepEqual(smapsShape(t.pid), shape, "the same mappings and VmFlags in smaps");
      assertNoTracking(after);
      await assertOriginalThenRestored(t, trigger, dir);
    }),
  );
}

// "precopy-release-chunk" releases on cryo's thread; "precopy-release-table" by a syscall
// table on another thread (the default), stopped with cryo right after it started.
for (const phase of ["precopy-release-chunk:2", "precopy-release-table"]) {
  Deno.test(
    `the target killed in the middle of the tracking's release${
      phase === "precopy-release-table" ? " by a syscall table" : ""
    }: cryo finishes, the dump succeeds`,
    withTargets(async () => {
      const { t } = await startTriggered("rt_precopy", RT_PRECOPY_READY, { extra: ["64"] });
      const dir = `${await tempDir("cryo-uffdrelease-")}/image`;
      const paused = await startPaused(
        ["dump", String(t.pid), "--dir", dir, "--leave-running", "--precopy"],
        phase,
      );
      await t.kill();
      paused.child.kill("SIGCONT");
      const out = await paused.output;
      assert.equal(out.code, 0, out.stderr);
      assert.ok(pathExists(`${dir}/manifest.json`), "the image is there");
    }),
  );
}

Deno.test(
  "cryo killed in the middle of a chain's final release: the image is there, no tracking left",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["64"],
    });
    const region = BigInt(`0x${ready[2]}`), pages = Number(ready[3]);
    const before = trackingTraces(t.pid, region, pages);
    const pre = await tempImageDir();
    await checkpoint(t.pid, { dir: pre, preDump: true });
    const dir = `${await tempDir("cryo-uffdrelease-")}/image`;
    const paused = await startPaused(
      ["dump", String(t.pid), "--dir", dir, "--parent", pre, "--leave-running"],
      "precopy-release-chunk:2",
    );
    const at = trackingTraces(t.pid, region, pages);
    assert.ok(at.uffdFlags > 0, "the tracking was still registered");
    paused.child.kill("SIGKILL");
    await paused.output;
    assert.ok(pathExists(`${dir}/manifest.json`), "the image is there");
    const after = trackingTraces(t.pid, region, pages);
    assert.deepEqual(after.fds, before.fds, "the same fds");
    assert.equal(after.maps, before.maps, "the same mappings");
    assertNoTracking(after);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, RT_PRECOPY_CHECKS, await t.wait(30000), {
      what: "original after the killed release",
    });
  }),
);

Deno.test("the release's chunks: by the pages present when known, covering the ranges exactly", () => {
  const MiB = 1 << 20, GiB = 1 << 30, base = 0x7f0000000000;
  /** The chunks touch, start and end with `ranges` (each merged with its touching neighbours). */
  const covers = (chunks: [number, number][], ranges: [number, number][]) => {
    let r = 0, at = ranges[0][0];
    for (const [s, e] of chunks) {
      assert.ok(e > s, "not empty");
      assert.equal(s, at, "no gap, no overlap");
      at = e;
      if (at === ranges[r][1]) at = ranges[++r]?.[0] ?? NaN;
    }
    assert.equal(r, ranges.length, "every range covered");
  };
  // Without data: every chunkBytes of each range, touching ranges as one.
  const ranges: [number, number][] = [[base, base + 8 * GiB], [
    base + 8 * GiB,
    base + 8 * GiB + MiB,
  ]];
  const plain = releaseChunks(ranges, 16 * MiB);
  assert.equal(plain.length, 8 * 64 + 1);
  covers(plain, [[base, base + 8 * GiB + MiB]]);
  // sparse-8GiB's shape: 1 MiB present every 32 MiB (256 MiB in 8 GiB).
  const data = Array.from({ length: 256 }, (_, i) => ({
    start: base + i * 32 * MiB,
    end: base + i * 32 * MiB + MiB,
  }));
  const byData = releaseChunks(ranges, 16 * MiB, data);
  covers(byData, [[base, base + 8 * GiB + MiB]]);
  assert.ok(byData.length <= 24, `${byData.length} chunks`);
  for (const [s, e] of byData) {
    const present = data.reduce(
      (n, d) => n + Math.max(0, Math.min(e, d.end) - Math.max(s, d.start)),
      0,
    );
    assert.ok(present <= 17 * MiB, "about chunkBytes of pages (rounded up to 2 MiB)");
    assert.ok(e - s <= RELEASE_SPAN_CHUNKS * 16 * MiB, "bounded span");
    assert.ok(e % (2 * MiB) === 0 || e === base + 8 * GiB + MiB, "ends on a huge page boundary");
  }
  // Dense data: the same cut as without it; nothing present: span-bounded chunks.
  const dense = [{ start: base, end: base + 64 * MiB }];
  assert.deepEqual(
    releaseChunks([[base, base + 64 * MiB]], 16 * MiB, dense),
    releaseChunks([[base, base + 64 * MiB]], 16 * MiB),
  );
  const none = releaseChunks([[base, base + 8 * GiB]], 16 * MiB, []);
  assert.equal(none.length, 8 * GiB / (RELEASE_SPAN_CHUNKS * 16 * MiB));
  covers(none, [[base, base + 8 * GiB]]);
  // Separate ranges stay separate chunks.
  const two: [number, number][] = [[base, base + 4 * MiB], [base + 8 * MiB, base + 12 * MiB]];
  assert.deepEqual(releaseChunks(two, 16 * MiB, [{ start: base, end: base + 12 * MiB }]), two);
});
