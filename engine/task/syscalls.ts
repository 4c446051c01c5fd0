/**
 * How a syscall that the freeze interrupted comes back after a restore.
 *
 * The thread was stopped with rax = -ERESTART* and orig_rax = the syscall;
 * the kernel would have restarted it on resumption. A restored thread has
 * no kernel restart block (the state behind restart_syscall, which
 * ERESTART_RESTARTBLOCK relies on), so every interrupted syscall is
 * re-issued itself, with its own arguments:
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
 * duration (sigsuspend, ppoll, pselect6, epoll_pwait...) is re-issued as
 * before when the thread's own mask blocks the signal (the re-issued call
 * takes it with its own mask, as the kernel would) or the call's mask
 * (read from the process) does (the thread takes it before the call is
 * re-issued: what the kernel does too when such a call resumes after a
 * stop); a signal with a handler that neither blocks is refused
 * (`task.signal-interrupt`): the handler would run with the thread's mask,
 * not the call's, which is not in the image.
 *
 * How the call is issued again ({@link reissueInterrupted}): by the kernel,
 * as for the live thread. The thread keeps orig_rax = the call and rip past
 * its `syscall` instruction, with an ERESTART* code in rax (ERESTARTNOHAND
 * where the kernel had ERESTART_RESTARTBLOCK, or EINTR at a stop:
 * engine/task/eintr.ts). Every stop a restored thread is released from lies
 * inside the kernel's signal handling, whose way out restarts the call (rip
 * back over the instruction, rax = orig_rax) when no signal with a handler
 * is taken there, and else ends it in EINTR, or restarts it after the
 * handler (SA_RESTART, ERESTARTNOINTR), as the live thread's would have. A
 * signal sent between the release and the thread's next run is thus one
 * that interrupts the call: set back in user space instead, the thread ran
 * its handler *before* the re-issued call, which then slept on, the
 * handler's flag never looked at (a restored haproxy master missed its
 * reload signal so). Only a thread that can take a signal with a handler
 * pending in the image itself is set back in user space (rax = orig_rax,
 * rip - 2, orig_rax -1), the order {@link settleSignalledCalls} decided on.
 *
 * @module
 */

import { signed, type UserRegs } from "../../ffi/regs.ts";
import { Errno } from "../../ffi/errno.ts";
import { SYS } from "../../ffi/sysno.ts";
import type { ProcessImage, SigInfoRecord, ThreadState } from "../model.ts";
import type { Refusals } from "../support.ts";
import { SIGEV } from "../proc/timers.ts";
import { processVmRead } from "../../ffi/process_vm.ts";

/** orig_rax for "no syscall": nothing for the kernel to restart. */
const NO_SYSCALL = 0xffffffffffffffffn;

/**
 * Sets `regs` (of thread `t`, as released) to issue the syscall the freeze
 * interrupted again, if any (see the module doc): by the kernel on the way
 * out of the release stop, or, when `handledPending` (a signal with a
 * handler pending in the image that the thread can take at once:
 * {@link takesHandledSignal}), set back in user space. A thread with no
 * call to re-issue gets orig_rax -1.
 */
export function reissueInterrupted(t: ThreadState, regs: UserRegs, handledPending: boolean): void {
  if (t.syscall.restart !== "restart") {
    regs.orig_rax = NO_SYSCALL;
    return;
  }
  const error = -Number(signed(regs.rax));
  const nr = Number(regs.orig_rax);
  if (error === Errno.ERESTART_RESTARTBLOCK) {
    // The remaining time the kernel wrote back becomes the request.
    if (nr === SYS.nanosleep && regs.rsi !== 0n) regs.rdi = regs.rsi;
    else if (nr === SYS.clock_nanosleep && regs.r10 !== 0n) regs.rdx = regs.r10;
  }
  if (handledPending) {
    regs.rax = regs.orig_rax;
    regs.rip -= 2n;
    regs.orig_rax = NO_SYSCALL;
    return;
  }
  // ERESTARTSYS, ERESTARTNOINTR and ERESTARTNOHAND as the kernel left them; a call with no
  // restart block to resume, or one a stop ended in EINTR, as ERESTARTNOHAND: issued again,
  // or ended in EINTR by a signal with a handler, as the kernel would have ended it.
  if (error === Errno.ERESTART_RESTARTBLOCK || error === Errno.EINTR) {
    regs.rax = BigInt.asUintN(64, -BigInt(Errno.ERESTARTNOHAND));
  }
}

/**
 * Whether thread `t` of `image` can take, as soon as it is released, a
 * signal with a handler pending in the image (its own, its process's, a
 * timer's) that its mask does not block: then its interrupted call is set
 * back in user space, in the order {@link settleSignalledCalls} decided on.
 */
