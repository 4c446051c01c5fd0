/**
 * Files of /proc/<pid>/ held open. A process's own (/proc/<its pid>/...,
 * its main thread's task directory) are reopened by path once it exists
 * again with the same pid; so are those of an ancestor in the tree (a
 * parent's /proc/self/maps fd, opened without O_CLOEXEC by one thread while
 * another forked a child, leaks into that child: node does this), which
 * exists before any of its descendants (and before the lowest common
 * ancestor that creates a shared description) makes its fds. Those of
 * another process are refused: outside the tree the pid may name another
 * process (or none) at restore time, and inside it that process (a
 * descendant, a sibling, a thread) may not exist yet when the holder's fds
 * are made.
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

/**
 * True when `path` is in the /proc directory (its main thread's) of `pid`
 * itself or of one of its ancestors in the tree; `ppidOf` gives the parent
 * of a process of the tree when that parent is in the tree too (undefined
 * for the tree's root).
 */
export function isAncestorProcPath(
  path: string,
  pid: number,
  ppidOf: (pid: number) => number | undefined,
): boolean {
  const p = procPidOf(path);
  if (p === null || (p.tid !== undefined && p.tid !== p.pid)) return false;
  const seen = new Set<number>();
  for (let a: number | undefined = pid; a !== undefined && !seen.has(a); a = ppidOf(a)) {
    if (a === p.pid) return true;
    seen.add(a);
  }
  return false;
}

/**
 * Dump (tree frozen): refuses every fd on a file of another process's /proc
 * directory, but those of the holder's own and of its ancestors in the tree.
 */
export function refuseOtherProcFds(images: readonly ProcessImage[], refusals: Refusals): void {
  const byPid = new Map(images.map((p) => [p.pid, p]));
  const ppidOf = (pid: number) => {
    const ppid = byPid.get(pid)?.ppid;
    return ppid !== undefined && byPid.has(ppid) ? ppid : undefined;
  };
  for (const p of images) {
    for (const f of p.fds) {
      if (f.excluded || (f.kind !== "file" && f.kind !== "directory")) continue;
      const of = procPidOf(f.target);
      if (!of || isAncestorProcPath(f.target, p.pid, ppidOf)) continue;
      const whose = of.tid !== undefined && of.pid === p.pid
        ? `thread ${of.tid} of the process`
        : images.some((q) => q.pid === of.pid)
        ? `process ${of.pid} of the tree`
        : `process ${of.pid}, outside the tree`;
      refusals.use("fd.proc-other", `process ${p.pid} fd ${f.fd} (${f.target})`, whose);
    }
  }
}
