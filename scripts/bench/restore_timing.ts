/**
 * Timing one restore of a benchmark writer (scripts/bench/dirtier.c)
 * through the library in this process (no CLI start-up in the figures):
 * until its first heartbeat, until restore() returns, until every page is
 * in (a lazy restore is served to the end), then its own memory check.
 * Shared by the near-zero downtime parts (predump.ts, lazy.ts, migration.ts).
 *
 * @module
 */

import { restore } from "../../engine/restore/mod.ts";
import { adopt, epochMs, waitPidFree } from "./procs.ts";
import { type Gap, gapsOf, type RunningWorkload, verifyWorkload } from "./workloads.ts";
import type { MemoryCheck } from "./nearzero_report.ts";
import type { LazyEnsure } from "../../engine/memory/lazy_serve.ts";

/** What one restore took (epoch ms) and whether the restored writer checked itself. */
export interface TimedRestore {
  /** restore() was called. */
  startMs: number;
  /** restore() returned (every task released). */
  runningMs: number;
  /** Every page in (eager: = runningMs). */
  allMs: number;
  /** The restored writer's first heartbeat gap: its last beat before the dump to its first after. */
  gap: Gap;
  /** Faults the lazy server served. */
  faults: number;
  check: MemoryCheck;
}

/** The writer's longest heartbeat gap overlapping [fromMs, toMs] (epoch ms), or null. */
export function longestGapIn(w: RunningWorkload, fromMs: number, toMs: number): Gap | null {
  let best: Gap | null = null;
  for (const g of gapsOf(w)) {
    if (g.toMs < fromMs || g.fromMs > toMs) continue;
    if (!best || g.toMs - g.fromMs > best.toMs - best.fromMs) best = g;
  }
  return best;
}

/** The first heartbeat gap ending after `afterMs` (the restored copy's first beat). */
export async function firstGapAfter(
  w: RunningWorkload,
  afterMs: number,
  timeoutMs = 60_000,
): Promise<Gap> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const g = gapsOf(w).find((g) => g.toMs > afterMs);
    if (g) return g;
    if (performance.now() > deadline) {
      throw new Error(`${w.spec.name}: the restored copy does not beat`);
    }
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** The memory check of the (restored) writer: "ok" or the failure. */
export function memoryCheck(w: RunningWorkload): Promise<MemoryCheck> {
  return verifyWorkload(w, 300_000).then(() => "ok", (e) => (e as Error).message);
}

/**
 * Restores `dir` (the image of `w`, whose process is dead or dying) and
 * times it; serves a lazy restore to the end; checks the restored memory.
 */
export async function timedRestore(
  w: RunningWorkload,
  dir: string,
  opts: { lazy: boolean; verifyChecksums: boolean; lazyEnsure?: LazyEnsure },
): Promise<TimedRestore> {
  await waitPidFree(w.child.pid);
  const startMs = epochMs();
  const tree = await restore(dir, {
    lazy: opts.lazy,
    verifyChecksums: opts.verifyChecksums,
    lazyEnsure: opts.lazyEnsure,
  });
  const runningMs = epochMs();
  for (const p of tree.pids) adopt(p);
  let faults = 0;
  if (tree.lazy) {
    tree.lazy.serve();
    faults = tree.lazy.progress.faults;
    if (tree.lazy.failure) throw new Error(`lazy restore failed: ${tree.lazy.failure}`);
  }
  const allMs = epochMs();
  const gap = await firstGapAfter(w, startMs);
  return { startMs, runningMs, allMs, gap, faults, check: await memoryCheck(w) };
}
