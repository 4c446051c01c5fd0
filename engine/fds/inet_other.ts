/**
 * UDP-Lite, ICMP echo ("ping") and raw IPv4/IPv6 sockets: re-created with
 * the same kind (and a raw socket's protocol), bound to the same address (a
 * ping socket's port is its echo identifier), connected to the same peer,
 * with their options (UDP-Lite's checksum coverage, a raw socket's
 * IP_HDRINCL, ICMP filter and IP options among them). Datagrams waiting to
 * be read cannot be queued again exactly (their senders cannot be faked
 * like a UDP sender's): a socket with any is refused
 * (`socket.inet-queued-other`).
 *
 * @module
 */

import { closeFd, firstDatagramLength, peerName, sockName } from "../../ffi/net.ts";
import { polledShutdown } from "../../ffi/socket.ts";
import { SYS } from "../../ffi/sysno.ts";
import type { InetSocket } from "../model.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";
import {
  boundOrNull,
  type Collected,
  emitBind,
  emitBuffers,
  emitConnect,
  emitOption,
  emitSetInt,
  emitV6only,
  familyNumber,
  formatAddr,
  freshSocket,
  plainOptions,
  readBuffers,
  readOptions,
  reuseaddrOf,
  sockAddrOf,
  socketArgs,
} from "./inet.ts";
import { SO, SOL } from "../../ffi/net.ts";
import { type DatagramRow, remoteAddress } from "../proc/net_owners.ts";

/** sk_state of a connected datagram socket. */
const TCP_ESTABLISHED = 1;

/** The kinds this module handles. */
export type OtherProto = "udplite" | "ping" | "raw";

/** Whether address `a` is the wildcard (a raw socket not bound to an address). */
function wildcard(a: { address: string }): boolean {
  return a.address === "0.0.0.0" || a.address === "::";
}

/**
 * Reads socket `copy` (cryo's copy of the target's fd) of kind `proto`
 * (`protocol`: its SO_PROTOCOL); `shutdownOf` gives its sk_shutdown as
 * sock_diag reports it (UDP-Lite); `row`, a ping or raw socket's line of
 * /proc/net/{icmp,raw}{,6}.
 */
export function collectOther(
  copy: number,
  family: InetSocket["family"],
  proto: OtherProto,
  protocol: number,
  shutdownOf: () => number | undefined = () => undefined,
  row?: DatagramRow,
): Collected {
  // Ping and raw sockets: no sock_diag tells their sk_shutdown (raw_diag is seldom there); a
  // poll shows a receive side shut down. A send side shut down alone is not seen (lost).
  const polled = proto === "udplite" ? 0 : polledShutdown(copy);
  const first = firstDatagramLength(copy);
  // Shut down for receiving with an empty queue, a peek gives 0 (a ping or IPv4 raw datagram
  // holds at least its ICMP or IP header).
  if (first > 0 || (first === 0 && !(polled & 1))) {
    return {
      refused: "socket.inet-queued-other",
      detail: `${proto} socket with datagrams waiting to be read`,
    };
  }
  const name = sockAddrOf(sockName(copy));
  // A raw socket's port is its protocol: it is bound when its address is not the wildcard.
  const local = proto === "raw" ? (name && !wildcard(name) ? name : null) : boundOrNull(name);
  // Connected with port 0 (a ping or raw socket's usual connect), getpeername says
  // ENOTCONN: the state and remote address come from /proc/net/{icmp,raw}.
  const peer = sockAddrOf(peerName(copy)) ??
    (row?.state === TCP_ESTABLISHED ? { address: remoteAddress(row.remote), port: 0 } : null);
  const kind = { family, proto, ...(proto === "raw" ? { protocol } : {}) };
  const fresh = freshSocket(familyNumber(family), ...socketArgs(kind));
  let options, buffers;
  try {
    options = readOptions(copy, fresh, proto, family, protocol);
    buffers = readBuffers(copy, fresh);
  } finally {
    closeFd(fresh);
  }
  const shutdown = shutdownOf() ?? polled;
  return {
    inet: {
      ...kind,
      state: "closed",
      local,
      peer,
      options,
      ...(buffers ? { buffers } : {}),
      ...(shutdown ? { shutdown } : {}),
    },
  };
}

/** Emits the ops re-creating UDP-Lite, ping or raw socket `s` into `fdSlot`. */
export function emitOther(p: ProgramBuilder, fdSlot: number, s: InetSocket, label: string): void {
  const [type, protocol] = socketArgs(s);
  const what = s.proto === "raw" ? `raw (protocol ${protocol})` : s.proto;
  p.op(SYS.socket, [familyNumber(s.family), type, protocol], {
    store: fdSlot,
    comment: `${label}: ${what} ${formatAddr(s.local)}${s.peer ? ` -> ${formatAddr(s.peer)}` : ""}`,
  });
  // A raw socket has its "port" (the protocol) from creation: IPV6_V6ONLY is refused then.
  if (s.proto !== "raw") emitV6only(p, fdSlot, s);
  for (const o of plainOptions(s)) emitOption(p, fdSlot, o);
  emitBuffers(p, fdSlot, s.buffers);
  emitSetInt(p, fdSlot, SOL.SOCKET, SO.REUSEADDR, reuseaddrOf(s), "SO_REUSEADDR as saved");
  if (s.local) emitBind(p, fdSlot, s);
  if (s.peer) emitConnect(p, fdSlot, s);
  if (s.shutdown) {
    p.op(SYS.shutdown, [slot(fdSlot), s.shutdown - 1], {
      comment: `shutdown ${["", "SHUT_RD", "SHUT_WR", "SHUT_RDWR"][s.shutdown]}`,
      ...(s.peer ? {} : { allowFail: true }),
    });
  }
}
