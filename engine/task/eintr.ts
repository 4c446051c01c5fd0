/**
 * A thread stopped by the freeze at the exit of a call the kernel ends
 * with EINTR, never an ERESTART* code, when a stop interrupts it: System V
 * semaphore waits (`semop`, `semtimedop`), epoll waits (`epoll_wait`, and
 * `epoll_pwait`/`epoll_pwait2` without a signal mask of their own).
 *
 * The thread is found at the syscall's exit with rax = -EINTR. Restored as
 * it was, or let go so after a `--leave-running` dump, the program would
 * see its wait fail with EINTR, an error no signal caused (an event loop's
 * `epoll_wait` after every freeze). The dump marks such a call to be
 * re-issued (as the restarting ones are, engine/task/syscalls.ts): the
 * restored thread waits again, with its own arguments (a relative timeout
 * starts again in full). When a signal the thread does not block is
 * pending, the EINTR may be that signal's, and the call is left failing as
 * the program would see it after the handler. A live tree let go after a
 * freeze (a refused dump, `--leave-running`, a pre-copy's first freeze)
 * has such a thread's registers set to issue the call again before the
 * thaw ({@link rewindStopEintr}, called by engine/dump/freeze.ts
 * `thawTree`): ERESTARTNOHAND in rax, for the kernel to restart it on the
 * way out of the stop, or end it in EINTR for a signal with a handler sent
 * in between (engine/task/syscalls.ts). In a process that was in a group
 * stop before the freeze, the EINTR is that stop's, seen by the live
 * program when continued: kept ({@link keepGroupStopEintr}; the thaw
 * leaves it too). A call with a mask of its own is left as it is: the mask
 * in force at the stop is the call's, and which signal ended it is not
 * told apart here.
 *
 * @module
 */

import { signed } from "../../ffi/regs.ts";
import { getRegs, setRegs, stopInSignalHandling } from "../../ffi/ptrace.ts";
import { syscallRegsEach } from "../../ffi/thread_reads.ts";
import { Errno } from "../../ffi/errno.ts";
import { SYS } from "../../ffi/sysno.ts";
import type { SigInfoRecord, ThreadState } from "../model.ts";

/** Calls a stop ends with EINTR, by number; true where argument 5 (r8) is a signal mask of their own. */
const EINTR_AT_STOP = new Map<number, boolean>([
  [SYS.semop, false],
  [SYS.semtimedop, false],
  [SYS.epoll_wait, false],
  [SYS.epoll_pwait, true],
  [SYS.epoll_pwait2, true],
]);

/** Whether syscall `nr` with fifth argument `r8` is ended by a stop with EINTR and can be issued again. */
function endedByStop(nr: number, r8: bigint): boolean {
  const masked = EINTR_AT_STOP.get(nr);
  return masked !== undefined && (!masked || r8 === 0n);
}

/** Whether a signal of `pending` is not blocked by `mask` (hex). */
function deliverable(pending: readonly SigInfoRecord[], mask: bigint): boolean {
  return pending.some((s) => (mask & (1n << BigInt(s.signo - 1))) === 0n);
}

/**
 * Marks the threads of a process stopped at the EINTR exit of a call the
 * freeze interrupted (see the module doc) to re-issue it at restore
 * (`syscall.restart = "restart"`), unless a signal may have caused it.
 */
export function reissueStopEintr(
  threads: readonly ThreadState[],
  sharedPending: readonly SigInfoRecord[],
): void {
  for (const t of threads) {
    const nr = t.syscall.nr;
    if (!endedByStop(nr, BigInt(t.regs.r8))) continue;
    if (t.syscall.restart !== "none") continue;
    if (Number(signed(BigInt(t.regs.rax))) !== -Errno.EINTR) continue;
    const mask = BigInt(t.sigmask);
    if (deliverable(t.pending, mask) || deliverable(sharedPending, mask)) continue;
    t.syscall = { nr, restart: "restart" };
  }
}

/**
 * For a process that was in a group stop before the freeze (its own
 * SIGSTOP, SIGTSTP...): the EINTR its threads in such a call were found
 * with is that stop's, which the live program sees when it is continued:
 * the calls {@link reissueStopEintr} marked among `eintrStops` (the tids
 * {@link stoppedAtEintr} found) are left ending in EINTR. Returns the tids
 * the thaw of a live tree should still set back: none.
 */
export function keepGroupStopEintr(
  threads: ThreadState[],
  eintrStops: readonly number[],
): number[] {
  for (const t of threads) {
    if (eintrStops.includes(t.tid) && t.syscall.restart === "restart") {
      t.syscall = { nr: t.syscall.nr, restart: "none" };
    }
  }
  return [];
}

/**
 * The threads of `threads` (a frozen process's collected states, before the
 * dump changed any) stopped at the EINTR exit of a call a stop ends so,
 * whatever is pending: the only ones {@link rewindStopEintr} can set back
 * at the thaw of that freeze (their registers do not change while it lasts).
 */
export function stoppedAtEintr(threads: readonly ThreadState[]): number[] {
  return threads.filter((t) =>
    endedByStop(t.syscall.nr, BigInt(t.regs.r8)) &&
    Number(signed(BigInt(t.regs.rax))) === -Errno.EINTR
  ).map((t) => t.tid);
}

/** The signal bits of field `field` ("SigPnd:\t<hex>") of a status text, 0 when absent. */
function statusMask(status: string, field: string): bigint {
  const m = status.match(new RegExp(`^${field}:\\s*([0-9a-f]+)$`, "m"));
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

/**
 * Before the frozen threads `tids` of process `pid` of a live tree are let
 * go (thaw): a thread the freeze made fail such a call with EINTR
 * (no signal it does not block pending) has its registers set back to
 * issue the call again, so the program never sees the freeze. One register
 * read per thread (one table run for many, ffi/thread_reads.ts); the status
 * is read only for a thread found there. Returns how many were set back.
 */
export function rewindStopEintr(pid: number, tids: readonly number[]): number {
  if (!tids.length) return 0;
  const all = syscallRegsEach(tids);
  let n = 0;
  tids.forEach((tid, i) => {
    const sc = all[i];
    if (sc === undefined) return; // gone, or not stopped: let go as it is
    if (!endedByStop(Number(sc.origRax), sc.r8)) return;
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
      if (stopInSignalHandling(tid)) {
        // The kernel issues it again on the way out of the stop, or ends it in EINTR for a
        // signal with a handler sent in between, as it would have (engine/task/syscalls.ts).
        regs.rax = BigInt.asUintN(64, -BigInt(Errno.ERESTARTNOHAND));
      } else {
        regs.rax = regs.orig_rax;
        regs.rip -= 2n;
        regs.orig_rax = 0xffffffffffffffffn; // -1: nothing else for the kernel to restart
      }
      setRegs(tid, regs);
      n++;
    } catch { /* gone */ }
  });
  return n;
}
