/**
 * Syscall user dispatch (prctl PR_SET_SYSCALL_USER_DISPATCH): a thread
 * with it on has the syscalls made outside its allowed range turned into
 * SIGSYS while its selector byte says so. It is not saved yet, so dump
 * refuses it (task.syscall-dispatch); and it refuses before any syscall is
 * injected into the process, which the dispatch could turn into a SIGSYS.
 *
 * @module
 */

import { syscallUserDispatchModesEach } from "../../ffi/thread_reads.ts";
import { Refusals } from "../support.ts";

/**
 * Throws (an UnsupportedError worded by the table) when a thread of `pid`
 * (`tids`, stopped under the dump's ptrace) has syscall user dispatch on;
 * a kernel that cannot tell (before 6.4) passes.
 */
export function refuseSyscallUserDispatch(pid: number, tids: readonly number[]): void {
  const refusals = new Refusals();
  // Every thread's mode in one table run (ffi/thread_reads.ts), from 8 threads.
  const modes = syscallUserDispatchModesEach(tids);
  tids.forEach((tid, i) => {
    if (modes[i]) refusals.use("task.syscall-dispatch", `process ${pid} thread ${tid}`);
  });
  refusals.throwIfAny("the tree cannot be checkpointed");
}
