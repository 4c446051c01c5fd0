/**
 * Freezing a process tree: PTRACE_SEIZE + PTRACE_INTERRUPT on every thread
 * of every process, repeated until no new thread or child appears.
 *
 * @module
 */

import { listTids, readChildrenOfThreads } from "../proc/tasks.ts";
import { readStat } from "../proc/stat.ts";
import { ChildrenFiles, closeChildrenFilesLeft } from "../proc/children_ahead.ts";
import {
  cont,
  detach,
  interrupt,
  PTRACE,
  PTRACE_O,
  seize,
  TraceeGoneError,
} from "../../ffi/ptrace.ts";
import { ptraceEach, threadReadsAvailable, waitEachNoHang } from "../../ffi/thread_reads.ts";
import { __WALL, waitPid, WNOHANG } from "../../ffi/wait.ts";
import { SyscallError } from "../../ffi/libc.ts";
import { TargetError, UnsupportedError } from "../errors.ts";
import { splitZombies } from "../task/zombies.ts";
import { collectCgroups, refuseFrozenCgroup } from "../task/placement.ts";
import {
  execInProgress,
  refuseExitingThread,
  refuseSharedMemoryChildren,
  refuseUnstoppable,
  refuseVforkChild,
  refuseZombieLeader,
  vforkWaiting,
} from "../task/refusals.ts";
import { abortRseqSections, forgetRseqConfigs } from "../task/rseq.ts";
import { forgetStray, releaseWhenStopped, settleStrays, tracerTid } from "./strays.ts";
import { sleepSync } from "../sleep_sync.ts";
import { rewindStopEintr } from "../task/eintr.ts";
import { childrenByIterator, childrenIteratorServes, forgetFrozenRecords } from "./thread_state.ts";

/** A frozen tree: every thread of every process is in a ptrace stop. */
export interface FrozenTree {
  /** Root pid. */
  root: number;
  /** Processes in tree order (parents first) with their children. */
  processes: {
    pid: number;
    children: number[];
    threads: number[];
    /** Zombie children (not traced; not in `children`). */
    zombies?: number[];
    /** The stop signal when the process was in a group stop. */
    groupStop?: number;
    /**
     * Its threads the collect found stopped at the EINTR exit of a call a
     * stop ends so (engine/task/eintr.ts `stoppedAtEintr`): the thaw looks
     * at these alone; undefined (not collected): at every thread.
     */
    eintrStops?: number[];
  }[];
  /** When the first thread was stopped (performance.now()). */
  frozenAt: number;
}

/**
 * A thread of process `pid` is inside execve: the exec waits for its
 * killed sibling threads to be released, which seized ones are only by
 * their tracer's wait. {@link freezeTree} lets everything go, lets the
 * exec end and freezes again.
 */
class ExecInProgress extends TargetError {
  constructor(readonly pid: number) {
    super(`process ${pid} kept exec'ing while being frozen`);
  }
}

/**
 * Whether this freeze is the last one tried: the signs of an exec in
 * progress then give their own errors (a zombie main thread refused, a
 * thread that could not be traced named) instead of another try.
 */
let lastTry = true;

/** Throws {@link ExecInProgress} for `pid`, unless this is the last try. */
function retryForExec(pid: number): void {
  if (!lastTry) throw new ExecInProgress(pid);
}

/** Freezes tried before a process exec'ing meanwhile is given up on. */
const EXEC_ATTEMPTS = 12;
/**
 * Up to how many ms times the attempt number a try waits before the next:
 * a random pause, so that tries do not keep meeting an exec that comes at
 * a steady pace (8 immediate tries all met one under load, 1 in 12 runs of
 * an exec every 3 ms).
 */
const EXEC_BACKOFF_MS = 4;
/** How long a freeze given up for an exec waits for the threads it let go. */
const EXEC_SETTLE_MS = 2000;

/** Threads of `pid`, or none when it is gone (the walk goes on without it). */
function threadsOf(pid: number): number[] {
  try {
    return listTids(pid);
  } catch {
    return [];
  }
}

/** Children of `pid` (whose threads are `tids`), or none when it is gone. */
function childrenOfThreads(pid: number, tids: readonly number[]): number[] {
  try {
    return readChildrenOfThreads(pid, tids);
  } catch {
    return [];
  }
}

