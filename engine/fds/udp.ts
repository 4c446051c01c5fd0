/**
 * UDP sockets (IPv4, IPv6): re-created, bound to the same address and
 * connected to the same peer, with their options. Datagrams waiting to be
 * read are saved with their senders' addresses and sent again from them
 * (udp_queue.ts).
 *
 * @module
 */

import { closeFd, peerName, SO, SOCK, sockName, SOL } from "../../ffi/net.ts";
import { readDatagramQueue } from "./udp_queue.ts";
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
  IPPROTO_UDP,
  plainOptions,
  readBuffers,
  readOptions,
  reuseaddrOf,
  sockAddrOf,
} from "./inet.ts";

/**
 * Reads UDP socket `copy` (cryo's copy of the target's fd); `shutdownOf`
 * gives its sk_shutdown as sock_diag reports it.
 */
export function collectUdp(
  copy: number,
  family: InetSocket["family"],
  shutdownOf: () => number | undefined = () => undefined,
): Collected {
  const local = boundOrNull(sockAddrOf(sockName(copy)));
  const peer = sockAddrOf(peerName(copy));
  const queue = readDatagramQueue(copy, { family, local, peer });
  if ("refused" in queue) return { refused: "socket.udp-queued-other", detail: queue.refused };
  const fresh = freshSocket(familyNumber(family), SOCK.DGRAM, IPPROTO_UDP);
  let options, buffers;
  try {
    options = readOptions(copy, fresh, "udp", family);
    buffers = readBuffers(copy, fresh);
  } finally {
    closeFd(fresh);
  }
  const shutdown = shutdownOf() ?? 0;
  return {
    inet: {
      family,
      proto: "udp",
      state: "closed",
      local,
      peer,
      options,
      ...(buffers ? { buffers } : {}),
      ...(shutdown ? { shutdown } : {}),
      ...(queue.datagrams.length ? { datagrams: queue.datagrams } : {}),
    },
  };
}

/** Emits the ops re-creating UDP socket `s` into `fdSlot`. */
export function emitUdp(p: ProgramBuilder, fdSlot: number, s: InetSocket, label: string): void {
  p.op(SYS.socket, [familyNumber(s.family), SOCK.DGRAM, IPPROTO_UDP], {
    store: fdSlot,
    comment: `${label}: udp ${formatAddr(s.local)}${s.peer ? ` -> ${formatAddr(s.peer)}` : ""}`,
  });
  emitV6only(p, fdSlot, s);
  for (const o of plainOptions(s)) emitOption(p, fdSlot, o);
  emitBuffers(p, fdSlot, s.buffers);
  emitSetInt(p, fdSlot, SOL.SOCKET, SO.REUSEADDR, reuseaddrOf(s), "SO_REUSEADDR as saved");
  if (s.local) emitBind(p, fdSlot, s);
  if (s.peer) emitConnect(p, fdSlot, s);
  if (s.shutdown) {
    // how = sk_shutdown - 1 (SHUT_RD 0, SHUT_WR 1, SHUT_RDWR 2). Unconnected, the kernel
    // sets the bits and still says ENOTCONN.
    p.op(SYS.shutdown, [slot(fdSlot), s.shutdown - 1], {
      comment: `shutdown ${["", "SHUT_RD", "SHUT_WR", "SHUT_RDWR"][s.shutdown]}`,
      ...(s.peer ? {} : { allowFail: true }),
    });
  }
}
