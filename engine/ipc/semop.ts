/**
 * A thread blocked in `semop`/`semtimedop` when the freeze stopped it.
 *
 * System V semaphore waits are never restarted by the kernel: the freeze's
 * interrupt (like any stop) makes them return EINTR, not an ERESTART*
 * code, so the thread is found at the syscall's exit with rax = -EINTR.
 * Restored as it was, the program would see its wait fail with EINTR, an
 * error no signal caused. The dump marks such a call to be re-issued (as
 * the restarting ones are, engine/task/syscalls.ts): the restored thread
 * waits again, with its own arguments (a relative timeout starts again in
 * full). When a signal the thread does not block is pending, the EINTR may
 * be that signal's, and the call is left failing as the program would see
 * it after the handler.
 *
 * @module
 */

import { signed } from "../../ffi/regs.ts";
import { Errno } from "../../ffi/errno.ts";
import { SYS } from "../../ffi/sysno.ts";
import type { SigInfoRecord, ThreadState } from "../model.ts";

/** Whether a signal of `pending` is not blocked by `mask` (hex). */
function deliverable(pending: readonly SigInfoRecord[], mask: bigint): boolean {
  return pending.some((s) => (mask & (1n << BigInt(s.signo - 1))) === 0n);
}

/**
 * Marks the threads of a process stopped at the EINTR exit of a semop or
 * semtimedop the freeze interrupted to re-issue it at restore
 * (`syscall.restart = "restart"`), unless a signal may have caused it.
 */
export function reissueSemopEintr(
  threads: readonly ThreadState[],
  sharedPending: readonly SigInfoRecord[],
): void {
  for (const t of threads) {
    const nr = t.syscall.nr;
    if (nr !== SYS.semop && nr !== SYS.semtimedop) continue;
    if (t.syscall.restart !== "none") continue;
    if (Number(signed(BigInt(t.regs.rax))) !== -Errno.EINTR) continue;
    const mask = BigInt(t.sigmask);
    if (deliverable(t.pending, mask) || deliverable(sharedPending, mask)) continue;
    t.syscall = { nr, restart: "restart" };
  }
}
