/**
 * The pre-copy part of the near-zero downtime bench (scripts/bench/nearzero.ts):
 * the frozen time of a plain dump vs a dump after 1-3 pre-dumps
 * (engine/dump/parent.ts), with scripts/bench/dirtier.c rewriting random
 * pages at a fixed rate. All dumps run in this process (engine API,
 * `sync: false`, left running) against the same writer, interleaved, so
 * the figures compare as ratios within one run; the writer's own heartbeat
 * gap during each final dump is recorded next to the engine's frozen time.
 * {@link checkChain}: a chain whose final dump kills the writer, a restore
 * from the chain, and the writer's own check of every page.
 *
 * `deno task bench-predump [--near-zero-mib 512[,2048]] [--rate 16] [--gap-ms 1000] [--reps n]`
 * runs this part alone: an alias of `deno task bench --near-zero --near-zero-parts predump`.
 *
 * @module
 */

import { checkpoint } from "../../engine/dump/mod.ts";
import { epochMs } from "./procs.ts";
import type { RunningWorkload } from "./workloads.ts";
import type { ChainCheck, PreDumpRun } from "./nearzero_report.ts";
import { longestGapIn, timedRestore } from "./restore_timing.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Where and how the chains run. */
export interface ChainOptions {
  /** A directory for the images (each removed once measured). */
  work: string;
  /** Pause between two dumps of a chain (the writer writes meanwhile), ms. */
  gapMs: number;
}

let serial = 0;

/** One chain of `pre` pre-dumps then a final dump (left running unless `kill`). */
async function chain(w: RunningWorkload, pre: number, opts: ChainOptions, kill = false) {
  const pid = w.child.pid;
  let parent: string | undefined;
  const dirs: string[] = [];
  const preFrozen: number[] = [];
  for (let i = 0; i < pre; i++) {
    const d = `${opts.work}/chain-${++serial}`;
    const r = await checkpoint(pid, { dir: d, preDump: true, parent, sync: false });
    preFrozen.push(r.stats.freezeSeconds);
    dirs.push(d);
    parent = d;
    await sleep(opts.gapMs);
  }
  const d = `${opts.work}/chain-${++serial}`;
  const t0 = epochMs();
  const r = await checkpoint(pid, {
    dir: d,
    parent,
    leaveRunning: !kill,
    // The plain dump freezes for the whole copy (no copy while running).
    precopy: pre === 0 ? false : undefined,
    sync: false,
  });
  const t1 = epochMs();
  dirs.push(d);
  return { stats: r.stats, preFrozen, dirs, t0, t1 };
}

async function removeAll(dirs: string[]): Promise<void> {
  for (const d of dirs) await Deno.remove(d, { recursive: true }).catch(() => {});
}

/**
 * `reps` rounds of: a plain dump, then chains of 1, 2 and 3 pre-dumps, each
 * final dump left running (interleaved, so every chain length meets the
 * same machine). The writer keeps running.
 */
export async function measurePreDumps(
  w: RunningWorkload,
  mib: number,
  reps: number,
  opts: ChainOptions,
): Promise<PreDumpRun[]> {
  const out: PreDumpRun[] = [];
  for (let rep = 0; rep < reps; rep++) {
    for (const pre of [0, 1, 2, 3]) {
      const r = await chain(w, pre, opts);
      await removeAll(r.dirs);
      // The thawed writer prints its gap line at its next beat.
      await sleep(50);
      const gap = longestGapIn(w, r.t0, r.t1);
      out.push({
        mib,
        preDumps: pre,
        frozenSeconds: r.stats.freezeSeconds,
        heartbeatGapMs: gap ? gap.toMs - gap.fromMs : null,
        storedBytes: r.stats.pagesBytes,
        preFrozenSeconds: r.preFrozen,
      });
      await sleep(opts.gapMs);
    }
  }
  return out;
}

/**
 * The memory check of a chain: `pre` pre-dumps, a final dump that kills the
 * writer, an eager restore through the chain, the writer's own check. The
 * restored writer runs on (same pid).
 */
export async function checkChain(
  w: RunningWorkload,
  mib: number,
  pre: number,
  opts: ChainOptions,
): Promise<ChainCheck> {
  const r = await chain(w, pre, opts, true);
  try {
    const t = await timedRestore(w, r.dirs[r.dirs.length - 1], {
      lazy: false,
      verifyChecksums: false,
    });
    return { mib, preDumps: pre, frozenSeconds: r.stats.freezeSeconds, check: t.check };
  } finally {
    await removeAll(r.dirs);
  }
}
