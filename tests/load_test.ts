/**
 * Load: a tree of processes with many threads (tests/targets/load_tree.c)
 * is dumped, killed and restored; every process comes back with its pid,
 * every thread with its tid and its memory pattern, and each process
 * reports so. The suite runs the full 100 processes x 10 threads (1,000 tasks);
 * scripts/load_tree.ts runs any size and prints its figures.
 */

import assert from "node:assert/strict";
import { assertChecksPassed } from "./helpers/checks.ts";
import { assertLoadReports, assertSameTasks, startLoadTree, threadCount } from "./helpers/load.ts";
import { dumpKillRestore } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

Deno.test(
  "a tree of 100 processes x 10 threads (1,000 threads) dumps and restores with the same pids, tids and memory",
  withTargets(async () => {
    const tree = await startLoadTree(100, 10);
    const { t, trigger, tids } = tree;
    const rt = await dumpKillRestore(t);
    assert.equal(rt.dump.stats.threads, threadCount(tids));
    assert.deepEqual([...rt.tree.pids].sort(), [...tids.keys()].sort(), "restored pids");
    assertSameTasks(tids, "after the restore");
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, ["children", "root"], await t.wait(60000));
    assertLoadReports(tree);
  }),
);