/**
 * PTRACE_INTERRUPT of every thread of `tids` (seized); returns the ones not
 * gone meanwhile. One table run on this thread for
 * two threads or more (ffi/thread_reads.ts `ptraceEach`), else one call each.
 */
function interruptAll(tids: readonly number[]): number[] {
  const results = tids.length >= 2 && threadReadsAvailable()
    ? ptraceEach(PTRACE.INTERRUPT, tids)
    : undefined;
  return tids.filter((tid, i) => {
    try {
      const r = results?.[i];
      if (r === undefined) interrupt(tid);
      else if (r < 0n) throw new SyscallError("ptrace(PTRACE_INTERRUPT)", [tid], Number(-r));
      return true;
    } catch (e) {
      if (e instanceof SyscallError && e.code === "ESRCH") return false; // gone
      throw e;
    }
  });
}

/** {@link childrenOfThreads} through the children files opened ahead. */
function childrenOfThreadsFrom(files: ChildrenFiles, tids: readonly number[]): number[] {
  try {
    return files.read(tids);
  } catch {
    return [];
  }
}

/**
 * Seizes `tid` and asks it to stop (PTRACE_INTERRUPT) without waiting for
 * the stop; false when it is gone (or a thread on its way out).
 */
function startSeize(tid: number, root: number, pid: number): boolean {
  try {
    seize(tid, PTRACE_O.TRACESYSGOOD); // syscall stops a dead tracer leaves send no SIGTRAP
  } catch (e) {
    if (e instanceof SyscallError && e.code === "EPERM") {
      const tracer = tracerOf(tid);
      // Still ours from a freeze given up (strays.ts): tried again once it is let go.
      if (tracer === tracerTid()) retryForExec(pid);
      if (tracer) {
        throw new TargetError(`process ${tid} is already traced by pid ${tracer}`);
      }
      // A thread an exec kills, or the main thread's tid an exec takes over, is not
      // traceable for a while.
      if (tid === pid || execInProgress(pid)) retryForExec(pid);
      if (exiting(tid)) {
        // A thread, or a child process, on its way out: gone (or a zombie) next round.
        if (tid !== root || !isThreadGroupLeader(tid)) return false;
        throw new TargetError(`process ${tid} is exiting`);
      }
      throw new TargetError(`no permission to trace process ${tid} (needs CAP_SYS_PTRACE)`);
    }
    if (e instanceof SyscallError && e.code === "ESRCH") return false;
    throw e;
  }
  return true;
}

/** Whether the main thread of `pid` is a zombie (or gone). */
function isZombie(pid: number): boolean {
  try {
    const state = readStat(pid).state;
    return state === "Z" || state === "X";
  } catch {
    return true;
  }
}

/** Whether `tid` is the main thread of its process (or cannot be read any more). */
function isThreadGroupLeader(tid: number): boolean {
  try {
    const tgid = Deno.readTextFileSync(`/proc/${tid}/status`).match(/^Tgid:\s+(\d+)/m)?.[1];
    return Number(tgid) === tid;
  } catch {
    return false;
  }
}

/** Whether `tid` is exiting or exited (a zombie, or SIGKILL pending): it cannot be seized. */
function exiting(tid: number): boolean {
  try {
    const text = Deno.readTextFileSync(`/proc/${tid}/status`);
    const state = text.match(/^State:\s+(\S)/m)?.[1];
    const pending = BigInt(`0x${text.match(/^ShdPnd:\s+([0-9a-f]+)/m)?.[1] ?? "0"}`) |
      BigInt(`0x${text.match(/^SigPnd:\s+([0-9a-f]+)/m)?.[1] ?? "0"}`);
    return state === "Z" || state === "X" || (pending & (1n << 8n)) !== 0n;
  } catch {
    return true;
  }
}

/** The first sleep of {@link awaitStops} when no thread stopped yet (doubled up to 1 ms). */
const FIRST_NAP_MS = 0.05;

/** After how long the threads not stopped yet are looked at for an exit in progress. */
const EXITING_CHECK_MS = 100;

/** From how many threads a pass of {@link awaitStops} waits in one table run. */
const WAIT_TABLE_FROM = 8;

/** How long a thread may take to stop after PTRACE_INTERRUPT. */
const STOP_TIMEOUT_MS = 10_000;

