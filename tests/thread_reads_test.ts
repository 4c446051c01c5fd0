/**
 * The per-thread reads of a freeze in one table run on cryo's thread
 * (ffi/thread_reads.ts) and the children files read ahead
 * (engine/proc/children_ahead.ts) give what the one-call-per-request path
 * gives: registers, XSAVE area, signal mask, private pending signals, rseq,
 * robust list and scheduling of every thread of rt_pending.c (signals
 * pending in both its threads) and of a frozen sleep(1) with more pending
 * signals than the table reads (left to the usual path), the records
 * `collectThread` and `collectSched` make from them, the table built ahead
 * and one built in place; the children of a process through the files
 * opened ahead, a thread forgotten read the usual way; the syscall user
 * dispatch modes of many threads in one table run; the freeze's poll of
 * many threads' stops in one table run.
 */

import assert from "node:assert/strict";
import { startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import { sleep } from "./helpers/wait.ts";
import { freezeTree, thawTree } from "../engine/dump/freeze.ts";
import { collectThread } from "../engine/dump/threads.ts";
import type { InjectedThreadState } from "../engine/dump/injected.ts";
import { collectSched } from "../engine/task/sched.ts";
import { frozenRseqConfigs } from "../engine/task/rseq.ts";
import { readThreadStatuses } from "../engine/proc/status.ts";
import { readChildrenOfThreads } from "../engine/proc/tasks.ts";
import { childrenAheadStats, ChildrenFiles } from "../engine/proc/children_ahead.ts";
import {
  detach,
  getRegs,
  getRseqConfig,
  getSigmask,
  getXstate,
  interrupt,
  peekSiginfo,
  seize,
  syscallUserDispatchMode,
  xsaveSize,
} from "../ffi/ptrace.ts";
import { getAffinity, getIoprio, schedGetattr } from "../ffi/sched.ts";
import { rawSyscall, SyscallError } from "../ffi/libc.ts";
import { refuseSyscallUserDispatch } from "../engine/task/syscall_dispatch.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { SYS } from "../ffi/sysno.ts";
import {
  DISPATCH_TABLE_FROM,
  PEEK_BATCH,
  prepareThreadReads,
  readThreadsHere,
  syscallUserDispatchModesEach,
  type ThreadReads,
  threadReadsAvailable,
  waitEachNoHang,
} from "../ffi/thread_reads.ts";
import { PTRACE_EVENT } from "../ffi/wait.ts";

const PENDING_READY = /^ready pid=(\d+) worker=(\d+)$/m;

const values: InjectedThreadState = {
  sigaltstack: { sp: "0x0", flags: 2, size: 0 },
  clearChildTid: "0x0",
  pdeathsig: 0,
  securebits: 0,
  timerSlackNs: 50000,
  tsc: 1,
  personality: 0,
  mempolicy: 0,
};

/** Checks `r` against the reads made one call each for thread `tid`. */
function assertSameAsCalls(tid: number, r: ThreadReads): void {
  assert.deepEqual(r.regs, getRegs(tid));
  assert.deepEqual([...r.xstate], [...getXstate(tid)]);
  assert.equal(r.sigmask, getSigmask(tid));
  assert.deepEqual(r.pending.map((b) => [...b]), peekSiginfo(tid, false).map((b) => [...b]));
  // The registration is the one passed in (the freeze's rseq check read it), not read again.
  assert.equal(r.rseq, undefined);
  const head = new BigUint64Array(1), len = new BigUint64Array(1);
  assert.equal(rawSyscall(SYS.get_robust_list, tid, head, len), 0n);
  assert.deepEqual(r.robustList, { head: head[0], len: Number(len[0]) });
  assert.deepEqual(r.sched, {
    attr: schedGetattr(tid),
    cpus: getAffinity(tid),
    ioprio: getIoprio(tid),
  });
}

Deno.test({
  name: "thread reads in one table run: the same as one call each, and the same records",
  ignore: !threadReadsAvailable(),
  fn: withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_pending", PENDING_READY);
    const worker = Number(ready[2]);
    const tree = freezeTree(t.pid);
    try {
      const tids = tree.processes[0].threads;
      assert.deepEqual(tids, [t.pid, worker]);
      const xs = xsaveSize(t.pid);
      const statuses = readThreadStatuses(t.pid, tids);
      for (const ahead of [false, true]) {
        if (ahead) prepareThreadReads(tids, xs);
        const reads = readThreadsHere(tids, xs);
        assert.deepEqual([...reads.keys()], tids);
        for (const tid of tids) {
          const r = reads.get(tid)!;
          assert.ok(r.pending.length > 0, `thread ${tid} has signals pending`);
          assertSameAsCalls(tid, r);
          assert.deepEqual(
            collectThread(t.pid, tid, values, statuses.get(tid), r),
            collectThread(t.pid, tid, values, statuses.get(tid)),
          );
          assert.deepEqual(collectSched(tid, 50000, r.sched), collectSched(tid, 50000));
        }
      }
      // The freeze's rseq check read every thread's registration; the table hands it out.
      const configs = frozenRseqConfigs();
      const withRseq = readThreadsHere(tids, xs, configs);
      for (const tid of tids) {
        assert.ok(configs.has(tid), `the freeze's rseq check read thread ${tid}`);
        assert.deepEqual(configs.get(tid), getRseqConfig(tid));
        assert.equal(withRseq.get(tid)!.rseq, configs.get(tid));
        assert.deepEqual(
          collectThread(t.pid, tid, values, statuses.get(tid), withRseq.get(tid)),
          collectThread(t.pid, tid, values, statuses.get(tid)),
        );
      }
      // A table built ahead for other threads (or another order) is not run for these.
      prepareThreadReads([worker, t.pid], xs);
      const reads = readThreadsHere(tids, xs);
      for (const tid of tids) assertSameAsCalls(tid, reads.get(tid)!);
      assert.equal(readThreadsHere([], xs).size, 0);
    } finally {
      thawTree(tree);
    }
    // Forgotten at the thaw: the threads may register again once they run.
    assert.equal(frozenRseqConfigs().size, 0);
    await Deno.writeTextFile(trigger, "");
    await t.wait(30000);
  }),
});

