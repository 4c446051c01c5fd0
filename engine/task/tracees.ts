/**
 * A process that traces another (ptrace) outside the tree: the tracee is
 * not dumped, and the restored process would trace nothing, its waits on
 * the tracee failing with ECHILD. Refused at dump (`task.tracer`).
 *
 * A tracee of the tree's own (a child or another process of the tree) is
 * refused by the freeze already: it cannot be seized ("already traced").
 * What is left is found without reading every process's status: an
 * injected `waitid(P_ALL, WNOHANG|WNOWAIT, every state, __WALL)` in the main
 * thread (no siginfo written, nothing reaped) fails with ECHILD only when
 * no thread of the process has a child or a tracee. A process without
 * children (live or zombie) for which it does not is a tracer. A process
 * with children that also traces outside the tree is not seen (a known
 * gap: telling them apart would mean reading every process's TracerPid).
 *
 * @module
 */

import type { BatchStep } from "../../ffi/syscall_batch.ts";
import { SYS } from "../../ffi/sysno.ts";
import { __WALL, P_ALL, WCONTINUED, WEXITED, WNOHANG, WNOWAIT, WSTOPPED } from "../../ffi/wait.ts";
import { Errno } from "../../ffi/errno.ts";
import type { Refusals } from "../support.ts";

/** The step for the main thread's injected batch; its result goes to {@link refuseOutsideTracees}. */
export const WAITABLE_STEP: BatchStep = {
  nr: SYS.waitid,
  args: [P_ALL, 0, 0, WNOHANG | WNOWAIT | WEXITED | WSTOPPED | WCONTINUED | __WALL, 0],
};

/** Whether some thread of `pid` has a child (a zombie too) in its children file. */
function hasAnyChild(pid: number, tids: readonly number[]): boolean {
  return tids.some((tid) => {
    try {
      return Deno.readTextFileSync(`/proc/${pid}/task/${tid}/children`).trim() !== "";
    } catch {
      return false;
    }
  });
}

/**
 * Reports `task.tracer` when process `pid` (threads `tids`, live children
 * `children`) traces a process outside the tree: `waitable` is the result of
 * {@link WAITABLE_STEP} in it.
 */
export function refuseOutsideTracees(
  pid: number,
  tids: readonly number[],
  children: readonly number[],
  waitable: bigint | undefined,
  refusals: Refusals,
): void {
  if (waitable === undefined || waitable === -BigInt(Errno.ECHILD) || children.length > 0) return;
  if (hasAnyChild(pid, tids)) return; // zombie children
  refusals.use("task.tracer", `process ${pid}`);
}
