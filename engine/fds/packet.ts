/**
 * AF_PACKET sockets (SOCK_RAW and SOCK_DGRAM: dhclient, tcpdump, arping,
 * lldpd): re-created with the same type and protocol, bound to the same
 * interface (by index: refused at restore when that index no longer names
 * the interface it named at dump, `socket.packet-interface`), with their
 * PACKET_* and SOL_SOCKET options, classic BPF filter, memberships
 * (PACKET_ADD_MEMBERSHIP, read through packet_diag: ffi/packet_diag.ts) and
 * fanout group (sockets of the tree in one group join the same id again).
 *
 * The restore creates the socket with protocol 0 (it receives nothing
 * then), sets its options and filter, and only then binds it to its
 * protocol and interface: no packet reaches it unfiltered.
 *
 * Rx/tx rings come back with their mapping (engine/fds/packet_ring.ts).
 *
 * Refused by name: packets waiting to be read (no way to queue them again;
 * `socket.packet-queued`, transient: retry), rings whose state cannot be
 * set up again (`socket.packet-ring`), SOCK_PACKET and fanout groups steered by a BPF
 * program (`socket.packet-other`).
 *
 * @module
 */

import { closeFd, firstDatagramLength, getsockoptInt, newSocket, sockName } from "../../ffi/net.ts";
import { interfaceNameOf, type PacketDiag } from "../../ffi/packet_diag.ts";
import { SYS } from "../../ffi/sysno.ts";
import { CryoError } from "../errors.ts";
import type { PacketRing, PacketSocket, SockOption } from "../model.ts";
import { collectRing, emitRing } from "./packet_ring.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";
import { type SupportId, supportOf } from "../support.ts";
import { decodeBase64 } from "../base64.ts";
import { emitBuffers, emitOption, readBuffers } from "./inet.ts";
import { socketLevelOptions } from "./netlink.ts";

/** AF_PACKET. */
export const AF_PACKET = 17;
const SOL_PACKET = 263;
const SOCK_PACKET = 10;
const PACKET_ADD_MEMBERSHIP = 1;
const PACKET_COPY_THRESH = 7;
const PACKET_FANOUT = 18;
const PACKET_VERSION = 10;
/** Fanout modes steered by a BPF program (PACKET_FANOUT_DATA): the program cannot be read back. */
const FANOUT_CBPF = 6, FANOUT_EBPF = 7;
/** PACKET_FANOUT_FLAG_UNIQUEID as getsockopt shows it: asks the kernel for an id (the saved one is asked for again). */
const FANOUT_FLAG_UNIQUEID = 0x20000000;
const SO_ATTACH_FILTER = 26, SO_LOCK_FILTER = 44;

/** The SOL_PACKET integer options saved (when they differ from a fresh socket's). */
const OPTIONS: [number, string][] = [
  [10, "PACKET_VERSION"],
  [12, "PACKET_RESERVE"],
  [8, "PACKET_AUXDATA"],
  [9, "PACKET_ORIGDEV"],
  [15, "PACKET_VNET_HDR"],
  [24, "PACKET_VNET_HDR_SZ"],
  [17, "PACKET_TIMESTAMP"],
  [20, "PACKET_QDISC_BYPASS"],
  [23, "PACKET_IGNORE_OUTGOING"],
  [14, "PACKET_LOSS"],
  [19, "PACKET_TX_HAS_OFF"],
];

/** The interface with index `ifindex` in cryo's network namespace, if any. */
export function interfaceName(ifindex: number): string | undefined {
  return interfaceNameOf(ifindex);
}

/** Why interface `name` (index `ifindex` at dump) cannot be used at restore, or undefined. */
export function interfaceProblem(
  name: string | undefined,
  ifindex: number,
  what = "it was bound to",
): string | undefined {
  if (ifindex === 0) return undefined;
  const now = interfaceName(ifindex);
  if (name !== undefined && now === name) return undefined;
  return `${what} interface ${name ?? "?"} (index ${ifindex}), ` +
    (now ? `index ${ifindex} is now ${now}` : `no interface has index ${ifindex} now`);
}

