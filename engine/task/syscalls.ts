/**
 * How a syscall that the freeze interrupted comes back after a restore.
 *
 * The thread was stopped with rax = -ERESTART* and orig_rax = the syscall;
 * the kernel would have restarted it on resumption. A restored thread has
 * no kernel restart block (the state behind restart_syscall, which
 * ERESTART_RESTARTBLOCK relies on), so every interrupted syscall is
 * re-issued itself, with its own arguments (rax = orig_rax, rip back over
 * the `syscall` instruction):
 *
 * - waits without a timeout (futex FUTEX_WAIT, pthread_join, read, ...)
 *   and absolute deadlines (FUTEX_WAIT_BITSET as used by
 *   pthread_cond_timedwait and sem_timedwait, clock_nanosleep with
 *   TIMER_ABSTIME) wait exactly as before;
 * - ppoll, pselect and select have already written their remaining time
 *   back into their timeout argument (restored with the memory);
 * - nanosleep and relative clock_nanosleep given a remaining-time pointer
 *   have the kernel's remaining time there: they are re-issued sleeping
 *   that remaining time (the pointer becomes the request);
 * - a relative timeout with nowhere to read what remained (FUTEX_WAIT
 *   with a timeout, poll, epoll_wait, nanosleep without a remaining-time
 *   pointer) starts again in full: the wait can end later than it would
 *   have, never earlier.
 *
 * A signal with a handler may be pending at the dump too (sent while the
 * tree was frozen): the kernel would have run the handler and then ended
 * the call in EINTR, or restarted it (ERESTARTSYS with SA_RESTART,
 * ERESTARTNOINTR). A restored thread runs the handler before the re-issued
 * call instead, so the dump decides as the kernel would
 * ({@link settleSignalledCalls}) and records `eintr`: the thread comes back
 * after its syscall with -EINTR. A call that swaps the signal mask for its
 * duration (sigsuspend, ppoll, pselect6, epoll_pwait...) with such a signal
 * is refused (`task.signal-interrupt`): the mask it ran with is not in the
 * image.
 *
 * @module
 */

import { signed, type UserRegs } from "../../ffi/regs.ts";
import { Errno } from "../../ffi/errno.ts";
import { SYS } from "../../ffi/sysno.ts";
import type { ProcessImage, SigInfoRecord, ThreadState } from "../model.ts";
import type { Refusals } from "../support.ts";
import { SIGEV } from "../proc/timers.ts";

/** Sets `regs` (of thread `t`) to re-issue the syscall the freeze interrupted, if any. */
export function reissueInterrupted(t: ThreadState, regs: UserRegs): void {
  if (t.syscall.restart !== "restart") return;
  const error = -Number(signed(regs.rax));
  regs.rax = regs.orig_rax;
  regs.rip -= 2n;
  if (error !== Errno.ERESTART_RESTARTBLOCK) return;
  const nr = Number(regs.orig_rax);
  if (nr === SYS.nanosleep && regs.rsi !== 0n) regs.rdi = regs.rsi;
  else if (nr === SYS.clock_nanosleep && regs.r10 !== 0n) regs.rdx = regs.r10;
}

/** What {@link settleSignalledCalls} reads of a process image. */
type SignalState = Pick<
  ProcessImage,
  "pid" | "threads" | "sigactions" | "sharedPending" | "posixTimers"
>;

/** Signals the kernel dequeues first (its SYNCHRONOUS_MASK): SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGSYS. */
const SYNCHRONOUS = [11, 7, 4, 5, 8, 31];
/** Signals whose default action is to ignore them: SIGCHLD, SIGCONT, SIGURG, SIGWINCH. */
const DEFAULT_IGNORED = new Set([17, 18, 23, 28]);
/** Stop signals (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU): with their default action the thread stops, then goes on. */
const STOPS = new Set([19, 20, 21, 22]);
const SA_RESTART = 0x10000000n;
const EINTR = 4n;

/** The argument register holding the temporary signal mask of each call that swaps it. */
const MASK_ARG: Record<number, string | undefined> = {
  [SYS.rt_sigsuspend]: "rdi",
  [SYS.ppoll]: "r10",
  [SYS.pselect6]: "r9",
  [SYS.epoll_pwait]: "r8",
  441: "r8", // epoll_pwait2
  333: "r9", // io_pgetevents
};

/** The signals of `list` in the order the kernel dequeues them (synchronous ones first, then by number). */
function dequeueOrder(list: readonly number[]): number[] {
  const set = [...new Set(list)];
  const sync = SYNCHRONOUS.filter((s) => set.includes(s));
  return [...sync, ...set.filter((s) => !sync.includes(s)).sort((a, b) => a - b)];
}

/**
 * The first pending signal thread `t` of `image` would take with a handler
 * when it runs on, or undefined (none; or a fatal one first). A process
 * signal counts only when no other thread could take it (every other thread
 * blocks it).
 */
function firstHandled(image: SignalState, t: ThreadState): number | undefined {
  const blocked = (th: ThreadState, sig: number) =>
    ((BigInt(th.sigmask) >> BigInt(sig - 1)) & 1n) === 1n;
  const timers = image.posixTimers?.filter((x) => x.signalPending) ?? [];
  const own = [
    ...t.pending.map((r: SigInfoRecord) => r.signo),
    ...timers.filter((x) => x.notify & SIGEV.THREAD_ID && x.tid === t.tid).map((x) => x.signo),
  ];
  const shared = [
    ...image.sharedPending.map((r) => r.signo),
    ...timers.filter((x) => !(x.notify & SIGEV.THREAD_ID)).map((x) => x.signo),
  ].filter((sig) => image.threads.every((o) => o === t || blocked(o, sig)));
  for (const sig of [...dequeueOrder(own), ...dequeueOrder(shared)]) {
    if (blocked(t, sig)) continue;
    const handler = BigInt(image.sigactions[sig - 1]?.handler ?? "0x0");
    if (handler === 1n) continue; // SIG_IGN
    if (handler === 0n) {
      if (DEFAULT_IGNORED.has(sig) || STOPS.has(sig)) continue;
      return undefined; // fatal: the process dies
    }
    return sig;
  }
  return undefined;
}

/**
 * For each thread of the frozen `image` interrupted in a syscall while a
 * signal with a handler is pending for it (see the module doc): records
 * the call ended in EINTR (`syscall.restart` "eintr", rax -EINTR) where the
 * kernel would have ended it so, or reports it to `refusals` when the call
 * swaps the signal mask.
 */
export function settleSignalledCalls(image: SignalState, refusals: Refusals): void {
  for (const t of image.threads) {
    if (t.syscall.restart !== "restart") continue;
    const sig = firstHandled(image, t);
    if (sig === undefined) continue;
    const error = -Number(signed(BigInt(t.regs.rax)));
    if (error === Errno.ERESTARTNOINTR) continue;
    const flags = BigInt(image.sigactions[sig - 1].flags);
    if (error === Errno.ERESTARTSYS && (flags & SA_RESTART) !== 0n) continue;
    const nr = Number(signed(BigInt(t.regs.orig_rax)));
    const maskArg = MASK_ARG[nr];
    if (maskArg && BigInt(t.regs[maskArg]) !== 0n) {
      refusals.use(
        "task.signal-interrupt",
        `process ${image.pid} thread ${t.tid}`,
        `signal ${sig} is pending with a handler while it waits in syscall ${nr}, which runs with a signal mask of its own`,
      );
      continue;
    }
    t.regs.rax = `0x${BigInt.asUintN(64, -EINTR).toString(16)}`;
    t.syscall = { ...t.syscall, restart: "eintr" };
  }
}
