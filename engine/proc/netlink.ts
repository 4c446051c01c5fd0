/**
 * `/proc/<pid>/net/netlink`: the netlink sockets of a process's network
 * namespace, with what getsockopt does not tell (queued bytes, a dump in
 * progress).
 *
 * @module
 */

import { readProcText } from "./io.ts";

/** One row of /proc/<pid>/net/netlink. */
export interface NetlinkRow {
  /** Netlink protocol (NETLINK_ROUTE = 0, ...). */
  protocol: number;
  /** Port id the socket is bound to (0: not bound). */
  portid: number;
  /** Multicast groups 1..32 as a bitmap. */
  groups: number;
  /** Bytes queued for reading. */
  rmem: number;
  /** Whether a dump (NLM_F_DUMP) is in progress: the kernel continues it on the next read. */
  dumpRunning: boolean;
  inode: number;
}

/** The netlink sockets of `pid`'s network namespace, by inode. */
export function readNetlinkTable(pid: number): Map<number, NetlinkRow> {
  const out = new Map<number, NetlinkRow>();
  const lines = readProcText(pid, "net/netlink").split("\n").slice(1);
  for (const line of lines) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const row: NetlinkRow = {
      protocol: Number(f[1]),
      portid: Number(f[2]) >>> 0,
      groups: parseInt(f[3], 16),
      rmem: Number(f[4]),
      dumpRunning: f[6] !== "0",
      inode: Number(f[9]),
    };
    out.set(row.inode, row);
  }
  return out;
}
