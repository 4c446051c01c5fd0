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
import { sleepSync } from "../sleep_sync.ts";

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

/** The children of `children` that run on the memory of `pid` while it waits in vfork(). */
function vforkChildren(pid: number, children: readonly number[]): number[] {
  const sharing = children.filter((c) => rawSyscall(SYS.kcmp, pid, c, KCMP_VM, 0, 0) === 0n);
  return sharing.length && inVforkWait(pid) ? sharing : [];
}

/**
 * Whether `pid` waits in vfork() for a child of `children` that runs on its
 * memory: usually for a moment (posix_spawn, a shell's fork and exec), until
 * the child execs or exits; engine/dump/freeze.ts tries again before it refuses.
 */
export function vforkWaiting(pid: number, children: readonly number[]): boolean {
  return vforkChildren(pid, children).length > 0;
}

/** Throws when `pid` waits in vfork() for a child of it that runs on its memory. */
export function refuseSharedMemoryChildren(pid: number, children: readonly number[]): void {
  const refusals = new Refusals();
  for (const child of vforkChildren(pid, children)) {
    refusals.use("task.vfork", `process ${pid}`, `its child ${child} runs on its memory (vfork)`);
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

const EXEC_CALLS = new Set<number>([SYS.execve, SYS.execveat]);

/**
 * Whether a thread of `pid` is inside execve: a thread other than the main
 * one that execs kills the others and waits for them to be released (a
 * tracer must reap the ones it traces), the main thread a zombie meanwhile.
 * Reads each thread's syscall file: for the rare paths only.
 */
export function execInProgress(pid: number): boolean {
  try {
    for (const tid of listTids(pid)) {
      try {
        const text = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/syscall`);
        if (EXEC_CALLS.has(Number(text.split(" ")[0]))) return true;
      } catch { /* gone */ }
    }
  } catch { /* gone */ }
  return false;
}

/** How long a zombie main thread with threads running is watched for an exec's end. */
const EXEC_GRACE_MS = 100;

/**
 * Throws when the main thread of `pid` has exited while its other `threads`
 * run: still so after 100 ms (another thread's exec leaves it a zombie for
 * a few ms; engine/dump/freeze.ts tries again meanwhile).
 */
export function refuseZombieLeader(pid: number, threads: readonly number[]): void {
  if (threads.length <= 1) return;
  let state;
  try {
    state = readStat(pid).state;
  } catch {
    return;
  }
  if (state !== "Z" && state !== "X") return;
  // An exec by another thread leaves the main thread a zombie for a few ms: given 100.
  for (const deadline = performance.now() + EXEC_GRACE_MS; performance.now() < deadline;) {
    sleepSync(1);
    try {
      state = readStat(pid).state;
      if ((state !== "Z" && state !== "X") || listTids(pid).length <= 1) return;
    } catch {
      return;
    }
  }
  const refusals = new Refusals();
  refusals.use("task.leader-exited", `process ${pid}`);
  refusals.throwIfAny("the tree cannot be checkpointed");
}

/** PF_EXITING in /proc/<pid>/stat's flags. */
export const PF_EXITING = 0x4;

/** How long a thread seen exiting is given to end before it is refused. */
const EXIT_GRACE_MS = 200;

/**
 * Throws when `pid` (its stat `flags`) is exiting: it will run no code
 * again, nor stop. Still so 200 ms on (an exit that does not wait ends
 * sooner: a thread returning, or one another thread's exec kills).
 */
export function refuseExiting(pid: number, flags: number, where = `process ${pid}`): void {
  if ((flags & PF_EXITING) === 0) return;
  for (const deadline = performance.now() + EXIT_GRACE_MS; performance.now() < deadline;) {
    sleepSync(1);
    try {
      if ((readStat(pid).flags & PF_EXITING) === 0) return;
    } catch {
      return; // gone
    }
  }
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
