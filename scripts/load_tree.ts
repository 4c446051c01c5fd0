/**
 * `deno run -A scripts/load_tree.ts [--procs 100] [--threads 10] [--kib 16]`:
 * the full-size load round trip of issue 13 (tests/load_test.ts runs a
 * smaller tree). Starts tests/targets/load_tree.c (`procs` processes of
 * `threads` threads, each thread with `kib` KiB of pattern), dumps it
 * (killing it), restores it, checks that every pid and tid came back and
 * that every process's self-check passed, and prints the figures: tasks,
 * image size, dump, freeze and restore times, time to all reports.
 * Exits 1 if anything did not come back.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { assertChecksPassed } from "../tests/helpers/checks.ts";
import { removeTempDirs, tempDir } from "../tests/helpers/fs.ts";
import {
  assertLoadReports,
  assertSameTasks,
  startLoadTree,
  threadCount,
} from "../tests/helpers/load.ts";
import { adoptPid, cleanupTargets } from "../tests/helpers/targets.ts";

const args = parseArgs({
  options: {
    procs: { type: "string", default: "100" },
    threads: { type: "string", default: "10" },
    kib: { type: "string", default: "16" },
  },
});
const procs = Number(args.values.procs);
const threads = Number(args.values.threads);
const kib = Number(args.values.kib);

/** Seconds since `t0` (performance.now() milliseconds), to two decimals. */
function since(t0: number): string {
  return ((performance.now() - t0) / 1000).toFixed(2);
}

let failed = false;
try {
  let t0 = performance.now();
  const tree = await startLoadTree(procs, threads, kib, 300000);
  const tasks = threadCount(tree.tids);
  console.log(`tree: ${procs} processes, ${tasks} threads, started in ${since(t0)} s`);

  const dir = `${await tempDir("cryo-load-")}/image`;
  t0 = performance.now();
  const dump = await checkpoint(tree.t.pid, { dir });
  console.log(
    `dump: ${since(t0)} s (frozen ${dump.stats.freezeSeconds.toFixed(2)} s), ` +
      `${dump.stats.threads} threads, ${(dump.stats.pagesBytes / 2 ** 20).toFixed(1)} MiB of pages`,
  );
  await tree.t.wait(60000);

  t0 = performance.now();
  const restored = await restore(dir);
  tree.t.resetAfterRestore();
  for (const pid of restored.pids) if (pid !== tree.t.pid) adoptPid(pid);
  console.log(`restore: ${since(t0)} s, ${restored.pids.length} processes`);
  assertSameTasks(tree.tids, "after the restore");
  console.log(`same pids and tids: ${restored.pids.length} processes, ${tasks} threads`);

  t0 = performance.now();
  await Deno.writeTextFile(tree.trigger, "");
  assertChecksPassed(tree.t, ["children", "root"], await tree.t.wait(300000));
  assertLoadReports(tree);
  console.log(`self-checks: all ${procs} processes ok after ${since(t0)} s`);
} catch (e) {
  failed = true;
  console.error(`FAILED: ${e instanceof Error ? e.message : e}`);
} finally {
  await cleanupTargets();
  await removeTempDirs();
}
Deno.exit(failed ? 1 : 0);
