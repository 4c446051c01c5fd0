/**
 * io_uring's kernel threads in a process: its submission-queue poller
 * (`iou-sqp-<tid>`, IORING_SETUP_SQPOLL, as libuv sets its rings up) and
 * its workers (`iou-wrk-<tid>`). They are listed among the process's
 * threads and stop for ptrace like the others, but they never return to
 * user space: a syscall injected into one never comes back, and the
 * dump's wait for it would never end. io_uring is refused anyway (its
 * rings and requests live in the kernel), so such a process is refused
 * by name before anything is injected, naming its io_uring fds.
 *
 * @module
 */

import { Refusals } from "../support.ts";
import type { ProcStatus } from "../proc/status.ts";

/** The comm of an io_uring kernel thread ("iou-sqp-123", "iou-wrk-123"). */
const IO_THREAD = /^iou-(sqp|wrk)-\d+$/;

/** The comm of thread `tid` of `pid`: from its status when read, else its comm file. */
function commOf(pid: number, tid: number, statuses: ReadonlyMap<number, ProcStatus>): string {
  const name = statuses.get(tid)?.name;
  if (name !== undefined) return name;
  try {
    return Deno.readTextFileSync(`/proc/${pid}/task/${tid}/comm`).replace(/\n$/, "");
  } catch {
    return "";
  }
}

/** The fds of `pid` that are io_uring instances. */
function ringFds(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
      try {
        if (Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`) === "anon_inode:[io_uring]") {
          out.push(Number(e.name));
        }
      } catch { /* closed meanwhile */ }
    }
  } catch { /* gone */ }
  return out.sort((a, b) => a - b);
}

/**
 * Throws when a thread of `pid` (its `tids`, frozen) is an io_uring kernel
 * thread, naming the process's io_uring fds (or the thread where none is
 * left open): before anything is injected (see the module doc).
 */
export function refuseIoWorkers(
  pid: number,
  tids: readonly number[],
  statuses: ReadonlyMap<number, ProcStatus>,
): void {
  const workers = tids.filter((tid) => tid !== pid && IO_THREAD.test(commOf(pid, tid, statuses)));
  if (!workers.length) return;
  const refusals = new Refusals();
  const fds = ringFds(pid);
  for (const fd of fds) {
    refusals.use("fd.io_uring", `process ${pid} fd ${fd} (anon_inode:[io_uring])`);
  }
  if (!fds.length) {
    refusals.use("fd.io_uring", `process ${pid} thread ${workers[0]} (an io_uring kernel thread)`);
  }
  refusals.throwIfAny("the tree cannot be checkpointed");
}
