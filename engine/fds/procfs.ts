/**
 * Files of /proc/<pid>/ held open. A process's own (/proc/<its pid>/...,
 * its main thread's task directory) are reopened by path once it exists
 * again with the same pid. Those of another process are refused: outside
 * the tree the pid may name another process (or none) at restore time, and
 * inside it that process may not exist yet when the holder's fds are made.
 *
 * @module
 */

import type { ProcessImage } from "../model.ts";
import type { Refusals } from "../support.ts";

const PROC_PID = /^\/proc\/(\d+)(?:\/task\/(\d+))?(?:\/|$)/;

/**
 * The process whose /proc directory `path` is in (its pid, and the task's
 * tid when the path goes through task/<tid>), or null for another path.
 */
export function procPidOf(path: string): { pid: number; tid?: number } | null {
  const m = PROC_PID.exec(path);
  if (!m) return null;
  return { pid: Number(m[1]), ...(m[2] !== undefined ? { tid: Number(m[2]) } : {}) };
}

/** True when `path` is in the /proc directory of process `pid` itself (its main thread's). */
export function isOwnProcPath(path: string, pid: number): boolean {
  const p = procPidOf(path);
  return p !== null && p.pid === pid && (p.tid === undefined || p.tid === pid);
}

/** Dump (tree frozen): refuses every fd on a file of another process's /proc directory. */
export function refuseOtherProcFds(images: readonly ProcessImage[], refusals: Refusals): void {
  for (const p of images) {
    for (const f of p.fds) {
      if (f.excluded || (f.kind !== "file" && f.kind !== "directory")) continue;
      const of = procPidOf(f.target);
      if (!of || isOwnProcPath(f.target, p.pid)) continue;
      const whose = of.tid !== undefined && of.pid === p.pid
        ? `thread ${of.tid} of the process`
        : images.some((q) => q.pid === of.pid)
        ? `process ${of.pid} of the tree`
        : `process ${of.pid}, outside the tree`;
      refusals.use("fd.proc-other", `process ${p.pid} fd ${f.fd} (${f.target})`, whose);
    }
  }
}