/**
 * Reads packet socket `copy` (cryo's copy of the target's fd) of type
 * `type`; `diag` is what packet_diag shows of it.
 */
export function collectPacket(
  copy: number,
  type: number,
  diag: PacketDiag | undefined,
  /** The process holding it and its inode (its rings' mapping is found by it). */
  owner?: { pid: number; ino: number },
): { packet: PacketSocket } | { refused: SupportId; detail?: string } {
  if (type === SOCK_PACKET) return { refused: "socket.packet-other", detail: "SOCK_PACKET" };
  if (!diag) return { refused: "socket.packet-other", detail: "not shown by packet_diag" };
  let ring: PacketRing | undefined;
  if (diag.ring) {
    const version = getsockoptInt(copy, SOL_PACKET, PACKET_VERSION) ?? 0;
    const got = owner && (diag.rx || diag.tx)
      ? collectRing(owner.pid, owner.ino, copy, version, diag.rx, diag.tx)
      : { problem: "its ring's geometry is not shown by packet_diag" };
    if ("problem" in got) {
      return { refused: "socket.packet-ring", detail: `an mmapped rx or tx ring: ${got.problem}` };
    }
    ring = got.ring;
  }
  // getsockopt tells the fanout flags too (packet_diag does not); a kernel-chosen id is kept.
  const fanoutValue = getsockoptInt(copy, SOL_PACKET, PACKET_FANOUT) ?? 0;
  const fanout = fanoutValue ? (fanoutValue & ~FANOUT_FLAG_UNIQUEID) >>> 0 : undefined;
  const mode = fanout !== undefined ? (fanout >>> 16) & 0xff : undefined;
  if (mode === FANOUT_CBPF || mode === FANOUT_EBPF) {
    return { refused: "socket.packet-other", detail: "a fanout group steered by a BPF program" };
  }
  const first = firstDatagramLength(copy);
  if (first >= 0) {
    return {
      refused: "socket.packet-queued",
      detail: "packets waiting to be read (retry when the program has read them)",
    };
  }
  const name = sockName(copy);
  if (!name || name.length < 8) throw new CryoError("getsockname of a packet socket failed");
  const dv = new DataView(name.buffer, name.byteOffset, name.length);
  const protocol = dv.getUint16(2, false);
  const ifindex = dv.getInt32(4, true);
  if (ifindex < 0) {
    // The kernel unhooks a socket whose interface is unregistered and marks its index -1.
    return { refused: "socket.packet-interface", detail: "its interface was removed" };
  }
  const fresh = newSocket(AF_PACKET, type, 0);
  if (fresh < 0) throw new CryoError("cannot create a packet socket to compare options");
  const options: SockOption[] = [];
  let buffers;
  try {
    for (const [opt, label] of OPTIONS) {
      const v = getsockoptInt(copy, SOL_PACKET, opt);
      if (v !== null && v !== getsockoptInt(fresh, SOL_PACKET, opt)) {
        options.push({ level: SOL_PACKET, name: opt, label, int: v });
      }
    }
    if (diag.copyThresh) {
      options.push({
        level: SOL_PACKET,
        name: PACKET_COPY_THRESH,
        label: "PACKET_COPY_THRESH",
        int: diag.copyThresh,
      });
    }
    options.push(...socketLevelOptions(copy, fresh));
    buffers = readBuffers(copy, fresh);
  } finally {
    closeFd(fresh);
  }
  const ifname = ifindex ? interfaceName(ifindex) : undefined;
  return {
    packet: {
      type,
      protocol,
      ifindex,
      ...(ifname !== undefined ? { ifname } : {}),
      options,
      ...(buffers ? { buffers } : {}),
      memberships: diag.memberships.map((m) => ({ ...m, ifname: interfaceName(m.ifindex) })),
      ...(fanout !== undefined ? { fanout } : {}),
      ...(ring ? { ring } : {}),
    },
  };
}

