/**
 * The children of a frozen process of many threads from the BPF task
 * iterator (engine/dump/thread_state.ts `childrenByIterator`, used by
 * engine/dump/freeze.ts): which threads have children comes from their
 * task->children lists, and only those threads' children files are read.
 * Against tests/targets/freeze_churn.c (threads creating threads, two
 * non-main threads forking short-lived children that fork): every freeze
 * holds every thread and exactly the children every thread's children file
 * lists, nothing changes until the thaw, and the iterator was used; a
 * record's children flag is its children file's emptiness, thread by
 * thread, on a process whose second thread has a child; the thread states
 * take the records the freeze read (the same values as a read of their
 * own), and a later freeze reads its own; the records and their values
 * made by the warm-up before the freeze are taken when the freeze reads the
 * same bytes (the same values as the freeze's own, the frozen TIF flags),
 * not when the threads changed; the dump's estimate lists a running
 * process's children from the records as its files list them.
 */

import assert from "node:assert/strict";
import { startTarget, withTargets } from "./helpers/targets.ts";
import { sleep } from "./helpers/wait.ts";
import { freezeTree, type FrozenTree, thawTree } from "../engine/dump/freeze.ts";
import { listTids, readChildren } from "../engine/proc/tasks.ts";
import { readThreadRecords, recordHasChildren } from "../engine/proc/thread_state_bpf.ts";
import {
  bpfThreadStates,
  childrenIteratorStats,
  childrenOfRunning,
  speculatedRecordsStats,
  warmUpThreadStates,
} from "../engine/dump/thread_state.ts";
import { startTriggered } from "./helpers/roundtrip.ts";
import { THREAD_BPF_HERE } from "./helpers/thread_bpf.ts";

/** Asserts that `tree` is the whole tree as /proc shows it now (every thread's children file). */
function assertWhole(tree: FrozenTree): void {
  const pids = new Set(tree.processes.map((p) => p.pid));
  for (const p of tree.processes) {
    assert.deepEqual(listTids(p.pid), p.threads, `threads of ${p.pid}`);
    const all = [...p.children, ...(p.zombies ?? [])].sort((a, b) => a - b);
    assert.deepEqual(readChildren(p.pid), all, `children of ${p.pid}`);
    for (const c of p.children) assert.ok(pids.has(c), `child ${c} of ${p.pid} not frozen`);
  }
}

Deno.test({
  name:
    "children iterator: threads forking children under churn: each freeze holds exactly the children the files list, found through the iterator",
  ignore: !THREAD_BPF_HERE,
  fn: withTargets(async () => {
    Deno.env.set("CRYO_THREADSTATE", "bpf");
    try {
      const t = await startTarget("freeze_churn", []);
      await t.waitFor(/^ready pid=(\d+)$/m);
      const before = childrenIteratorStats.used;
      let multi = 0;
      for (let i = 0; i < 30; i++) {
        const tree = freezeTree(t.pid);
        try {
          assertWhole(tree);
          await sleep(5);
          assertWhole(tree);
        } finally {
          thawTree(tree);
        }
        if (tree.processes.length > 1) multi++;
        await sleep(5);
      }
      assert.ok(childrenIteratorStats.used - before >= 30, "the iterator was not used");
      assert.ok(multi > 0, "no freeze caught a child");
    } finally {
      Deno.env.delete("CRYO_THREADSTATE");
    }
  }),
});

