/**
 * Threads a failed freeze could not let go: seized and interrupted, they
 * never stopped in time (a FUSE request its server holds, an exit that
 * waits), and PTRACE_DETACH needs a stopped tracee. Left so, a thread
 * would stop once it wakes and stay stopped for as long as cryo lives (a
 * program using the library). Each is polled here, on this thread (the
 * tracer), and let go as soon as it stops; nothing keeps the process alive
 * for them (an exiting cryo detaches them all).
 *
 * @module
 */

import { detach } from "../../ffi/ptrace.ts";
import { __WALL, waitPid, WNOHANG } from "../../ffi/wait.ts";

const strays = new Set<number>();
let timer: ReturnType<typeof setInterval> | undefined;

/** How often the threads left are polled. */
const POLL_MS = 20;

function poll(): void {
  for (const tid of strays) {
    let st;
    try {
      st = waitPid(tid, __WALL | WNOHANG);
    } catch {
      strays.delete(tid); // not ours (any more)
      continue;
    }
    if (st.kind === "none") continue;
    strays.delete(tid);
    if (st.kind !== "stopped") continue; // exited
    try {
      // A signal-delivery stop hands its signal back; the interrupt's own stop, none.
      detach(tid, st.event === 0 ? st.signal : 0);
    } catch { /* gone */ }
  }
  if (strays.size === 0 && timer !== undefined) {
    clearInterval(timer);
    timer = undefined;
  }
}

/** Lets thread `tid` (seized by this thread, not stopped) go once it stops. */
export function releaseWhenStopped(tid: number): void {
  strays.add(tid);
  if (timer !== undefined) return;
  const t = setInterval(poll, POLL_MS);
  Deno.unrefTimer(t as unknown as number);
  timer = t;
}

/** How many threads wait to be let go (for tests). */
export function straysLeft(): number {
  return strays.size;
}
