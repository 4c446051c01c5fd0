/**
 * Threads a failed freeze could not let go: seized and interrupted, they
 * never stopped in time (a FUSE request its server holds, an exit that
 * waits, an exec waiting for its killed siblings to be reaped), and
 * PTRACE_DETACH needs a stopped tracee. Left so, a thread would stop once
 * it wakes and stay stopped for as long as cryo lives (a program using the
 * library). Each is polled here, on this thread (the tracer), and let go as
 * soon as it stops; nothing keeps the process alive for them (an exiting
 * cryo detaches them all). A thread is polled only while this process
 * still traces it and it is the same thread (its start time): a pid used
 * again (a restored process) is never waited for here.
 *
 * @module
 */

import { detach } from "../../ffi/ptrace.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { __WALL, waitPid, WNOHANG } from "../../ffi/wait.ts";
import { readStat } from "../proc/stat.ts";
import { sleepSync } from "../sleep_sync.ts";

/** Each thread left: its process and its start time. */
const strays = new Map<number, { pid: number; start: number }>();
let timer: ReturnType<typeof setInterval> | undefined;

/** How often the threads left are polled. */
const POLL_MS = 20;

let self: number | undefined;

/** This thread's tid: a tracee's TracerPid (not Deno.pid: tests run on another thread). */
export function tracerTid(): number {
  return self ??= Number(rawSyscall(SYS.gettid));
}

/** The start time of `tid` if this thread traces it, else undefined. */
function ourTracee(tid: number): number | undefined {
  try {
    const m = Deno.readTextFileSync(`/proc/${tid}/status`).match(/^TracerPid:\s+(\d+)/m);
    if (Number(m?.[1]) !== tracerTid()) return undefined;
    return readStat(tid).starttime;
  } catch {
    return undefined;
  }
}

/** Whether `tid` is in a ptrace stop (its stat's state "t"). */
function inTraceStop(tid: number): boolean {
  try {
    return readStat(tid).state === "t";
  } catch {
    return false;
  }
}

function poll(): void {
  for (const [tid, { pid, start }] of strays) {
    if (ourTracee(tid) !== start) {
      strays.delete(tid);
      // A thread that exec'd took its main thread's tid (and start time): polled there.
      if (tid !== pid && ourTracee(pid) === start) strays.set(pid, { pid, start });
      continue;
    }
    let st;
    try {
      st = waitPid(tid, __WALL | WNOHANG);
    } catch {
      continue; // looked at again next time
    }
    let signal = 0;
    if (st.kind === "stopped") {
      // A signal-delivery stop hands its signal back; the interrupt's own stop, none.
      signal = st.event === 0 ? st.signal : 0;
    } else if (st.kind !== "none" && st.kind !== "continued") {
      continue; // an exit: the next poll sees whether it is gone
    } else if (!inTraceStop(tid)) {
      continue;
    }
    // (Stopped without a report here: the process's parent may be this process too, and its
    // own wait for the child took the report.)
    strays.delete(tid);
    try {
      detach(tid, signal);
    } catch { /* gone */ }
  }
  if (strays.size === 0 && timer !== undefined) {
    clearInterval(timer);
    timer = undefined;
  }
}

/**
 * Polls the threads left until none is (or `timeoutMs` passed), sleeping
 * 1 ms between polls: for a caller that cannot give the event loop a turn.
 */
export function settleStrays(timeoutMs: number): void {
  const deadline = performance.now() + timeoutMs;
  while (strays.size && performance.now() < deadline) {
    poll();
    if (strays.size) sleepSync(1);
  }
}

/** Lets thread `tid` of `pid` (seized by this thread, not stopped) go once it stops. */
export function releaseWhenStopped(tid: number, pid: number): void {
  const start = ourTracee(tid);
  if (start === undefined) {
    // A zombie thread: reaped now (an exec waits for it).
    try {
      waitPid(tid, __WALL | WNOHANG);
    } catch { /* not ours */ }
    return;
  }
  strays.set(tid, { pid, start });
  if (timer !== undefined) return;
  const t = setInterval(poll, POLL_MS);
  Deno.unrefTimer(t as unknown as number);
  timer = t;
}

/** Stops polling `tid`: seized again by a freeze, which owns it now. */
export function forgetStray(tid: number): void {
  strays.delete(tid);
}

/** How many threads wait to be let go (for tests). */
export function straysLeft(): number {
  return strays.size;
}
