/**
 * Freezing a process tree: PTRACE_SEIZE + PTRACE_INTERRUPT on every thread
 * of every process, repeated until no new thread or child appears.
 *
 * @module
 */

import { listTids, readChildren } from "../proc/tasks.ts";
import { detach, interrupt, PTRACE_O, seize, TraceeGoneError } from "../../ffi/ptrace.ts";
import { __WALL, waitPid, WNOHANG } from "../../ffi/wait.ts";
import { SyscallError } from "../../ffi/libc.ts";
import { TargetError } from "../errors.ts";
import { splitZombies } from "../task/zombies.ts";
import {
  refuseSharedMemoryChildren,
  refuseVforkChild,
  refuseZombieLeader,
} from "../task/refusals.ts";
import { sleepSync } from "../sleep_sync.ts";

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
  }[];
  /** When the first thread was stopped (performance.now()). */
  frozenAt: number;
}

/** Threads of `pid`, or none when it is gone (the walk goes on without it). */
function threadsOf(pid: number): number[] {
  try {
    return listTids(pid);
  } catch {
    return [];
  }
}

/** Children of `pid`, or none when it is gone. */
function childrenOf(pid: number): number[] {
  try {
    return readChildren(pid);
  } catch {
    return [];
  }
}

/**
 * Seizes `tid` and asks it to stop (PTRACE_INTERRUPT) without waiting for
 * the stop; false when it is gone (or a thread on its way out).
 */
function startSeize(tid: number): boolean {
  try {
    seize(tid, PTRACE_O.TRACESYSGOOD); // syscall stops a dead tracer leaves send no SIGTRAP
  } catch (e) {
    if (e instanceof SyscallError && e.code === "EPERM") {
      const tracer = tracerOf(tid);
      if (tracer) {
        throw new TargetError(`process ${tid} is already traced by pid ${tracer}`);
      }
      if (exiting(tid)) {
        if (!isThreadGroupLeader(tid)) return false; // a thread on its way out: gone next round
        throw new TargetError(`process ${tid} is exiting`);
      }
      throw new TargetError(`no permission to trace process ${tid} (needs CAP_SYS_PTRACE)`);
    }
    if (e instanceof SyscallError && e.code === "ESRCH") return false;
    throw e;
  }
  return true;
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

/** How long a thread may take to stop after PTRACE_INTERRUPT. */
const STOP_TIMEOUT_MS = 10_000;

/**
 * Waits (polling, with a deadline) until every thread of `tids` (seized,
 * interrupted) reports its stop; returns the stop signal of each thread
 * that was in a group stop. The threads stop in parallel: the poll takes
 * whichever stops are ready and sleeps only when none is. A thread stuck
 * in uninterruptible sleep gives a clear error instead of a hang.
 */
function awaitStops(tids: readonly number[]): Map<number, number> {
  const groupStops = new Map<number, number>();
  const deadline = performance.now() + STOP_TIMEOUT_MS;
  let waiting = [...tids];
  while (waiting.length) {
    const left: number[] = [];
    for (const tid of waiting) {
      const st = waitPid(tid, __WALL | WNOHANG);
      if (st.kind === "stopped") {
        if (st.groupStop) groupStops.set(tid, st.signal);
        continue;
      }
      if (st.kind === "exited" || st.kind === "signaled") throw new TraceeGoneError(tid, st);
      left.push(tid);
    }
    if (left.length === 0) break;
    if (performance.now() > deadline) {
      throw new TargetError(
        `thread ${left[0]} did not stop within ${
          STOP_TIMEOUT_MS / 1000
        } s (uninterruptible sleep?)`,
      );
    }
    // Sleep only when no thread stopped in this pass.
    if (left.length === waiting.length) sleepSync(1);
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
 * is rethrown.
 */
export function freezeTree(root: number): FrozenTree {
  const seized: number[] = [];
  const seizedSet = new Set<number>();
  const groupStops = new Map<number, number>();
  let frozenAt = 0;
  refuseVforkChild(root);
  try {
    for (let round = 0;; round++) {
      if (round > 100) {
        throw new TargetError(`process tree of ${root} keeps changing; cannot freeze`);
      }
      let added = 0;
      const processes: FrozenTree["processes"] = [];
      const queue = [root];
      while (queue.length) {
        const pid = queue.shift()!;
        const threads = threadsOf(pid);
        if (threads.length === 0) {
          if (pid === root) throw new TargetError(`process ${root} vanished while being frozen`);
          continue;
        }
        refuseZombieLeader(pid, threads);
        // Read once per round: a child forked before its parent's threads stopped
        // means new threads were seized in this round, so another round reads again.
        const kids = childrenOf(pid);
        refuseSharedMemoryChildren(pid, kids);
        // Every new thread is seized and interrupted first, then all stops are awaited together.
        const started: number[] = [];
        for (const tid of threads) {
          if (seizedSet.has(tid) || !startSeize(tid)) continue;
          if (!frozenAt) frozenAt = performance.now();
          seized.push(tid); // detached again on failure
          seizedSet.add(tid);
          started.push(tid);
        }
        const interrupted = started.filter((tid) => {
          try {
            interrupt(tid);
            return true;
          } catch (e) {
            if (e instanceof SyscallError && e.code === "ESRCH") return false; // gone
            throw e;
          }
        });
        const stops = awaitStops(interrupted);
        for (const tid of interrupted) {
          const stopSignal = stops.get(tid);
          if (stopSignal !== undefined && !groupStops.has(pid)) groupStops.set(pid, stopSignal);
        }
        added += started.length;
        const { live: children, zombies } = splitZombies(kids);
        const groupStop = groupStops.get(pid);
        processes.push({
          pid,
          children,
          // Unchanged when every thread listed was stopped already (stopped threads create none).
          threads: started.length || threads.some((t) => !seizedSet.has(t))
            ? threadsOf(pid)
            : threads,
          ...(zombies.length ? { zombies } : {}),
          ...(groupStop !== undefined ? { groupStop } : {}),
        });
        queue.push(...children);
      }
      if (added === 0) return { root, processes, frozenAt };
    }
  } catch (e) {
    for (const tid of seized) {
      try {
        detach(tid);
      } catch { /* already gone */ }
    }
    throw e;
  }
}

/** Resumes every thread of a frozen tree (PTRACE_DETACH), ignoring vanished ones. */
export function thawTree(tree: FrozenTree): void {
  for (const p of tree.processes) {
    for (const tid of p.threads) {
      try {
        detach(tid);
      } catch { /* gone */ }
    }
  }
}
