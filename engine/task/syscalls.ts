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
 * @module
 */

import { signed, type UserRegs } from "../../ffi/regs.ts";
import { Errno } from "../../ffi/errno.ts";
import { SYS } from "../../ffi/sysno.ts";
import type { ThreadState } from "../model.ts";

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
