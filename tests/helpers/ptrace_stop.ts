/**
 * Test helper: stops a process's threads as a dump's freeze does.
 *
 * @module
 */

import { interrupt, PTRACE_O, seize, waitStop } from "../../ffi/ptrace.ts";
import { listTids } from "../../engine/proc/tasks.ts";

/** Seizes and stops every thread of `pid` as a dump's freeze does; returns their tids. */
export function freezeThreads(pid: number): number[] {
  const tids = listTids(pid);
  for (const tid of tids) {
    seize(tid, PTRACE_O.TRACESYSGOOD);
    interrupt(tid);
    waitStop(tid);
  }
  return tids;
}
