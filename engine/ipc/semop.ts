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
 * it after the handler. A live tree let go after a freeze (a refused dump,
 * `--leave-running`, a pre-copy's first freeze) has such a thread's
 * registers set back to issue the call again before the thaw
 * ({@link rewindSemopEintr}, called by engine/dump/freeze.ts `thawTree`).
 *
 * @module
 */

import { signed } from "../../ffi/regs.ts";
import { getRegs, setRegs } from "../../ffi/ptrace.ts";
import { syscallRegsEach } from "../../ffi/thread_reads.ts";
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

/** The signal bits of field `field` ("SigPnd:\t<hex>") of a status text, 0 when absent. */
function statusMask(status: string, field: string): bigint {
  const m = status.match(new RegExp(`^${field}:\\s*([0-9a-f]+)$`, "m"));
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

/**
 * Before the frozen threads `tids` of process `pid` of a live tree are let
 * go (thaw): a thread the freeze made fail its semop/semtimedop with EINTR
 * (no signal it does not block pending) has its registers set back to
 * issue the call again, so the program never sees the freeze. One register
 * read per thread (one table run for many, ffi/thread_reads.ts); the status
 * is read only for a thread found there. Returns how many were set back.
 */
export function rewindSemopEintr(pid: number, tids: readonly number[]): number {
  const all = syscallRegsEach(tids);
  let n = 0;
  tids.forEach((tid, i) => {
    const sc = all[i];
    if (sc === undefined) return; // gone, or not stopped: let go as it is
    if (sc.origRax !== BigInt(SYS.semop) && sc.origRax !== BigInt(SYS.semtimedop)) return;
    if (sc.rax !== BigInt(-Errno.EINTR)) return;
    let status;
    try {
      status = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/status`);
    } catch {
      return;
    }
    const pending = statusMask(status, "SigPnd") | statusMask(status, "ShdPnd");
    if ((pending & ~statusMask(status, "SigBlk")) !== 0n) return;
    try {
      const regs = getRegs(tid);
      regs.rax = regs.orig_rax;
      regs.rip -= 2n;
      regs.orig_rax = 0xffffffffffffffffn; // -1: nothing else for the kernel to restart
      setRegs(tid, regs);
      n++;
    } catch { /* gone */ }
  });
  return n;
}
