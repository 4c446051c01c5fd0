/**
 * Test helpers for load tests: a tree of processes with many threads
 * (tests/targets/load_tree.c), its expected pids and tids, and the check of
 * its reports after a restore. Shared by tests/load_test.ts and
 * scripts/load_tree.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { tasksOf } from "./proc.ts";
import { startTriggered, type TriggeredTarget } from "./roundtrip.ts";

/** The ready line load_tree prints once every process and thread is parked. */
const READY = /^ready pid=(\d+) procs=(\d+)$/m;

/** A running load_tree and what it reported before the dump. */
export interface LoadTree extends TriggeredTarget {
  /** Every process's pid and its tids (the main thread first), as the tree reported them. */
  tids: Map<number, number[]>;
}

/** Parses the `<name>-<pid>` files of load_tree's work directory: pid -> that file's line. */
function linesOf(work: string, name: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const e of Deno.readDirSync(work)) {
    const m = e.name.match(new RegExp(`^${name}-(\\d+)$`));
    if (m) out.set(Number(m[1]), Deno.readTextFileSync(`${work}/${e.name}`).trim());
  }
  return out;
}

/**
 * Starts load_tree with `procs` processes of `threads` threads each
 * (`kib` KiB of pattern per thread), waits until the whole tree is parked
 * and checks that /proc shows exactly the tids each process reported.
 */
export async function startLoadTree(
  procs: number,
  threads: number,
  kib = 16,
  timeoutMs = 60000,
): Promise<LoadTree> {
  const tt = await startTriggered("load_tree", READY, {
    passWork: true,
    extra: [String(procs), String(threads), String(kib)],
    timeoutMs,
  });
  const tids = new Map<number, number[]>();
  for (const [pid, line] of linesOf(tt.work, "ready")) {
    const [p, list] = line.split(" ");
    assert.equal(Number(p), pid);
    tids.set(pid, list.split(",").map(Number));
  }
  assert.equal(tids.size, procs, "ready files");
  assertSameTasks(tids, "before the dump");
  return { ...tt, tids };
}

/** Asserts that every process of `tids` exists with exactly those thread ids. */
export function assertSameTasks(tids: Map<number, number[]>, when: string): void {
  for (const [pid, list] of tids) {
    assert.deepEqual(tasksOf(pid), [...list].sort((a, b) => a - b), `tids of ${pid} ${when}`);
  }
}

/** The number of threads in all of `tids`. */
export function threadCount(tids: Map<number, number[]>): number {
  let n = 0;
  for (const list of tids.values()) n += list.length;
  return n;
}

/**
 * After the trigger, once the root exited: asserts that every process
 * wrote an "ok" report naming the same pid and tids as before the dump.
 */
export function assertLoadReports(tree: LoadTree): void {
  const reports = linesOf(tree.work, "report");
  const failed = [...reports.values()].filter((l) => !l.endsWith(" ok"));
  assert.deepEqual(failed, [], "processes reported failures");
  assert.deepEqual([...reports.keys()].sort(), [...tree.tids.keys()].sort(), "reports");
  for (const [pid, list] of tree.tids) {
    assert.equal(reports.get(pid), `${pid} ${list.join(",")} ok`, `report of ${pid}`);
  }
}