Deno.test({
  name: "thread reads: a thread with more pending signals than the table reads is left out",
  ignore: !threadReadsAvailable(),
  async fn() {
    const child = new Deno.Command("sleep", { args: ["60"] }).spawn();
    try {
      await sleep(50);
      const tree = freezeTree(child.pid);
      try {
        // Queued while it is in its ptrace stop: each stays pending (one per standard signal).
        const signals = [1, 2, 3, 10, 12, 13, 14, 15, 23, 28];
        assert.ok(signals.length > PEEK_BATCH);
        for (const sig of signals) {
          assert.equal(rawSyscall(SYS.tgkill, child.pid, child.pid, sig), 0n);
        }
        const xs = xsaveSize(child.pid);
        assert.equal(readThreadsHere([child.pid], xs).size, 0, "left to the usual path");
        const status = readThreadStatuses(child.pid, [child.pid]).get(child.pid);
        const record = collectThread(child.pid, child.pid, values, status);
        assert.deepEqual(record.pending.map((s) => s.signo).sort((a, b) => a - b), signals);
        // A thread that is gone: left out too.
        assert.equal(readThreadsHere([child.pid + 1_000_000], xs).size, 0);
      } finally {
        thawTree(tree);
      }
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
    }
  },
});

Deno.test({
  name: "children files read ahead: the children of the threads, a forgotten thread the usual way",
  ignore: !threadReadsAvailable(),
  async fn() {
    const sh = new Deno.Command("sh", {
      args: ["-c", "sleep 60 & sleep 60 & sleep 60 & wait"],
      stdout: "null",
    }).spawn();
    try {
      // Until its three children are there.
      for (let i = 0; i < 200 && readChildrenOfThreads(sh.pid, [sh.pid]).length < 3; i++) {
        await sleep(10);
      }
      const tree = freezeTree(sh.pid);
      try {
        const files = ChildrenFiles.open(sh.pid, [sh.pid], 1)!;
        assert.ok(files, "opened");
        assert.equal(ChildrenFiles.open(sh.pid, [sh.pid]), undefined, "fewer threads than 8");
        const runs = childrenAheadStats.runs;
        const want = readChildrenOfThreads(sh.pid, [sh.pid]);
        assert.equal(want.length, 3);
        assert.deepEqual(files.read([sh.pid]), want);
        assert.equal(childrenAheadStats.runs, runs + 1);
        files.forget(sh.pid);
        assert.deepEqual(files.read([sh.pid]), want, "the usual way");
        assert.equal(childrenAheadStats.runs, runs + 1);
        files.close();
        assert.deepEqual(tree.processes.map((p) => p.pid), [sh.pid, ...want]);
      } finally {
        thawTree(tree);
      }
      for (const c of readChildrenOfThreads(sh.pid, [sh.pid])) Deno.kill(c, "SIGKILL");
    } finally {
      try {
        sh.kill("SIGKILL");
      } catch { /* gone */ }
      await sh.status;
    }
  },
});

