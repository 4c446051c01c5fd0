/**
 * Dump side of shared open file descriptions: which fds of different
 * processes of the tree are one open file description (kcmp KCMP_FILE
 * across pids, asked only for fds on the same inode). Each such fd gets
 * `FdInfo.description`, the "<pid>:<fd>" of the description's first holder,
 * which restore (shared.ts) uses to re-create it once for all holders.
 *
 * @module
 */

import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import type { FdInfo } from "../model.ts";
import type { ProcFd } from "../proc/fds.ts";

const KCMP_FILE = 0;

/** Whether fd `a` of `pa` and fd `b` of `pb` are one open file description. */
export function sameDescription(pa: number, a: number, pb: number, b: number): boolean {
  return rawSyscall(SYS.kcmp, pa, pb, KCMP_FILE, a, b) === 0n;
}

/**
 * Marks the fds of `procs` (in tree order, with the /proc fds they were
 * made from) that share a description with another process.
 */
export function markSharedDescriptions(
  procs: readonly { pid: number; fds: FdInfo[]; proc: readonly ProcFd[] }[],
): void {
  type Entry = { pid: number; f: FdInfo; all: FdInfo[] };
  const byInode = new Map<string, Entry[][]>(); // inode -> descriptions (lists of holders)
  for (const { pid, fds, proc } of procs) {
    for (const f of fds) {
      if (f.sameAs !== undefined) continue;
      const st = proc.find((x) => x.fd === f.fd)?.stat;
      if (!st) continue;
      const key = `${st.dev}:${st.ino}`;
      const descs = byInode.get(key) ?? [];
      const all = fds.filter((x) => x === f || x.sameAs === f.fd);
      const same = descs.find((d) =>
        d[0].pid !== pid && !d.some((e) => e.pid === pid) &&
        sameDescription(d[0].pid, d[0].f.fd, pid, f.fd)
      );
      if (same) same.push({ pid, f, all });
      else descs.push([{ pid, f, all }]);
      byInode.set(key, descs);
    }
  }
  for (const descs of byInode.values()) {
    for (const d of descs) {
      if (d.length < 2) continue;
      const id = `${d[0].pid}:${d[0].f.fd}`;
      for (const e of d) for (const f of e.all) f.description = id;
    }
  }
}
