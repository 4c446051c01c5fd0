/**
 * The per-thread part of the collect, rehearsed on the helper's one
 * thread once per target thread, up to 16 (engine/dump/rehearsal.ts
 * `rehearseOnHelper`), so that a many-threaded target's one freeze runs
 * the per-thread readers compiled: the helper's rehearsal alone runs each
 * of them once, and the 64 threads of a target then ran them cold (the
 * statuses' parse, the ptrace reads and their encodings, the scheduling
 * and seccomp reads, the credentials from the status: docs/PERFORMANCE.md,
 * branch threadsfreeze). Everything read is thrown away; only the frozen
 * helper is read.
 *
 * @module
 */

import { readStatus, readThreadStatuses } from "../proc/status.ts";
import { listTids } from "../proc/tasks.ts";
import { Refusals } from "../support.ts";
import { collectThread, sharedPending } from "./threads.ts";
import type { InjectedThreadState } from "./injected.ts";
import { collectTaskState } from "../task/mod.ts";
import { readThreadCreds } from "../task/creds.ts";
import { readThreadsHere, threadReadsAvailable, waitEachNoHang } from "../../ffi/thread_reads.ts";
import { xsaveSize } from "../../ffi/ptrace.ts";
import { ChildrenFiles } from "../proc/children_ahead.ts";
import { factsDiffer, statusFromFacts } from "./thread_facts.ts";
import { credKeyOf, credsAreStatus, statusNeeded } from "./thread_state.ts";
import { threadIteratorLayout } from "../proc/thread_state_bpf.ts";
import { CRED_BYTES } from "../../ffi/bpf_task.ts";
import { abortRseqSections, frozenRseqConfigs } from "../task/rseq.ts";
import { refuseSyscallUserDispatch } from "../task/syscall_dispatch.ts";

/**
 * At most this many rounds (each reads the helper's thread once per
 * reader), and as many of the target's statuses. 16 warm the per-thread
 * readers as well as 64 did for the 64 threads of a freeze (their collect
 * took the same CPU) for a third of the cost before the freeze
 * (docs/PERFORMANCE.md, branch threadsprep).
 */
export const THREAD_REHEARSAL_MAX_ROUNDS = 16;

/**
 * Runs the per-thread readers of the collect `rounds` times (at most
 * {@link THREAD_REHEARSAL_MAX_ROUNDS}) on the one thread of frozen helper
 * `helper`, after a read of the statuses of as many threads of `target`
 * as the freeze will read, up to as many as the rounds (with it running:
 * /proc only, the parse of real texts). Returns the rounds
 * run: 0 for fewer than 2 (the helper's own collect covers one thread) or
 * when a read failed. Never throws (only a rehearsal).
 */
export function rehearseThreads(helper: number, target: number, rounds: number): number {
  const n = Math.min(rounds, THREAD_REHEARSAL_MAX_ROUNDS);
  if (n < 2) return 0;
  try {
    // The target's own statuses, read with it running (a /proc read only): the parse of real
    // texts. Only those the freeze will read (thread_state.ts `statusNeeded`: the main thread's
    // alone when the iterator's records stand in for the others, whose stand-ins are rehearsed
    // below): 16 parsed for one read in the freeze cost ~0.9 ms before it for nothing.
    readThreadStatuses(target, listTids(target).filter(statusNeeded(target)).slice(0, n));
  } catch { /* a thread gone meanwhile: only a rehearsal */ }
  try {
    const tids = new Array<number>(n).fill(helper);
    // Read once (the reader and its parse ran per thread on the target's statuses above).
    const status = readStatus(helper, helper);
    const statuses = new Map([[helper, status]]);
    const values: InjectedThreadState = {
      sigaltstack: { sp: "0x0", flags: 2, size: 0 },
      clearChildTid: "0x0",
      pdeathsig: 0,
      securebits: 0,
      timerSlackNs: -1,
      tsc: 1,
      personality: 0,
      mempolicy: 0,
    };
    // The rseq check the freeze makes once its threads are stopped (task/rseq.ts): the helper's
    // rseq_cs is 0 (cat is in read), so nothing is moved; its table run and read run compiled.
    abortRseqSections(helper, tids);
    // The syscall user dispatch check's table run (task/syscall_dispatch.ts): the helper has none.
    refuseSyscallUserDispatch(helper, tids);
    // The freeze's poll of many threads' stops (freeze.ts `awaitStops`), its table run: asked of
    // pid 1, never this process's child (ECHILD each), so that no status is taken from anyone.
    if (threadReadsAvailable()) waitEachNoHang(new Array<number>(n).fill(1));
    // The reads of every thread in one table run, as the freeze makes them (process.ts).
    const reads = threadReadsAvailable()
      ? readThreadsHere(tids, xsaveSize(helper), frozenRseqConfigs())
      : undefined;
    const task = collectTaskState(
      helper,
      tids,
      {
        dumpable: 1,
        childSubreaper: false,
        thpDisable: 0,
        membarrier: 0,
        pdeathsig: new Map(),
        timerSlackNs: new Map([[helper, 50000]]),
      },
      new Refusals(),
      statuses,
      reads,
    );
    // The stand-in statuses made from the iterator's records (thread_facts.ts), every other round.
    const facts = {
      realCred: 0n,
      noNewPrivs: status.noNewPrivs,
      seccomp: status.seccomp,
      name: status.name,
    };
    const stand = statusFromFacts(helper, helper, status, facts);
    const statusOf = (i: number) => i % 2 ? stand : status;
    const threads = tids.map((tid, i) => ({
      ...collectThread(helper, tid, values, statusOf(i), reads?.get(tid)),
      ...task.threads.get(tid),
    }));
    // The creds' contents compared as the freeze compares a restored process's (thread_state.ts).
    const layout = threadIteratorLayout();
    const cred = { bytes: new Uint8Array(CRED_BYTES), groupInfo: 1n, ngroups: 0 };
    const mine = { ...facts, cred };
    const other = { ...facts, realCred: 1n, cred: { ...cred, bytes: new Uint8Array(CRED_BYTES) } };
    threads.forEach((_, i) => {
      factsDiffer(facts, statusOf(i), status, true);
      readThreadCreds(helper, helper, 0, false, statusOf(i));
      credKeyOf(other, mine);
      if (layout) credsAreStatus(cred, status, layout);
    });
    sharedPending(helper);
    // The children files read in one table run, as the freeze reads them (children_ahead.ts).
    const files = ChildrenFiles.open(helper, [helper], 1);
    files?.read(tids);
    files?.close();
    return threads.length;
  } catch {
    return 0; // only a rehearsal
  }
}
