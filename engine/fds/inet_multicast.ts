/**
 * Multicast groups an IPv4/IPv6 socket joined (IP_ADD_MEMBERSHIP,
 * MCAST_JOIN_GROUP, ...). No call lists a socket's groups: the groups any
 * socket of the network namespace joined are in /proc/<pid>/net/igmp and
 * igmp6 (by interface), and MCAST_MSFILTER asked for each tells whether
 * this socket is a member (EADDRNOTAVAIL when not). Memberships are not
 * saved yet: a socket with one is refused by name.
 *
 * @module
 */

import { getsockoptWith } from "../../ffi/net.ts";

const MCAST_MSFILTER = 48;
const SOL_IP = 0;
const SOL_IPV6 = 41;
const AF_INET = 2;
const AF_INET6 = 10;
/** struct group_filter with room for one source: interface, group, mode, count, sources. */
const FILTER_SIZE = 144 + 128;

/** One group joined on an interface of the namespace. */
export interface Group {
  ifindex: number;
  device: string;
  /** The group's address bytes (4 or 16). */
  addr: Uint8Array;
}

function readText(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

/** The IPv4 groups of /proc/<pid>/net/igmp (device lines, then a line per group). */
function igmpGroups(pid: number): Group[] {
  const out: Group[] = [];
  let ifindex = 0, device = "";
  for (const line of readText(`/proc/${pid}/net/igmp`).split("\n").slice(1)) {
    const dev = /^(\d+)\s+(\S+)\s*:/.exec(line);
    if (dev) {
      ifindex = Number(dev[1]);
      device = dev[2];
      continue;
    }
    const g = /^\s+([0-9A-Fa-f]{8})\s/.exec(line);
    if (!g || !ifindex) continue;
    // Printed as the address's four bytes loaded as a little-endian word.
    const v = parseInt(g[1], 16);
    out.push({ ifindex, device, addr: new Uint8Array([v, v >>> 8, v >>> 16, v >>> 24]) });
  }
  return out;
}

/** The IPv6 groups of /proc/<pid>/net/igmp6 (index, device, address in hex, ...). */
function igmp6Groups(pid: number): Group[] {
  const out: Group[] = [];
  for (const line of readText(`/proc/${pid}/net/igmp6`).split("\n")) {
    const m = /^(\d+)\s+(\S+)\s+([0-9a-f]{32})\s/.exec(line);
    if (!m) continue;
    const addr = new Uint8Array(16);
    for (let i = 0; i < 16; i++) addr[i] = parseInt(m[3].slice(2 * i, 2 * i + 2), 16);
    out.push({ ifindex: Number(m[1]), device: m[2], addr });
  }
  return out;
}

function groupText(g: Group): string {
  if (g.addr.length === 4) return `${g.addr.join(".")} on ${g.device}`;
  const words = Array.from(
    { length: 8 },
    (_, i) => ((g.addr[2 * i] << 8) | g.addr[2 * i + 1]).toString(16),
  );
  return `${words.join(":")} on ${g.device}`;
}

/** Whether socket `fd` (IPv4 when `v6` is false) is a member of `g`. */
function isMember(fd: number, v6: boolean, g: Group): boolean {
  const buf = new Uint8Array(FILTER_SIZE);
  const view = new DataView(buf.buffer);
  view.setUint32(0, g.ifindex, true);
  // gf_group: a sockaddr_in (family, port, address) or sockaddr_in6 (family, port, flowinfo, address).
  view.setUint16(8, g.addr.length === 4 ? AF_INET : AF_INET6, true);
  buf.set(g.addr, g.addr.length === 4 ? 8 + 4 : 8 + 8);
  return getsockoptWith(fd, v6 ? SOL_IPV6 : SOL_IP, MCAST_MSFILTER, buf) >= 0;
}

/** The groups joined in the network namespace of process `pid`: IPv4 and IPv6. */
export interface NamespaceGroups {
  v4: Group[];
  v6: Group[];
}

/** Reads the groups joined in the network namespace of process `pid`. */
export function namespaceGroups(pid: number): NamespaceGroups {
  return { v4: igmpGroups(pid), v6: igmp6Groups(pid) };
}

/**
 * The multicast groups socket `fd` (of `family`) is a member of, among
 * `groups` ({@link namespaceGroups}), as text ("239.1.2.3 on lo"); empty
 * when none. An IPv6 socket may have joined IPv4 groups too.
 */
export function multicastGroups(
  fd: number,
  family: "ipv4" | "ipv6",
  groups: NamespaceGroups,
): string[] {
  const v6 = family === "ipv6";
  const all = v6 ? [...groups.v6, ...groups.v4] : groups.v4;
  return all.filter((g) => isMember(fd, v6 && g.addr.length === 16, g)).map(groupText);
}
