/**
 * `/proc/<pid>/net/{tcp,tcp6,udp,udp6}`: the owner (`sk_uid`, the "uid"
 * column) of each TCP and UDP socket of a process's network namespace, by
 * inode. A socket's owner is its inode's owner except for an accepted TCP
 * connection, which keeps its listener's.
 *
 * @module
 */

import { readProcText } from "./io.ts";

/** The sk_uid of every TCP and UDP socket of `pid`'s network namespace, by inode. */
export function readSocketOwners(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const table of ["tcp", "tcp6", "udp", "udp6"]) {
    let text: string;
    try {
      text = readProcText(pid, `net/${table}`);
    } catch {
      continue; // no such protocol (IPv6 disabled)
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      out.set(Number(f[9]), Number(f[7]));
    }
  }
  return out;
}
