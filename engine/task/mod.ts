/**
 * Task state beyond memory, fds and signals: scheduling (sched.ts),
 * process and thread attributes (attrs.ts) and seccomp (seccomp.ts).
 * These entry points are what the dump collector, the restore compiler and
 * the restore session call, one line each.
 *
 * Where each piece is restored:
 * - restore program (main thread, before END): child subreaper, THP
 *   disable, membarrier registrations;
 * - engine finalize, before the bootstrap is unmapped and before detach,
 *   {@link restoreTaskState} then {@link restoreTaskStateAfterCredentials}
 *   (credentials restored by injection belong between the two):
 *   scheduling of every thread (from cryo), oom_score_adj (from cryo),
 *   no_new_privs, seccomp (injected; suspended until detach), then
 *   pdeathsig and dumpable (injected; a credential change resets them);
 * - restore pre-flight: login uid and session id the restore can give
 *   (the restorer's, or written by the launcher: attrs.ts `checkLoginIds`);
 *   scheduling this host cannot give is refused before anything is created.
 *
 * @module
 */

import type { ProcessImage, ThreadState } from "../model.ts";
import type { InjectionSession } from "../dump/injected.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import type { Refusals } from "../support.ts";
import { UnsupportedError } from "../errors.ts";
import {
  checkLoginIds,
  checkThreadSpeculation,
  collectProcessAttrs,
  collectThreadAttrs,
  emitProcessAttrs,
  type InjectedAttrs,
  type ProcessAttrs,
  type ProcessAttrValues,
  queryAttrs,
  restoreAttrsAfterCredentials,
  restoreAttrsBeforeCredentials,
  restoreCpuAndMdwe,
  type ThreadCpuValues,
  type ThreadRecordValues,
} from "./attrs.ts";
import { checkSchedulable, collectSched, restoreSched } from "./sched.ts";
import { PTRACE_O } from "../../ffi/ptrace.ts";
import type { ProcStatus } from "../proc/status.ts";
import type { ThreadReads } from "../../ffi/thread_reads.ts";
import { checkSessionKeyrings, checkThreadKeyrings } from "./keyrings.ts";
import { collectSeccomp, restoreSeccomp, suspendSeccomp, type TaskInjector } from "./seccomp.ts";
import { checkThreadSharing } from "./thread_sharing.ts";

export type { TaskInjector } from "./seccomp.ts";
export { loginuidToWrite } from "./attrs.ts";

/** The task state of one process: process-wide and per thread. */
export interface CollectedTaskState {
  attrs: ProcessAttrs;
  threads: Map<number, Pick<ThreadState, "sched" | "attrs" | "seccomp">>;
}

/**
 * Before anything is injected into frozen process `pid`: suspends seccomp
 * in its threads that have it (cryo's injected syscalls must not be filtered).
 */
export function prepareTaskCollection(
  pid: number,
  tids: readonly number[],
  /** Each thread's status when already read (engine/proc/status.ts readThreadStatuses). */
  statuses?: ReadonlyMap<number, ProcStatus>,
): void {
  // Keeps the freeze's option (crash-safe injection).
  suspendSeccomp(pid, tids, PTRACE_O.TRACESYSGOOD, statuses);
}

/** The injected part of the collection (run inside the process's injection session). */
export function queryTaskState(
  s: InjectionSession,
  tids: readonly number[],
  /** Each thread's parent-death signal when already read. */
  pdeathsig?: ReadonlyMap<number, number>,
  /** Each thread's timer slack (PR_GET_TIMERSLACK) when already read. */
  timerSlackNs?: ReadonlyMap<number, number>,
  /** The process-wide attributes when already read in the main thread's batch (attrs.ts). */
  processAttrs?: ProcessAttrValues,
  /** Each thread's TSC mode, personality and NUMA policy mode, when read (engine/dump/injected.ts). */
  cpu?: ReadonlyMap<number, ThreadCpuValues>,
): InjectedAttrs {
  return {
    ...queryAttrs(s, tids, pdeathsig, processAttrs),
    ...(timerSlackNs ? { timerSlackNs } : {}),
    ...(cpu ? { cpu } : {}),
  };
}