/**
 * Waits (polling, with a deadline) until every thread of `tids` (seized,
 * interrupted) reports its stop; returns the stop signal of each thread
 * that was in a group stop. The threads stop in parallel: the poll takes
 * whichever stops are ready and sleeps only when none is. A thread stuck
 * in uninterruptible sleep gives a clear error instead of a hang. A thread
 * that exits before its stop (a thread or child on its way out) is left
 * out: the caller lists the threads again, which shows it gone; only the
 * root's main thread exiting is an error.
 */
function awaitStops(
  tids: readonly number[],
  root: number,
  /** The process the threads belong to (named by a refusal). */
  pid: number,
  /** Filled with the threads that exited instead of stopping. */
  gone?: Set<number>,
): Map<number, number> {
  const groupStops = new Map<number, number>();
  const begun = performance.now();
  const deadline = begun + STOP_TIMEOUT_MS;
  let nextCheck = begun + EXITING_CHECK_MS;
  let waiting = [...tids];
  let nap = FIRST_NAP_MS;
  while (waiting.length) {
    const left: number[] = [];
    // Many threads: every wait of the pass in one table run (one FFI call, not one each).
    const polled = waiting.length >= WAIT_TABLE_FROM && threadReadsAvailable()
      ? waitEachNoHang(waiting)
      : undefined;
    for (let k = 0; k < waiting.length; k++) {
      const tid = waiting[k];
      let st;
      try {
        const p = polled?.[k];
        if (typeof p === "number") throw new SyscallError("wait4", [tid, __WALL | WNOHANG], p);
        st = p ?? waitPid(tid, __WALL | WNOHANG);
      } catch (e) {
        // A seized thread gone without an exit report: it exec'd (its tid is its main thread's now).
        if (e instanceof SyscallError && e.code === "ECHILD") retryForExec(pid);
        throw e;
      }
      if (st.kind === "stopped") {
        if (st.event === 0) {
          // A signal-delivery stop: a signal came between the seize and the interrupt and
          // was taken from the queue. Resumed with it, the thread gets it as it would have
          // (its handler's frame, a group stop, its death), then stops for the interrupt,
          // still pending: detached here, the signal would be lost, and left out of an image.
          cont(tid, st.signal);
          left.push(tid);
          continue;
        }
        if (st.groupStop) groupStops.set(tid, st.signal);
        continue;
      }
      if (st.kind === "exited" || st.kind === "signaled") {
        if (tid === root) {
          // The main thread's exit, reported while its tid lives on: another thread exec'd.
          if (!isZombie(root)) retryForExec(pid);
          throw new TraceeGoneError(tid, st);
        }
        gone?.add(tid);
        continue;
      }
      left.push(tid);
    }
    if (left.length === 0) break;
    const now = performance.now();
    if (now > nextCheck) {
      // A thread still exiting by now waits in its exit (a close a FUSE server holds):
      // it never stops. Refused by name at once (a flag of its stat file each). Looked at
      // every 100 ms, only in a freeze that takes that long.
      nextCheck = now + EXITING_CHECK_MS;
      // An exec by another thread waits for its killed (exiting) siblings to be reaped by
      // their tracer, the main thread a zombie meanwhile: tried again, all let go first.
      if (isZombie(pid) || execInProgress(pid)) retryForExec(pid);
      for (const tid of left) refuseExitingThread(pid, tid);
    }
    if (now > deadline) {
      // A v1 freezer holds its tasks in uninterruptible sleep: said so by name.
      try {
        refuseFrozenCgroup(left[0], collectCgroups(left[0]));
      } catch (e) {
        if (e instanceof UnsupportedError) throw e;
      }
      // So is a FUSE request its server neither answers nor lets be interrupted.
      for (const tid of left) refuseUnstoppable(pid, tid);
      throw new TargetError(
        `thread ${left[0]} did not stop within ${
          STOP_TIMEOUT_MS / 1000
        } s (uninterruptible sleep?)`,
      );
    }
    // Sleep only when no thread stopped in this pass: short naps first (a thread
    // woken by the interrupt stops within tens of microseconds when it has a CPU).
    if (left.length === waiting.length) {
      sleepSync(nap);
      nap = Math.min(1, nap * 2);
    }
    waiting = left;
  }
  return groupStops;
}

