/**
 * `deno run -A scripts/bench/uffd_release.ts [mib] [runs] [chunk-MiB,...]`:
 * how long the release of a pre-copy's tracking (engine/dump/uffd_release.ts)
 * stalls a program that page-faults all the time (scripts/bench/workload.c
 * `faulting`). For each run and each chunk size (0: the plain close), one
 * in-process `dump --leave-running` with the pre-copy; prints a JSON line
 * with the release's timing (total, longest ioctl, the close) and the
 * longest time the workload's heartbeat did not beat from the release's
 * start on (`stallMs`; a beat page-faults twice), then the same over half a
 * second with no dump (`quietStallMs`: the machine's noise; the heartbeat
 * reports gaps over 5 ms only). `--lift`: each chunk's protections lifted
 * (UFFDIO_WRITEPROTECT) before its unregistration.
 *
 * @module
 */

import { checkpoint } from "../../engine/dump/mod.ts";
import { releaseChunk, releaseStats } from "../../engine/dump/uffd_release.ts";
import { gapsOf, killWorkload, startWorkload } from "./workloads.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const nums = Deno.args.filter((a) => !a.includes(",") && !a.startsWith("--"));
const mib = Number(nums[0]) || 512, runs = Number(nums[1]) || 3;
releaseChunk.liftFirst = Deno.args.includes("--lift");
const chunks = (Deno.args.find((a) => a.includes(",")) ?? "0,16").split(",").map(Number);
const work = await Deno.makeTempDir({ prefix: "cryo-uffdrelease-" });
const w = await startWorkload(
  {
    name: `faulting-${mib}`,
    program: "c",
    args: ["faulting", String(mib)],
    description: "faulting heartbeat",
    quick: false,
  },
  work,
);
try {
  await sleep(500);
  for (let i = 0; i < runs; i++) {
    for (const c of chunks) {
      releaseChunk.bytes = c * 2 ** 20;
      const dir = `${work}/img-${i}-${c}`;
      const r = await checkpoint(w.child.pid, {
        dir,
        leaveRunning: true,
        precopy: true,
        sync: false,
      });
      await sleep(300); // the heartbeat reports the gap once it runs again
      const s = releaseStats[releaseStats.length - 1];
      let stall = 0;
      for (const g of gapsOf(w)) {
        if (g.toMs > s.startedAtMs) {
          stall = Math.max(stall, g.toMs - Math.max(g.fromMs, s.startedAtMs));
        }
      }
      console.log(JSON.stringify({
        mib,
        chunkMiB: c,
        frozenMs: Math.round(r.stats.freezeSeconds * 1000),
        releaseMs: +s.totalMs.toFixed(1),
        longestIoctlMs: +s.longestIoctlMs.toFixed(1),
        closeMs: +s.closeMs.toFixed(1),
        longestMs: Object.fromEntries(
          Object.entries(s.longestMs).map(([k, v]) => [k, +v.toFixed(1)]),
        ),
        chunks: s.chunks,
        leftToClose: s.leftToClose,
        stallMs: +stall.toFixed(1),
      }));
      await Deno.remove(dir, { recursive: true });
      // The same measure with no dump: the machine's own noise.
      const quietFrom = performance.timeOrigin + performance.now();
      await sleep(500);
      let quiet = 0;
      for (const g of gapsOf(w)) {
        if (g.toMs > quietFrom) quiet = Math.max(quiet, g.toMs - Math.max(g.fromMs, quietFrom));
      }
      console.log(JSON.stringify({ mib, chunkMiB: c, quietStallMs: +quiet.toFixed(1) }));
    }
  }
} finally {
  await killWorkload(w).catch(() => {});
  await Deno.remove(work, { recursive: true }).catch(() => {});
}
