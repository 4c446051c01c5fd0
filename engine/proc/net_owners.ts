/**
 * `/proc/<pid>/net/{tcp,udp,udplite,icmp,raw}{,6}`: the owner (`sk_uid`, the
 * "uid" column) of each TCP, UDP, UDP-Lite, ping and raw socket of a
 * process's network namespace, by inode. A socket's owner is its inode's
 * owner except for an accepted TCP connection, which keeps its listener's.
 * Also the state and remote address of ping and raw sockets (connected
 * with port 0, getpeername says ENOTCONN).
 *
 * @module
 */

import { readProcText } from "./io.ts";
import { ipv6Text } from "../../ffi/net.ts";

/** The sk_uid of every TCP, UDP, UDP-Lite, ping and raw socket of `pid`'s network namespace, by inode. */
export function readSocketOwners(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  const kinds = ["tcp", "udp", "udplite", "icmp", "raw"];
  for (const table of kinds.flatMap((k) => [k, `${k}6`])) {
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

/** A row of /proc/net/{icmp,raw}{,6}: the socket's state and remote address (hex, as shown). */
export interface DatagramRow {
  /** sk_state (1 = TCP_ESTABLISHED: connected). */
  state: number;
  /** The remote address: 8 (IPv4) or 32 (IPv6) hex digits of the address in memory order. */
  remote: string;
}

/** The state and remote address of every ping or raw socket of `pid`'s namespace, by inode. */
export function readDatagramRows(pid: number, kind: "icmp" | "raw"): Map<number, DatagramRow> {
  const out = new Map<number, DatagramRow>();
  for (const table of [kind, `${kind}6`]) {
    let text: string;
    try {
      text = readProcText(pid, `net/${table}`);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      out.set(Number(f[9]), { state: parseInt(f[3], 16), remote: f[2].split(":")[0] });
    }
  }
  return out;
}

/** The address of a {@link DatagramRow}'s `remote`, as text ("127.0.0.1", "::1"). */
export function remoteAddress(hex: string): string {
  const bytes: number[] = [];
  // Each 32-bit word is printed as a host-order (little-endian) number.
  for (let i = 0; i < hex.length; i += 8) {
    const word = parseInt(hex.slice(i, i + 8), 16);
    bytes.push(word & 0xff, (word >>> 8) & 0xff, (word >>> 16) & 0xff, word >>> 24);
  }
  return bytes.length === 4 ? bytes.join(".") : ipv6Text(new Uint8Array(bytes));
}