function tracerOf(tid: number): number {
  try {
    const m = Deno.readTextFileSync(`/proc/${tid}/status`).match(/^TracerPid:\s+(\d+)/m);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/**
 * Stops every thread of `root` and its descendants. On failure, everything
 * already seized is detached again (left running untouched) and the error
 * is rethrown. `onRootStopped`: called once, with the root's threads that
 * reported their stop, as soon as they all have (before the threads are
 * listed again and the rest of the tree is frozen): reads of frozen threads
 * may start then (engine/proc/status_ahead.ts).
 */
export function freezeTree(
  root: number,
  onRootStopped?: (tids: readonly number[]) => void,
): FrozenTree {
  for (let attempt = 1;; attempt++) {
    lastTry = attempt >= EXEC_ATTEMPTS;
    try {
      return freezeOnce(root, onRootStopped);
    } catch (e) {
      if (!(e instanceof ExecInProgress) || lastTry) throw e;
      // Everything was let go; the threads seized and not stopped are reaped
      // (the exec's killed ones) or let go (the exec'ing one, once it stops).
      settleStrays(EXEC_SETTLE_MS);
      sleepSync(Math.random() * EXEC_BACKOFF_MS * attempt);
    }
  }
}

function freezeOnce(
  root: number,
  onRootStopped?: (tids: readonly number[]) => void,
): FrozenTree {
  const seized: number[] = [];
  const seizedSet = new Set<number>();
  /** The process of each seized thread (a thread let go later: strays.ts). */
  const processOf = new Map<number, number>();
  const groupStops = new Map<number, number>();
  let frozenAt = 0;
  closeChildrenFilesLeft(); // by a freeze not thawed (a tree killed)
  forgetFrozenRecords(); // (an earlier freeze's)
  forgetRseqConfigs(); // (the same)
  refuseVforkChild(root);
  try {
    for (let round = 0;; round++) {
      if (round > 100) {
        throw new TargetError(`process tree of ${root} keeps changing; cannot freeze`);
      }
      let added = 0;
      let unsettled = false;
      const processes: FrozenTree["processes"] = [];
      const queue = [root];
      while (queue.length) {
        const pid = queue.shift()!;
        let threads = threadsOf(pid);
        if (threads.length === 0) {
          if (pid === root) throw new TargetError(`process ${root} vanished while being frozen`);
          unsettled = true; // gone meanwhile: its parent's children are read again
          continue;
        }
        // A zombie main thread with threads running: an exec by another thread (tried again:
        // its threads seized here are released first), or, on the last try, refused.
        if (threads.length > 1 && isZombie(pid)) {
          retryForExec(pid);
          refuseZombieLeader(pid, threads);
        }
        // A thread waiting in vfork() never reports a stop: refused before any is awaited
        // (threads already stopped cannot have vforked since).
        if (threads.some((t) => !seizedSet.has(t))) {
          const kids = childrenOfThreads(pid, threads);
          // Usually a spawn's moment (its child execs or exits soon): tried again, as for an
          // exec, and refused on the last try.
          if (!lastTry && vforkWaiting(pid, kids)) retryForExec(pid);
          refuseSharedMemoryChildren(pid, kids);
        }
        // Every new thread is seized and interrupted first, then all stops are awaited
        // together; the threads are listed again until a listing holds only stopped
        // threads (a stopped thread creates none, so that listing is final). A
        // thread on its way out cannot be seized: the threads are listed again
        // until it is gone.
        const deadline = performance.now() + STOP_TIMEOUT_MS;
        // The children files of the threads seized first, read in one table run below; for a
        // root of many threads, only those the task iterator shows with children (thread_state.ts).
        const viaIterator = pid === root && childrenIteratorServes(threads.length);
        let files: ChildrenFiles | undefined;
        let kids: number[];
        try {
          for (;;) {
            const started: number[] = [];
            let exiting = 0;
            for (const tid of threads) {
              if (seizedSet.has(tid)) continue;
              if (!startSeize(tid, root, pid)) {
                if (tid === pid) break; // the process is exiting: the next round sees its end
                exiting++;
                continue;
              }
              if (!frozenAt) frozenAt = performance.now();
              seized.push(tid); // detached again on failure
              processOf.set(tid, pid);
              forgetStray(tid);
              seizedSet.add(tid);
              started.push(tid);
            }
            if (!seizedSet.has(pid)) {
              unsettled = true; // its main thread is exiting: left to the next round
              threads = [];
              break;
            }
            if (started.length === 0 && exiting === 0) break;
            if (started.length === 0) {
              if (performance.now() > deadline) {
                throw new TargetError(`a thread of process ${pid} did not finish exiting`);
              }
              sleepSync(1);
              threads = threadsOf(pid);
              if (threads.length === 0) break;
              continue;
            }
            const interrupted = interruptAll(started);
            // Opened while the threads enter their stops (a seized thread's tid stays its
            // own until cryo waits for its exit); not before the interrupts, which would
            // leave the threads seized and running (a signal then stops a thread) longer.
            if (!viaIterator) files ??= ChildrenFiles.open(pid, interrupted);
            const exited = new Set<number>();
            const stops = awaitStops(interrupted, root, pid, exited);
            for (const tid of exited) files?.forget(tid);
            // Before anything runs in them: a thread inside an rseq critical section is
            // moved to its abort handler, as the kernel would on its way back (task/rseq.ts).
            abortRseqSections(
              pid,
              exited.size ? interrupted.filter((t) => !exited.has(t)) : interrupted,
            );
            if (pid === root && onRootStopped) {
              onRootStopped(interrupted.filter((tid) => !exited.has(tid)));
              onRootStopped = undefined;
            }
            for (const tid of interrupted) {
              const stopSignal = stops.get(tid);
              if (stopSignal !== undefined && !groupStops.has(pid)) groupStops.set(pid, stopSignal);
            }
            added += started.length;
            threads = threadsOf(pid);
            if (threads.length === 0) break;
          }
          if (threads.length === 0) {
            if (pid === root) throw new TargetError(`process ${root} vanished while being frozen`);
            unsettled = true; // gone meanwhile: its parent's children are read again
            continue;
          }
          // Read with every thread of `pid` stopped: none of them forks any more. Only
          // another process (a child's CLONE_PARENT, an auto-reaped child) can still
          // change this list, which the confirming round below catches. (A thread in
          // vfork() never stopped: the check before the seize refused it.)
          kids = files ? childrenOfThreadsFrom(files, threads) : (viaIterator &&
            childrenByIterator(pid, threads, (tids) => childrenOfThreads(pid, tids))) ||
            childrenOfThreads(pid, threads);
        } finally {
          files?.closeLater(); // closed after the thaw (thawTree)
        }
        const { live: children, zombies } = splitZombies(kids);
        const groupStop = groupStops.get(pid);
        processes.push({
          pid,
          children,
          threads,
          ...(zombies.length ? { zombies } : {}),
          ...(groupStop !== undefined ? { groupStop } : {}),
        });
        queue.push(...children);
      }
      // A round that seized nothing confirms the tree. One process without live
      // children needs no such round: its threads and children were read with
      // all its threads stopped, and no other process of the tree can change them.
      if (processes.length === 1 && processes[0].children.length === 0) {
        return { root, processes, frozenAt };
      }
      if (added === 0 && !unsettled) return { root, processes, frozenAt };
      if (unsettled && added === 0) sleepSync(1); // a process on its way out
    }
  } catch (e) {
    closeChildrenFilesLeft();
    for (const tid of seized) {
      try {
        detach(tid);
      } catch (d) {
        // Not stopped (it never stopped in time): let go once it stops (strays.ts).
        if (d instanceof SyscallError && d.code === "ESRCH") {
          releaseWhenStopped(tid, processOf.get(tid) ?? tid);
        }
      }
    }
    throw e;
  }
}

/**
 * Resumes every thread of a frozen tree (PTRACE_DETACH), ignoring vanished
 * ones; then closes the children files the freeze read (children_ahead.ts).
 */
export function thawTree(tree: FrozenTree): void {
  for (const p of tree.processes) {
    // (Not in a process stopped before the freeze: that EINTR is its own stop's.)
    if (p.groupStop === undefined) rewindStopEintr(p.pid, p.eintrStops ?? p.threads); // eintr.ts
    // One table run for the threads of a process (ffi/thread_reads.ts `ptraceEach`).
    if (p.threads.length >= 2 && threadReadsAvailable()) {
      ptraceEach(PTRACE.DETACH, p.threads); // a failure: gone, as below
      continue;
    }
    for (const tid of p.threads) {
      try {
        detach(tid);
      } catch { /* gone */ }
    }
  }
  closeChildrenFilesLeft();
  forgetFrozenRecords();
  forgetRseqConfigs();
}