export function takesHandledSignal(image: SignalState, t: ThreadState): boolean {
  if (!signalPending(image)) return false;
  const mask = BigInt(t.sigmask);
  const timers = image.posixTimers?.filter((x) => x.signalPending) ?? [];
  const signals = [
    ...t.pending.map((r) => r.signo),
    ...image.sharedPending.map((r) => r.signo),
    ...timers.filter((x) => !(x.notify & SIGEV.THREAD_ID) || x.tid === t.tid).map((x) => x.signo),
  ];
  return signals.some((sig) => {
    if (((mask >> BigInt(sig - 1)) & 1n) === 1n) return false;
    const handler = BigInt(image.sigactions[sig - 1]?.handler ?? "0x0");
    return handler > 1n; // neither SIG_DFL nor SIG_IGN
  });
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
 * The first pending signal thread `t` of `image` would take when it runs
 * on with signal mask `mask`, one neither ignored nor stopping it: with a handler (`handled`), or
 * fatal; undefined when there is none. A process signal counts only when
 * no other thread could take it (every other thread blocks it).
 */
function firstDelivered(
  image: SignalState,
  t: ThreadState,
  mask: bigint,
): { sig: number; handled: boolean } | undefined {
  const blocked = (th: ThreadState, sig: number) =>
    (((th === t ? mask : BigInt(th.sigmask)) >> BigInt(sig - 1)) & 1n) === 1n;
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
    if (handler === 0n && (DEFAULT_IGNORED.has(sig) || STOPS.has(sig))) continue;
    return { sig, handled: handler !== 0n };
  }
  return undefined;
}

/** Names of the calls of {@link MASK_ARG}, for refusals. */
const MASK_CALLS: Record<number, string> = {
  [SYS.rt_sigsuspend]: "sigsuspend",
  [SYS.ppoll]: "ppoll",
  [SYS.pselect6]: "pselect6",
  [SYS.epoll_pwait]: "epoll_pwait",
  441: "epoll_pwait2",
  333: "io_pgetevents",
};

/**
 * The signal mask call `nr` of thread `t` of process `pid` runs with, read
 * from the process; null when it gives none (a NULL mask), undefined when
 * it cannot be read.
 */
function callMask(pid: number, t: ThreadState, nr: number): bigint | null | undefined {
  const arg = MASK_ARG[nr];
  if (!arg) return null;
  const read = (addr: bigint, n: number) => {
    const buf = new Uint8Array(n);
    return processVmRead(pid, addr, buf) === n ? new DataView(buf.buffer) : undefined;
  };
  let at = BigInt(t.regs[arg]);
  if (at === 0n) return null;
  if (nr === SYS.pselect6 || nr === 333) {
    // A pointer to { const sigset_t *ss; size_t ss_len }.
    const pair = read(at, 16);
    if (!pair) return undefined;
    at = pair.getBigUint64(0, true);
    if (at === 0n) return null;
  }
  return read(at, 8)?.getBigUint64(0, true);
}

/** Whether any signal is pending in `image`: for a thread, for the process, or from a timer. */
function signalPending(image: SignalState): boolean {
  return image.sharedPending.length > 0 || image.threads.some((t) => t.pending.length > 0) ||
    (image.posixTimers?.some((x) => x.signalPending) ?? false);
}

/**
 * For each thread of the frozen `image` interrupted in a syscall while a
 * signal with a handler is pending for it (see the module doc): records
 * the call ended in EINTR (`syscall.restart` "eintr", rax -EINTR) where the
 * kernel would have ended it so. A thread waiting in a call with a signal
 * mask of its own that lets such a signal through is reported to
 * `refusals`.
 */
export function settleSignalledCalls(image: SignalState, refusals: Refusals): void {
  // No signal pending anywhere in the process: no call can end otherwise than re-issued
  // (firstDelivered finds nothing for any thread), so nothing is read or changed.
  if (!signalPending(image)) return;
  for (const t of image.threads) {
    if (t.syscall.restart !== "restart") continue;
    const nr = Number(signed(BigInt(t.regs.orig_rax)));
    const own = callMask(image.pid, t, nr);
    const where = `process ${image.pid} thread ${t.tid}`;
    if (own === undefined) {
      // Only when a signal its own mask lets through is pending: else nothing can differ.
      const first = firstDelivered(image, t, 0n);
      if (first?.handled) {
        refusals.use(
          "task.signal-interrupt",
          where,
          `signal ${first.sig} is pending while it waits in ${
            MASK_CALLS[nr]
          }, whose signal mask cannot be read`,
        );
      }
      continue;
    }
    // With a mask of its own, a signal the thread's mask blocks comes with the re-issued call.
    const first = firstDelivered(image, t, BigInt(t.sigmask) | (own ?? 0n));
    if (!first?.handled) continue; // none (the call is re-issued), or fatal: as it would have
    if (own !== null) {
      refusals.use(
        "task.signal-interrupt",
        where,
        `signal ${first.sig} is pending with a handler while it waits in ${
          MASK_CALLS[nr]
        }, and neither its mask nor the call's blocks it: the handler would run with the thread's mask, not the call's`,
      );
      continue;
    }
    const error = -Number(signed(BigInt(t.regs.rax)));
    if (error === Errno.ERESTARTNOINTR) continue;
    const flags = BigInt(image.sigactions[first.sig - 1].flags);
    if (error === Errno.ERESTARTSYS && (flags & SA_RESTART) !== 0n) continue;
    t.regs.rax = `0x${BigInt.asUintN(64, -EINTR).toString(16)}`;
    t.syscall = { ...t.syscall, restart: "eintr" };
  }
}
