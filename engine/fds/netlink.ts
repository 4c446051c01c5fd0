/**
 * Netlink route and uevent sockets (NETLINK_ROUTE, NETLINK_KOBJECT_UEVENT):
 * re-created with the same port id,
 * multicast groups, peer and options. A socket with messages waiting to be
 * read, or with a dump in progress (the kernel produces the next part of a
 * dump when it is read), is refused: the kernel's replies cannot be queued
 * again. Other netlink protocols are refused.
 *
 * @module
 */

import {
  closeFd,
  datagramQueued,
  decodeNetlinkAddr,
  encodeNetlinkAddr,
  getsockoptBytes,
  intBytes,
  NETLINK,
  netlinkMemberships,
  newSocket,
  peerName,
  sockName,
} from "../../ffi/net.ts";
import { AF } from "../../ffi/net.ts";
import { SYS } from "../../ffi/sysno.ts";
import { CryoError } from "../errors.ts";
import type { NetlinkSocket, SockOption } from "../model.ts";
import type { NetlinkRow } from "../proc/netlink.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";
import type { SupportId } from "../support.ts";
import { emitBuffers, emitOption, readBuffers } from "./inet.ts";
import { SOCKET_OPTIONS } from "./socket_common.ts";
import { encodeBase64 } from "../base64.ts";

const NETLINK_ROUTE = 0;
/** Kernel uevents (udev, mdev, hotplug daemons): multicast group 1, nothing kept per socket. */
const NETLINK_KOBJECT_UEVENT = 15;
/** The protocols saved: their sockets hold no state beyond what is read here. */
const SAVED_PROTOCOLS = new Set([NETLINK_ROUTE, NETLINK_KOBJECT_UEVENT]);

const OPTIONS: [number, string][] = [
  [NETLINK.PKTINFO, "NETLINK_PKTINFO"],
  [NETLINK.BROADCAST_ERROR, "NETLINK_BROADCAST_ERROR"],
  [NETLINK.NO_ENOBUFS, "NETLINK_NO_ENOBUFS"],
  [NETLINK.LISTEN_ALL_NSID, "NETLINK_LISTEN_ALL_NSID"],
  [NETLINK.CAP_ACK, "NETLINK_CAP_ACK"],
  [NETLINK.EXT_ACK, "NETLINK_EXT_ACK"],
  [NETLINK.GET_STRICT_CHK, "NETLINK_GET_STRICT_CHK"],
];

function readInt(fd: number, name: number): number | null {
  const b = getsockoptBytes(fd, NETLINK.SOL, name, 4);
  return typeof b === "number" || b.length < 4 ? null : new DataView(b.buffer).getInt32(0, true);
}

/**
 * The SOL_SOCKET options of `copy` (SO_PASSCRED, SO_RCVTIMEO, SO_PRIORITY,
 * ...: `SOCKET_OPTIONS`, which unix sockets save too) that differ from
 * those of `fresh`. Before branch sockprobe2 none was saved: a netlink
 * socket came back with no receive timeout and no credentials passed.
 */
export function socketLevelOptions(copy: number, fresh: number): SockOption[] {
  const out: SockOption[] = [];
  for (const o of SOCKET_OPTIONS) {
    const mine = getsockoptBytes(copy, o.level, o.optname, o.size);
    if (typeof mine === "number") continue;
    const theirs = getsockoptBytes(fresh, o.level, o.optname, o.size);
    if (
      typeof theirs !== "number" && theirs.length === mine.length &&
      theirs.every((x, i) => x === mine[i])
    ) {
      continue;
    }
    out.push(
      o.size === 4 && mine.length === 4
        ? {
          level: o.level,
          name: o.optname,
          label: o.name,
          int: new DataView(mine.buffer, mine.byteOffset, 4).getInt32(0, true),
        }
        : { level: o.level, name: o.optname, label: o.name, bytes: encodeBase64(mine) },
    );
  }
  return out;
}

/**
 * Reads netlink socket `copy` (cryo's copy of the target's fd); `row` is
 * its line of /proc/<pid>/net/netlink.
 */
export function collectNetlink(
  copy: number,
  type: number,
  protocol: number,
  row: NetlinkRow | undefined,
): { netlink: NetlinkSocket } | { refused: SupportId; detail?: string } {
  if (!SAVED_PROTOCOLS.has(protocol)) {
    return { refused: "socket.netlink", detail: `protocol ${protocol}` };
  }
  const local = decodeNetlinkAddr(sockName(copy));
  // A socket never bound (no port id: nothing can reach it) has no /proc/net/netlink line.
  if (!row && local?.portid) {
    return { refused: "socket.netlink", detail: "not in the process's /proc/net/netlink" };
  }
  if ((row?.rmem ?? 0) > 0 || datagramQueued(copy)) {
    return { refused: "socket.netlink-queued", detail: `${row?.rmem ?? 0} bytes queued` };
  }
  if (row?.dumpRunning) return { refused: "socket.netlink-queued", detail: "a dump in progress" };
  const peer = decodeNetlinkAddr(peerName(copy));
  const fresh = newSocket(AF.NETLINK, type, protocol);
  if (fresh < 0) throw new CryoError("cannot create a netlink socket");
  const options: SockOption[] = [];
  let buffers;
  try {
    for (const [name, label] of OPTIONS) {
      const v = readInt(copy, name);
      if (v !== null && v !== readInt(fresh, name)) {
        options.push({ level: NETLINK.SOL, name, label, int: v });
      }
    }
    options.push(...socketLevelOptions(copy, fresh));
    buffers = readBuffers(copy, fresh);
  } finally {
    closeFd(fresh);
  }
  return {
    netlink: {
      protocol,
      type,
      portid: local?.portid ?? 0,
      groups: netlinkMemberships(copy),
      peer: peer && (peer.portid || peer.groups) ? peer : null,
      options,
      ...(buffers ? { buffers } : {}),
    },
  };
}

/** Emits the ops re-creating netlink socket `s` into `fdSlot`. */
export function emitNetlink(
  p: ProgramBuilder,
  fdSlot: number,
  s: NetlinkSocket,
  label: string,
): void {
  p.op(SYS.socket, [AF.NETLINK, s.type, s.protocol], {
    store: fdSlot,
    comment: `${label}: netlink route, port id ${s.portid}`,
  });
  for (const o of s.options) emitOption(p, fdSlot, o);
  emitBuffers(p, fdSlot, s.buffers);
  const low = s.groups.filter((g) => g <= 32).reduce((m, g) => (m | (1 << (g - 1))) >>> 0, 0);
  if (s.portid !== 0) {
    const addr = encodeNetlinkAddr({ portid: s.portid, groups: low });
    p.op(SYS.bind, [slot(fdSlot), p.data(addr, 4), addr.length], {
      comment: `bind port id ${s.portid}, groups 0x${low.toString(16)}`,
    });
  }
  for (const g of s.groups.filter((g) => g > 32 || s.portid === 0)) {
    p.op(SYS.setsockopt, [
      slot(fdSlot),
      NETLINK.SOL,
      NETLINK.ADD_MEMBERSHIP,
      p.data(intBytes(g), 4),
      4,
    ], {
      comment: `join group ${g}`,
    });
  }
  if (s.peer) {
    const addr = encodeNetlinkAddr(s.peer);
    p.op(SYS.connect, [slot(fdSlot), p.data(addr, 4), addr.length], {
      comment: `connect port id ${s.peer.portid}`,
    });
  }
}