/** Why packet socket `s` cannot be re-created here (an interface gone or renumbered), or undefined. */
export function packetProblem(s: PacketSocket): string | undefined {
  const why = interfaceProblem(s.ifname, s.ifindex) ??
    s.memberships.map((m) => interfaceProblem(m.ifname, m.ifindex, "it had a membership on"))
      .find((x) => x);
  return why && `${supportOf("socket.packet-interface").what}: ${why}`;
}

function hexBytes(h: string): Uint8Array {
  return new Uint8Array((h.match(/../g) ?? []).map((x) => parseInt(x, 16)));
}

/** Emits the ops re-creating packet socket `s` into `fdSlot`. */
export function emitPacket(
  p: ProgramBuilder,
  fdSlot: number,
  s: PacketSocket,
  label: string,
): void {
  const where = s.ifindex ? `interface ${s.ifname} (${s.ifindex})` : "every interface";
  p.op(SYS.socket, [AF_PACKET, s.type, 0], {
    store: fdSlot,
    comment: `${label}: packet socket, protocol 0x${s.protocol.toString(16)} on ${where}`,
  });
  for (const o of s.options) emitOption(p, fdSlot, o);
  emitBuffers(p, fdSlot, s.buffers);
  if (s.filter?.code) {
    const code = decodeBase64(s.filter.code);
    const prog = new Uint8Array(16);
    const dv = new DataView(prog.buffer);
    dv.setUint16(0, code.length / 8, true);
    dv.setBigUint64(8, p.data(code, 8), true);
    p.op(SYS.setsockopt, [slot(fdSlot), 1, SO_ATTACH_FILTER, p.data(prog, 8), 16], {
      comment: `attach its classic BPF filter (${code.length / 8} instructions)`,
    });
  }
  if (s.filter?.locked) {
    p.op(SYS.setsockopt, [slot(fdSlot), 1, SO_LOCK_FILTER, p.data(int32(1), 4), 4], {
      comment: "SO_LOCK_FILTER",
    });
  }
  // The rings before the bind: nothing is filled before they are where the program looks.
  if (s.ring) emitRing(p, fdSlot, s.ring);
  if (s.protocol !== 0 || s.ifindex !== 0) {
    const ll = new Uint8Array(20);
    const dv = new DataView(ll.buffer);
    dv.setUint16(0, AF_PACKET, true);
    dv.setUint16(2, s.protocol, false);
    dv.setInt32(4, s.ifindex, true);
    p.op(SYS.bind, [slot(fdSlot), p.data(ll, 4), ll.length], {
      comment: `bind protocol 0x${s.protocol.toString(16)}, ${where}`,
    });
  }
  for (const m of s.memberships) {
    // struct packet_mreq_max: room for addresses longer than packet_mreq's 8 bytes.
    const mreq = new Uint8Array(40);
    const dv = new DataView(mreq.buffer);
    const addr = hexBytes(m.address).subarray(0, 32);
    dv.setInt32(0, m.ifindex, true);
    dv.setUint16(4, m.type, true);
    dv.setUint16(6, addr.length, true);
    mreq.set(addr, 8);
    for (let i = 0; i < m.count; i++) {
      p.op(SYS.setsockopt, [slot(fdSlot), SOL_PACKET, PACKET_ADD_MEMBERSHIP, p.data(mreq, 4), 40], {
        comment: `PACKET_ADD_MEMBERSHIP type ${m.type} on ${m.ifname} (${m.ifindex})`,
      });
    }
  }
  if (s.fanout !== undefined) {
    p.op(SYS.setsockopt, [slot(fdSlot), SOL_PACKET, PACKET_FANOUT, p.data(int32(s.fanout), 4), 4], {
      comment: `PACKET_FANOUT group ${s.fanout & 0xffff}, mode ${(s.fanout >>> 16) & 0xff}`,
    });
  }
}

function int32(v: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, v, true);
  return b;
}
