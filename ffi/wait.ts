/**
 * wait4() by pid with a decoded status. Synchronous, on the calling thread
 * (the main thread, which is the ptrace tracer).
 *
 * @module
 */

import { rawSyscall, SyscallError } from "./libc.ts";
import { SYS } from "./sysno.ts";

/** waitpid flags. */
export const WNOHANG = 1;
/** Report stopped (non-traced) children. */
export const WUNTRACED = 2;
/** Report continued children. */
export const WCONTINUED = 8;
/** Wait for all children, clone or not (needed for threads). */
export const __WALL = 0x40000000;
/** waitid: children that exited. */
export const WEXITED = 4;
/** waitid: children that stopped (WUNTRACED's bit). */
export const WSTOPPED = 2;
/** waitid: leave the child waitable (report only). */
export const WNOWAIT = 0x01000000;
/** waitid's idtype: any child. */
export const P_ALL = 0;
/** waitid's idtype: the child with this pid. */
export const P_PID = 1;

/** ptrace event codes (status >> 16). */
export const PTRACE_EVENT = {
  FORK: 1,
  VFORK: 2,
  CLONE: 3,
  EXEC: 4,
  VFORK_DONE: 5,
  EXIT: 6,
  SECCOMP: 7,
  STOP: 128,
} as const;

/** A decoded wait status. */
export type WaitStatus =
  | { kind: "exited"; pid: number; code: number }
  | { kind: "signaled"; pid: number; signal: number; core: boolean }
  | { kind: "stopped"; pid: number; signal: number; event: number; groupStop: boolean }
  | { kind: "continued"; pid: number }
  | { kind: "none" };

/** Decodes a raw wait status word for `pid`. */
export function decodeWaitStatus(pid: number, status: number): WaitStatus {
  if ((status & 0x7f) === 0) return { kind: "exited", pid, code: (status >> 8) & 0xff };
  if (status === 0xffff) return { kind: "continued", pid };
  if ((status & 0xff) === 0x7f) {
    const signal = (status >> 8) & 0xff;
    const event = (status >> 16) & 0xff;
    // A group stop under PTRACE_SEIZE is reported as PTRACE_EVENT_STOP with a stop signal.
    const groupStop = event === PTRACE_EVENT.STOP &&
      [19, 20, 21, 22].includes(signal);
    return { kind: "stopped", pid, signal, event, groupStop };
  }
  return { kind: "signaled", pid, signal: status & 0x7f, core: (status & 0x80) !== 0 };
}

const parked = new Map<number, WaitStatus>();

/**
 * Records the exit status of a child that a `waitPid(-1)` loop consumed on
 * behalf of someone else; a later `waitPid(pid)` for it returns it.
 */
export function parkStatus(st: WaitStatus & { pid: number }): void {
  parked.set(st.pid, st);
}

/** Drops a parked status (its pid is about to be reused, e.g. by a restore). */
export function forgetParkedStatus(pid: number): void {
  parked.delete(pid);
}

/**
 * wait4(pid, flags) with EINTR retried; returns the decoded status, or
 * `{kind:"none"}` with WNOHANG when nothing is ready.
 */
export function waitPid(pid: number, flags = __WALL): WaitStatus {
  // Parked statuses answer only plain waits, never a tracer's __WALL waits.
  const saved = pid > 0 && (flags & __WALL) === 0 ? parked.get(pid) : undefined;
  if (saved) {
    parked.delete(pid);
    return saved;
  }
  const status = new Int32Array(1);
  for (;;) {
    const r = rawSyscall(SYS.wait4, pid, status, flags, 0);
    if (r === -4n) continue;
    if (r < 0n) throw new SyscallError("wait4", [pid, flags], Number(-r));
    if (r === 0n) return { kind: "none" };
    return decodeWaitStatus(Number(r), status[0]);
  }
}

/** The `struct timespec` of {@link napUntilSignal} (one per thread that naps: the main one). */
const napSpec = new BigInt64Array(2);

/**
 * Sleeps the calling thread for up to `ms` milliseconds, or until a signal
 * handler runs on it: `nanosleep` is never restarted after a handler
 * (signal(7)), where `Atomics.wait`'s futex is, to its full timeout. The
 * SIGCHLD of a tracee's stop or exit goes to its tracer thread: with a
 * handler for it (ffi/sigchld_wake.ts `wakeOnSigchld`) a tracer polling
 * with `WNOHANG` wakes at the event instead of up to `ms` later (at
 * SIG_DFL the signal is discarded and it sleeps the whole `ms`).
 */
export function napUntilSignal(ms: number): void {
  const ns = Math.round(ms * 1e6);
  napSpec[0] = BigInt(Math.floor(ns / 1e9));
  napSpec[1] = BigInt(ns % 1e9);
  rawSyscall(SYS.nanosleep, napSpec, 0);
}