Deno.test({
  name:
    "children iterator: a record's children flag is its children file's emptiness, thread by thread",
  ignore: !THREAD_BPF_HERE,
  fn: async () => {
    // This process: its threads, one of them (whichever spawned it) with a child now.
    const child = new Deno.Command("sleep", { args: ["5"] }).spawn();
    try {
      const records = readThreadRecords(Deno.pid);
      assert.ok(records.length > 2);
      for (const r of records) {
        const text = Deno.readTextFileSync(`/proc/${Deno.pid}/task/${r.tid}/children`);
        assert.equal(recordHasChildren(r), text.trim() !== "", `thread ${r.tid}: ${text}`);
      }
      assert.ok(records.some(recordHasChildren));
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
  },
});

Deno.test({
  name:
    "children iterator: the thread states take the records the freeze read, with the values of a read of their own; a later freeze does not",
  ignore: !THREAD_BPF_HERE,
  fn: withTargets(async () => {
    Deno.env.set("CRYO_THREADSTATE", "bpf");
    try {
      const { t } = await startTriggered("rt_threadstate", /^ready pid=(\d+)$/m);
      const tree = freezeTree(t.pid);
      try {
        const tids = tree.processes[0].threads;
        const taken = childrenIteratorStats.recordsTaken;
        const first = bpfThreadStates(t.pid, tids);
        assert.equal(childrenIteratorStats.recordsTaken, taken + 1, "the freeze's records");
        const second = bpfThreadStates(t.pid, tids); // read again: taken once only
        assert.equal(childrenIteratorStats.recordsTaken, taken + 1);
        assert.ok(first && second);
        assert.deepEqual(first.states, second.states);
        assert.deepEqual(first.facts, second.facts);
        assert.deepEqual(first.set, second.set);
      } finally {
        thawTree(tree);
      }
      // Thawed: nothing left for a later read.
      const after = childrenIteratorStats.recordsTaken;
      bpfThreadStates(t.pid, listTids(t.pid));
      assert.equal(childrenIteratorStats.recordsTaken, after);
      await t.kill();
    } finally {
      Deno.env.delete("CRYO_THREADSTATE");
    }
  }),
});

Deno.test({
  name:
    "children iterator: the warm-up's records and values are the freeze's when it reads the same bytes, and only then",
  ignore: !THREAD_BPF_HERE,
  fn: withTargets(async () => {
    Deno.env.set("CRYO_THREADSTATE", "bpf");
    try {
      const { t } = await startTriggered("rt_threadstate", /^ready pid=(\d+)$/m);
      const { taken, missed } = speculatedRecordsStats;
      warmUpThreadStates(t.pid);
      const tree = freezeTree(t.pid);
      try {
        assert.equal(speculatedRecordsStats.taken, taken + 1, "the warm-up's records taken");
        const tids = tree.processes[0].threads;
        const first = bpfThreadStates(t.pid, tids); // the warm-up's values
        const second = bpfThreadStates(t.pid, tids); // read and made now
        assert.ok(first && second);
        for (const k of ["states", "facts", "set", "factsSet", "nsproxy", "fs", "files"] as const) {
          assert.deepEqual(first[k], second[k], k);
        }
        // The frozen threads' TIF flags (TIF_SIGPENDING set), not the running ones'.
        assert.deepEqual(
          first.records.map((r) => r.tifFlags),
          second.records.map((r) => r.tifFlags),
        );
        assert.deepEqual(first.records, second.records);
      } finally {
        thawTree(tree);
      }
      assert.equal(speculatedRecordsStats.missed, missed);
      // A record changed between the warm-up and the freeze (the main thread's timer slack,
      // set from outside): not taken, and the freeze's value is the new one.
      warmUpThreadStates(t.pid);
      Deno.writeTextFileSync(`/proc/${t.pid}/timerslack_ns`, "123456");
      const changed = freezeTree(t.pid);
      try {
        assert.equal(speculatedRecordsStats.missed, missed + 1, "the changed records not taken");
        const states = bpfThreadStates(t.pid, changed.processes[0].threads);
        assert.equal(states?.states.get(t.pid)?.timerSlackNs, 123456);
      } finally {
        thawTree(changed);
      }
      await t.kill();
      // Threads that come and go between the warm-up and the freeze: not taken.
      const c = await startTarget("freeze_churn", []);
      await c.waitFor(/^ready pid=(\d+)$/m);
      let miss = 0;
      for (let i = 0; i < 5 && miss === 0; i++) {
        const before = speculatedRecordsStats.missed;
        warmUpThreadStates(c.pid);
        await sleep(20);
        const churned = freezeTree(c.pid);
        try {
          assertWhole(churned);
        } finally {
          thawTree(churned);
        }
        miss += speculatedRecordsStats.missed - before;
      }
      assert.ok(miss > 0, "a churning process's records were taken from the warm-up");
      await c.kill();
    } finally {
      Deno.env.delete("CRYO_THREADSTATE");
    }
  }),
});

Deno.test({
  name:
    "children iterator: a running process's children for the dump's estimate, from the records, are those its threads' files list",
  ignore: !THREAD_BPF_HERE,
  fn: async () => {
    // This process: its threads, one of them (whichever spawned it) with two children now.
    const children = [1, 2].map(() => new Deno.Command("sleep", { args: ["5"] }).spawn());
    Deno.env.set("CRYO_THREADSTATE", "bpf");
    try {
      const before = childrenIteratorStats.running;
      const got = childrenOfRunning(Deno.pid);
      assert.equal(childrenIteratorStats.running, before + 1, "the records were not used");
      assert.deepEqual(got, readChildren(Deno.pid));
      for (const c of children) assert.ok(got.includes(c.pid), `child ${c.pid} missing: ${got}`);
      // Without the iterator: every thread's file, the same children.
      Deno.env.set("CRYO_THREADSTATE", "inject");
      assert.deepEqual(childrenOfRunning(Deno.pid), got);
      assert.equal(childrenIteratorStats.running, before + 1);
    } finally {
      Deno.env.delete("CRYO_THREADSTATE");
      for (const c of children) {
        c.kill("SIGKILL");
        await c.status;
      }
    }
  },
});
