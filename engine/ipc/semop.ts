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
import { getRegs, setRegs } from "../../ffi/ptrace.ts";
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

/** Signal bits of `line` ("SigPnd:\t<hex>") of a status text, 0 when absent. */
function statusMask(status: string, field: string): bigint {
  const m = status.match(new RegExp(`^${field}:\\s*([0-9a-f]+)$`, "m"));
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

/**
 * Before a frozen thread of a live tree is let go (thaw): when the freeze
 * made its semop/semtimedop fail with EINTR (no signal it does not block
 * pending), its registers are set back to issue the call again, so the
 * program never sees the freeze. One register read per thread; the
 * status is read only for a thread found there. False when it was not.
 */
export function rewindSemopEintr(pid: number, tid: number): boolean {
  let regs;
  try {
    regs = getRegs(tid);
  } catch {
    return false; // gone, or not stopped: let go as it is
  }
  const nr = Number(signed(regs.orig_rax));
  if (nr !== SYS.semop && nr !== SYS.semtimedop) return false;
  if (Number(signed(regs.rax)) !== -Errno.EINTR) return false;
  let status;
  try {
    status = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/status`);
  } catch {
    return false;
  }
  const pending = statusMask(status, "SigPnd") | statusMask(status, "ShdPnd");
  if ((pending & ~statusMask(status, "SigBlk")) !== 0n) return false;
  regs.rax = regs.orig_rax;
  regs.rip -= 2n;
  regs.orig_rax = 0xffffffffffffffffn; // -1: no syscall for the kernel to restart besides
  try {
    setRegs(tid, regs);
  } catch {
    return false;
  }
  return true;
}
