/**
 * freezeTree against a tree that keeps changing (tests/targets/freeze_churn.c:
 * threads creating threads, threads forking children that fork): every
 * freeze must hold every thread and every child that exists while it
 * holds, each thread in its ptrace stop, and nothing may appear or vanish
 * until the thaw. With "nofork" the target is one process, which the
 * freeze confirms without a second round (engine/dump/freeze.ts).
 */

import assert from "node:assert/strict";
import { startTarget, withTargets } from "./helpers/targets.ts";
import { sleep } from "./helpers/wait.ts";
import { freezeTree, type FrozenTree, thawTree } from "../engine/dump/freeze.ts";
import { listTids, readChildren } from "../engine/proc/tasks.ts";

/** The state letter of thread `tid` of `pid` (/proc/<pid>/task/<tid>/stat). */
function threadState(pid: number, tid: number): string {
  const text = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/stat`);
  return text.slice(text.lastIndexOf(")") + 2, text.lastIndexOf(")") + 3);
}

/** Asserts that `tree` is the whole tree as /proc shows it now, every thread stopped. */
function assertWhole(tree: FrozenTree): void {
  const pids = new Set(tree.processes.map((p) => p.pid));
  for (const p of tree.processes) {
    assert.deepEqual(listTids(p.pid), p.threads, `threads of ${p.pid}`);
    for (const tid of p.threads) {
      assert.equal(threadState(p.pid, tid), "t", `thread ${tid} of ${p.pid} is not stopped`);
    }
    const all = [...p.children, ...(p.zombies ?? [])].sort((a, b) => a - b);
    assert.deepEqual(readChildren(p.pid), all, `children of ${p.pid}`);
    for (const c of p.children) assert.ok(pids.has(c), `child ${c} of ${p.pid} not frozen`);
  }
}

/** Freezes the churning target `rounds` times; returns how many freezes held >1 process and the most threads held. */
async function churnFreezes(extra: string[], rounds: number) {
  const t = await startTarget("freeze_churn", extra);
  const pid = Number((await t.waitFor(/^ready pid=(\d+)$/m))[1]);
  assert.equal(pid, t.pid);
  let multi = 0;
  let mostThreads = 0;
  for (let i = 0; i < rounds; i++) {
    const tree = freezeTree(t.pid);
    try {
      assertWhole(tree);
      await sleep(5); // anything still running would change the tree meanwhile
      assertWhole(tree);
    } finally {
      thawTree(tree);
    }
    if (tree.processes.length > 1) multi++;
    mostThreads = Math.max(mostThreads, tree.processes[0].threads.length);
    await sleep(5);
  }
  // Thawed: the target runs on (its churning threads come and go again).
  assert.notEqual(threadState(t.pid, t.pid), "t");
  return { multi, mostThreads };
}

Deno.test(
  "one process creating threads: each freeze holds every thread, stopped, and nothing changes until the thaw",
  withTargets(async () => {
    const { multi, mostThreads } = await churnFreezes(["nofork"], 30);
    assert.equal(multi, 0);
    assert.ok(mostThreads > 17, `no churning thread was caught (${mostThreads} threads)`);
  }),
);

Deno.test(
  "threads creating threads and forking children: each freeze holds the whole tree, and nothing changes until the thaw",
  withTargets(async () => {
    const { multi } = await churnFreezes([], 30);
    assert.ok(multi > 0, "no freeze caught a child");
  }),
);
