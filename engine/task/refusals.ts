/**
 * Task states refused while the tree is being frozen, before the task
 * concerned is seized (seizing it would fail or hang): a parent waiting in
 * vfork() (its child runs on the parent's memory), a vfork child dumped
 * without that parent, and a process whose main thread exited while
 * others run on (a zombie thread cannot be traced).
 * Each refusal is one line worded by its row of engine/support.ts.
 *
 * @module
 */

import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { readStat } from "../proc/stat.ts";
import { listTids } from "../proc/tasks.ts";
import { Refusals } from "../support.ts";

const KCMP_VM = 1;
const VFORK_CALLS = new Set<number>([SYS.vfork, SYS.clone, SYS.clone3]);

/**
 * Whether a thread of `pid` waits in vfork() (or clone with CLONE_VFORK)
 * for its child: it sits in that syscall in uninterruptible sleep, where a
 * freeze's PTRACE_INTERRUPT cannot reach it. (Other processes sharing an
 * mm are refused later, by the memory collector: task.shared-vm.)
 */
function inVforkWait(pid: number): boolean {
  for (const tid of listTids(pid)) {
    try {
      const nr = Number(Deno.readTextFileSync(`/proc/${pid}/task/${tid}/syscall`).split(" ")[0]);
      if (!VFORK_CALLS.has(nr)) continue;
      if (nr === SYS.vfork || readStat(pid, tid).state === "D") return true;
    } catch { /* gone, or running: not waiting */ }
  }
  return false;
}

/** Throws when `pid` waits in vfork() for a child of it that runs on its memory. */
export function refuseSharedMemoryChildren(pid: number, children: readonly number[]): void {
  const refusals = new Refusals();
  for (const child of children) {
    if (rawSyscall(SYS.kcmp, pid, child, KCMP_VM, 0, 0) === 0n && inVforkWait(pid)) {
      refusals.use("task.vfork", `process ${pid}`, `its child ${child} runs on its memory (vfork)`);
    }
  }
  refusals.throwIfAny("the tree cannot be checkpointed");
}

/** Throws when `root` runs on its parent's memory (a vfork child whose parent waits for it). */
export function refuseVforkChild(root: number): void {
  let ppid;
  try {
    ppid = readStat(root).ppid;
  } catch {
    return;
  }
  if (ppid <= 0 || rawSyscall(SYS.kcmp, root, ppid, KCMP_VM, 0, 0) !== 0n) return;
  if (!inVforkWait(ppid)) return;
  const refusals = new Refusals();
  refusals.use(
    "task.vfork",
    `process ${root}`,
    `it runs on the memory of its parent ${ppid} (vfork child)`,
  );
  refusals.throwIfAny("the tree cannot be checkpointed");
}

/** Throws when the main thread of `pid` has exited while its other `threads` run. */
export function refuseZombieLeader(pid: number, threads: readonly number[]): void {
  if (threads.length <= 1) return;
  let state;
  try {
    state = readStat(pid).state;
  } catch {
    return;
  }
  if (state !== "Z" && state !== "X") return;
  const refusals = new Refusals();
  refusals.use("task.leader-exited", `process ${pid}`);
  refusals.throwIfAny("the tree cannot be checkpointed");
}

/** PF_EXITING in /proc/<pid>/stat's flags. */
export const PF_EXITING = 0x4;

/** Throws when `pid` (its stat `flags`) is exiting: it will run no code again, nor stop. */
export function refuseExiting(pid: number, flags: number, where = `process ${pid}`): void {
  if ((flags & PF_EXITING) === 0) return;
  const refusals = new Refusals();
  refusals.use("task.exiting", where, `it is exiting${waitingIn(pid)}`);
  refusals.throwIfAny("the tree cannot be checkpointed");
}

/** Throws when thread `tid` of `pid` is exiting (checked through its stat file). */
export function refuseExitingThread(pid: number, tid: number): void {
  let flags;
  try {
    flags = readStat(pid, tid).flags;
  } catch {
    return; // gone
  }
  refuseExiting(tid, flags, tid === pid ? `process ${pid}` : `process ${pid} thread ${tid}`);
}

/** " (waits in <kernel function>)" for a sleeping `tid`, or "". */
function waitingIn(tid: number): string {
  try {
    const w = Deno.readTextFileSync(`/proc/${tid}/wchan`).trim();
    return w && w !== "0" ? ` (waits in ${w})` : "";
  } catch {
    return "";
  }
}

/** The kernel function a thread waiting for a FUSE server's reply sleeps in. */
const FUSE_WAIT = "request_wait_answer";

/**
 * Throws, naming the cause, when thread `tid` of process `pid` (seized and
 * interrupted, not stopped in time) cannot stop: it is exiting, or it waits
 * for a FUSE request whose server neither answers nor lets it be
 * interrupted. Returns otherwise (the caller's error then).
 */
export function refuseUnstoppable(pid: number, tid: number): void {
  refuseExitingThread(pid, tid);
  let wchan = "";
  try {
    wchan = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/wchan`).trim();
  } catch { /* gone */ }
  if (wchan !== FUSE_WAIT) return;
  const refusals = new Refusals();
  refusals.use("task.fuse-wait", tid === pid ? `process ${pid}` : `process ${pid} thread ${tid}`);
  refusals.throwIfAny("the tree cannot be checkpointed");
}
