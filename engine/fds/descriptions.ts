/**
 * Which fds are one open file description: within a process (`sameAs`,
 * duplicates made by dup/fork-free sharing) and across the processes of the
 * tree (`description`, shared after fork). kcmp(KCMP_FILE) orders the
 * kernel's file objects, so the fds on one inode are sorted with it and
 * equal neighbours are one description: O(n log n) kcmp calls, not one per
 * pair. A shared description gets `FdInfo.description`, the "<pid>:<fd>"
 * of its first holder, which restore (shared.ts) uses to re-create it once
 * for all holders.
 *
 * @module
 */

import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import type { FdInfo } from "../model.ts";
import type { ProcFd } from "../proc/fds.ts";

const KCMP_FILE = 0;

/** kcmp(KCMP_FILE) as a sort order: 0 for one open file description. */
export function compareFiles(pa: number, a: number, pb: number, b: number): number {
  const r = rawSyscall(SYS.kcmp, pa, pb, KCMP_FILE, a, b);
  if (r < 0n) throw new Error(`kcmp(KCMP_FILE) of ${pa}:${a} and ${pb}:${b} failed (${-r})`);
  return r === 0n ? 0 : r === 1n ? -1 : 1;
}

/** Splits fds on one inode into descriptions, each in the entries' original order. */
function byDescription<T extends { pid: number; fd: number }>(entries: readonly T[]): T[][] {
  if (entries.length < 2) return entries.map((e) => [e]);
  const order = new Map(entries.map((e, i) => [e, i]));
  const sorted = [...entries].sort((x, y) => compareFiles(x.pid, x.fd, y.pid, y.fd));
  const groups: T[][] = [];
  for (const e of sorted) {
    const last = groups[groups.length - 1];
    if (last && compareFiles(last[0].pid, last[0].fd, e.pid, e.fd) === 0) last.push(e);
    else groups.push([e]);
  }
  for (const g of groups) g.sort((x, y) => order.get(x)! - order.get(y)!);
  return groups;
}

function byInode<T>(items: readonly T[], key: (t: T) => string | undefined): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const t of items) {
    const k = key(t);
    if (k !== undefined) out.set(k, [...out.get(k) ?? [], t]);
  }
  return out;
}

/**
 * Sets `sameAs` on the fds of `pid` that duplicate an earlier fd (same open
 * file description); `fds` are the /proc fds `infos` were made from.
 */
export function markDuplicates(pid: number, infos: FdInfo[], fds: readonly ProcFd[]): void {
  const entries = infos.map((f, i) => ({ pid, fd: f.fd, info: f, st: fds[i].stat }));
  for (const same of byInode(entries, (e) => `${e.st.dev}:${e.st.ino}`).values()) {
    for (const [first, ...rest] of byDescription(same)) {
      for (const e of rest) e.info.sameAs = first.fd;
    }
  }
}

/**
 * Marks the fds of `procs` (in tree order, with the /proc fds they were
 * made from) that share a description with another process.
 */
export function markSharedDescriptions(
  procs: readonly { pid: number; fds: FdInfo[]; proc: readonly ProcFd[] }[],
): void {
  const entries = procs.flatMap(({ pid, fds, proc }) =>
    fds.flatMap((f) => {
      const st = proc.find((x) => x.fd === f.fd)?.stat;
      if (f.sameAs !== undefined || !st) return [];
      return [{
        pid,
        fd: f.fd,
        key: `${st.dev}:${st.ino}`,
        all: fds.filter((x) => x === f || x.sameAs === f.fd),
      }];
    })
  );
  for (const same of byInode(entries, (e) => e.key).values()) {
    if (new Set(same.map((e) => e.pid)).size < 2) continue;
    for (const d of byDescription(same)) {
      if (d.length < 2) continue;
      const id = `${d[0].pid}:${d[0].fd}`;
      for (const e of d) for (const f of e.all) f.description = id;
    }
  }
}