/** Collects the task state of frozen process `pid`; reports what cannot come back. */
export function collectTaskState(
  pid: number,
  tids: readonly number[],
  injected: InjectedAttrs,
  refusals: Refusals,
  /** Each thread's status when already read. */
  statuses?: ReadonlyMap<number, ProcStatus>,
  /** Each thread's scheduling reads when already made (ffi/thread_reads.ts). */
  reads?: ReadonlyMap<number, ThreadReads>,
  /** What the task iterator read per thread, when it did (engine/dump/thread_state.ts). */
  records?: ThreadRecordValues,
  /** Each thread's task->flags when already known (the task iterator's), else read. */
  taskFlags?: ReadonlyMap<number, number>,
): CollectedTaskState {
  const threads: CollectedTaskState["threads"] = new Map();
  checkThreadSharing(pid, tids, refusals, records);
  checkThreadSpeculation(pid, tids, refusals, injected.cpu, records);
  checkThreadKeyrings(
    pid,
    tids,
    refusals,
    (tid) => injected.cpu?.get(tid)?.threadKeyring,
    records?.threadKeyring,
  );
  for (const tid of tids) {
    const status = statuses?.get(tid);
    threads.set(tid, {
      sched: collectSched(tid, injected.timerSlackNs?.get(tid), reads?.get(tid)?.sched),
      attrs: collectThreadAttrs(pid, tid, injected, status, refusals, taskFlags?.get(tid)),
      seccomp: collectSeccomp(pid, tid, refusals, status),
    });
  }
  return { attrs: collectProcessAttrs(pid, injected, refusals), threads };
}

/**
 * Emits the restore-program ops of the task state (process-wide attributes);
 * refuses an image that does not record the task state.
 */
export function emitTaskState(p: ProgramBuilder, proc: ProcessImage): void {
  const missing = !proc.attrs || proc.threads.some((t) => !t.sched || !t.attrs || !t.seccomp);
  if (missing) {
    throw new UnsupportedError(`process ${proc.pid}`, [
      "the image does not record scheduling and process attributes (written by an older cryo)",
    ]);
  }
  emitProcessAttrs(p, proc.attrs!);
}

/**
 * Engine finalize of one restored process, every thread stopped, before
 * credentials are restored: scheduling (from cryo), oom_score_adj,
 * no_new_privs, then seccomp (installing a filter may need privileges the
 * credentials drop; it stays suspended until detach). `traceOptions` are
 * the PTRACE_O_* options the tasks were seized with. `slackLater`: the
 * threads whose timer slack is read in their own run and checked after it
 * (sched.ts `checkTimerSlacks`); `schedLater`: the threads whose whole
 * scheduling is read in their own run and checked after it (sched_run.ts
 * `checkSchedsReadInRuns`), left alone here.
 */
export function restoreTaskState(
  image: ProcessImage,
  inj: TaskInjector,
  traceOptions: number,
  slackLater?: ReadonlySet<number>,
  schedLater?: ReadonlySet<number>,
): void {
  for (const t of image.threads) {
    if (schedLater?.has(t.tid)) continue; // read in its own run: sched_run.ts
    restoreSched(image.pid, t.tid, t.sched!, slackLater?.has(t.tid));
  }
  restoreAttrsBeforeCredentials(image, inj);
  restoreSeccomp(image.pid, image.threads.map((t) => [t.tid, t.seccomp!]), inj, traceOptions);
}

/**
 * Engine finalize of one restored process, after credentials are restored
 * (a change of euid, egid, fsuid or fsgid resets these): each thread's
 * parent-death signal and the dumpable flag; then TSC mode, MCE kill
 * policy and memory-deny-write-execute (attrs.ts `restoreCpuAndMdwe`).
 */
export function restoreTaskStateAfterCredentials(image: ProcessImage, inj: TaskInjector): void {
  restoreAttrsAfterCredentials(image, inj);
  restoreCpuAndMdwe(image, inj);
}

/**
 * Restore pre-flight, before anything is created: login ids the restore
 * can give (`newAuditSession`: a set login uid may come back with a new
 * session id; `launcherless`: the root exists already), and scheduling this
 * host can give (CPUs, CAP_SYS_NICE, RT runtime).
 */
export function checkTaskState(
  processes: readonly ProcessImage[],
  newAuditSession = false,
  launcherless = false,
): void {
  checkLoginIds(processes, newAuditSession, launcherless);
  checkSessionKeyrings(processes);
  checkSchedulable(processes);
}
