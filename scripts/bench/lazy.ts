/**
 * The restore part of the near-zero downtime bench (scripts/bench/nearzero.ts):
 * eager vs `--lazy` restore of the writer (scripts/bench/dirtier.c, which
 * keeps rewriting its memory, so the lazily restored program faults on
 * pages the background pass has not reached yet), through the library in
 * this process (no CLI start-up in the figures). Each run: a dump that
 * kills the writer, a restore, and
 *
 * - first instruction: from calling restore() to the end of the restored
 *   writer's first heartbeat gap (it beats every ms: the first beat
 *   after the restore);
 * - tree released: restore() returned (every task released);
 * - all pages: eager: the same; lazy: the server's last page copied;
 * - the writer's own memory check (SIGUSR1: "verify ok") afterwards; the
 *   restored writer runs on for the next measurement.
 *
 * `deno task bench-lazy [--near-zero-mib 512[,2048]] [--reps n]` runs this part
 * alone: an alias of `deno task bench --near-zero --near-zero-parts lazy`.
 *
 * @module
 */

import { checkpoint } from "../../engine/dump/mod.ts";
import type { RunningWorkload } from "./workloads.ts";
import type { RestoreRun } from "./nearzero_report.ts";
import { timedRestore } from "./restore_timing.ts";

let serial = 0;

/** One dump (killing the writer) and one restore, eager or lazy, of `w`. */
export async function measureRestore(
  w: RunningWorkload,
  mib: number,
  lazy: boolean,
  work: string,
): Promise<RestoreRun> {
  const dir = `${work}/restore-${++serial}`;
  try {
    await checkpoint(w.child.pid, { dir, sync: false });
    const t = await timedRestore(w, dir, { lazy, verifyChecksums: false });
    return {
      mib,
      mode: lazy ? "lazy" : "eager",
      firstMs: t.gap.toMs - t.startMs,
      runningMs: t.runningMs - t.startMs,
      allMs: t.allMs - t.startMs,
      faults: t.faults,
      check: t.check,
    };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