Deno.test({
  name:
    "syscall user dispatch modes in one table run: the same as one call each; the refusal names the thread",
  ignore: !threadReadsAvailable(),
  fn: withTargets(async () => {
    // rt_probe's main thread has syscall user dispatch on; a sleep has it off.
    const a = await startTriggered("rt_probe", /^ready pid=(\d+)$/m, { extra: ["sud"] });
    const child = new Deno.Command("sleep", { args: ["60"] }).spawn();
    try {
      await sleep(50);
      const on = freezeTree(a.t.pid), off = freezeTree(child.pid);
      try {
        const sud = a.t.pid, plain = child.pid;
        const tids = [sud, plain, sud, plain, sud, sud, plain, plain];
        assert.ok(tids.length >= DISPATCH_TABLE_FROM, "the table path");
        const modes = syscallUserDispatchModesEach(tids);
        assert.deepEqual(modes, tids.map((tid) => syscallUserDispatchMode(tid)));
        if (syscallUserDispatchMode(sud) !== undefined) {
          assert.deepEqual(modes, [1, 0, 1, 0, 1, 1, 0, 0]);
          assert.throws(
            () => refuseSyscallUserDispatch(sud, new Array(DISPATCH_TABLE_FROM).fill(sud)),
            (e: unknown) =>
              e instanceof UnsupportedError &&
              new RegExp(`process ${sud} thread ${sud}: syscall user dispatch`).test(e.message),
          );
        }
        refuseSyscallUserDispatch(plain, new Array(DISPATCH_TABLE_FROM).fill(plain));
        // A thread that is not there: the one-call path's error (ESRCH), from the table too.
        const gone = plain + 1_000_000;
        assert.throws(
          () =>
            syscallUserDispatchModesEach([...new Array(DISPATCH_TABLE_FROM - 1).fill(plain), gone]),
          (e: unknown) => e instanceof SyscallError && e.code === "ESRCH",
        );
      } finally {
        thawTree(off);
        thawTree(on);
      }
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
    }
    await Deno.writeTextFile(a.trigger, "");
    assertChecksPassed(a.t, ["sud"], await a.t.wait());
  }),
});

Deno.test({
  name: "the stops' poll in one table run: a stop reported once, nothing ready, ECHILD",
  ignore: !threadReadsAvailable(),
  async fn() {
    const child = new Deno.Command("sleep", { args: ["60"] }).spawn();
    try {
      await sleep(50);
      const none = { kind: "none" } as const;
      seize(child.pid);
      try {
        assert.deepEqual(waitEachNoHang([child.pid, child.pid]), [none, none], "not stopped yet");
        interrupt(child.pid);
        // The same thread twice: the first wait takes the report, the second finds none.
        let got = waitEachNoHang([child.pid, child.pid, 1]);
        for (let i = 0; i < 200 && typeof got[0] === "object" && got[0].kind === "none"; i++) {
          await sleep(5);
          got = waitEachNoHang([child.pid, child.pid, 1]);
        }
        assert.deepEqual(got, [
          {
            kind: "stopped",
            pid: child.pid,
            signal: 5,
            event: PTRACE_EVENT.STOP,
            groupStop: false,
          },
          none,
          10, // pid 1 is not this process's child: ECHILD
        ]);
      } finally {
        detach(child.pid);
      }
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
    }
  },
});
