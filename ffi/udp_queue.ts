/**
 * UDP receive queues seen from cryo: peeking at queued datagrams one by one
 * with their senders' addresses (SO_PEEK_OFF walks past each one without
 * consuming it), a socket's memory counters (SO_MEMINFO), and sending a
 * hand-made UDP datagram with any source address and port through a raw
 * IPv4/IPv6 socket (IPPROTO_RAW: the IP header is ours).
 *
 * @module
 */

import { rawSyscall, SyscallError } from "./libc.ts";
import { SYS } from "./sysno.ts";
import {
  AF,
  encodeInetAddr,
  getsockoptBytes,
  type InetAddr,
  inetAddressBytes,
  SOCK,
  SOL,
} from "./net.ts";

/** SO_PEEK_OFF: where MSG_PEEK starts reading (-1: off, always the first datagram). */
export const SO_PEEK_OFF = 42;
/** SOL_UDP UDP_GRO: datagrams may be coalesced in the receive queue. */
export const UDP_GRO = 104;
const SO_MEMINFO = 55;
const MSG_PEEK = 2;
const MSG_TRUNC = 0x20;
const MSG_DONTWAIT = 0x40;
const IPPROTO_RAW = 255;
const IPPROTO_UDP = 17;
const O_CLOEXEC = 0o2000000;

/** One datagram seen by {@link peekDatagram}. */
export interface PeekedDatagram {
  /** Its real length (may exceed the buffer: then `data` is cut). */
  length: number;
  /** The bytes copied (up to the buffer's size). */
  data: Uint8Array;
  /** The sender's sockaddr as the kernel wrote it. */
  from: Uint8Array;
}

/**
 * Peeks at the datagram at the socket's peek offset (MSG_PEEK|MSG_TRUNC|
 * MSG_DONTWAIT) into `buf`, with its sender's address. Null when none is
 * left there.
 */
export function peekDatagram(fd: number, buf: Uint8Array): PeekedDatagram | null {
  const addr = new Uint8Array(128);
  const len = new Uint32Array([addr.length]);
  const r = rawSyscall(
    SYS.recvfrom,
    fd,
    buf,
    buf.length,
    MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT,
    addr,
    len,
  );
  if (r === -11n) return null; // EAGAIN
  if (r < 0n) throw new SyscallError("recvfrom(MSG_PEEK)", [fd], Number(-r));
  const length = Number(r);
  return {
    length,
    data: buf.slice(0, Math.min(length, buf.length)),
    from: addr.slice(0, Math.min(len[0], addr.length)),
  };
}

/** A socket's memory counters (SO_MEMINFO) cryo looks at. */
export interface SocketMemInfo {
  /** Bytes charged to the receive queue (sk_rmem_alloc). */
  rmem: number;
  /** SO_RCVBUF. */
  rcvbuf: number;
  /** Packets dropped on their way into the socket (sk_drops). */
  drops: number;
}

/** Reads SO_MEMINFO of socket `fd`. */
export function socketMemInfo(fd: number): SocketMemInfo {
  const b = getsockoptBytes(fd, SOL.SOCKET, SO_MEMINFO, 36);
  if (typeof b === "number") throw new SyscallError("getsockopt(SO_MEMINFO)", [fd], -b);
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  return {
    rmem: dv.getUint32(0, true),
    rcvbuf: dv.getUint32(4, true),
    drops: dv.getUint32(32, true),
  };
}

function checksum(parts: Uint8Array[]): number {
  let sum = 0;
  for (const p of parts) {
    for (let i = 0; i < p.length; i += 2) sum += (p[i] << 8) | (i + 1 < p.length ? p[i + 1] : 0);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  const c = ~sum & 0xffff;
  return c === 0 ? 0xffff : c;
}

/** One datagram to hand to the kernel as if it came from `from`. */
export interface ForgedDatagram {
  /** AF.INET or AF.INET6: the IP version of the packet. */
  family: number;
  from: InetAddr;
  to: InetAddr;
  payload: Uint8Array;
}

/**
 * Encodes `d` as an IP packet (IPv4 or IPv6 header, UDP header with its
 * checksum, payload). The IPv6 flow information of `from` goes into the
 * header, where the receiver's recvfrom reads it.
 */
export function encodeUdpPacket(d: ForgedDatagram): Uint8Array<ArrayBuffer> {
  const src = inetAddressBytes(d.family, d.from.address);
  const dst = inetAddressBytes(d.family, d.to.address);
  const udpLength = 8 + d.payload.length;
  const udp = new Uint8Array(udpLength);
  const u = new DataView(udp.buffer);
  u.setUint16(0, d.from.port, false);
  u.setUint16(2, d.to.port, false);
  u.setUint16(4, udpLength & 0xffff, false);
  udp.set(d.payload, 8);
  const pseudo = new Uint8Array(d.family === AF.INET ? 12 : 40);
  const pv = new DataView(pseudo.buffer);
  pseudo.set(src, 0);
  pseudo.set(dst, src.length);
  if (d.family === AF.INET) {
    pseudo[9] = IPPROTO_UDP;
    pv.setUint16(10, udpLength, false);
  } else {
    pv.setUint32(32, udpLength, false);
    pseudo[39] = IPPROTO_UDP;
  }
  u.setUint16(6, checksum([pseudo, udp]), false);
  const headerSize = d.family === AF.INET ? 20 : 40;
  const out = new Uint8Array(headerSize + udpLength);
  const h = new DataView(out.buffer);
  if (d.family === AF.INET) {
    out[0] = 0x45;
    h.setUint16(2, out.length, false);
    out[8] = 64; // TTL
    out[9] = IPPROTO_UDP;
    out.set(src, 12);
    out.set(dst, 16);
    // The kernel fills in the identification and the header checksum.
  } else {
    h.setUint32(0, (0x60000000 | ((d.from.flowinfo ?? 0) & 0x0fffffff)) >>> 0, false);
    h.setUint16(4, udpLength, false);
    out[6] = IPPROTO_UDP;
    out[7] = 64; // hop limit
    out.set(src, 8);
    out.set(dst, 24);
  }
  out.set(udp, headerSize);
  return out;
}

/**
 * Sends `d` through a raw socket of its family: the packet is routed to
 * `d.to` (a local address: through the loopback) and delivered like one
 * received from `d.from`. Throws a SyscallError on failure.
 */
export function sendForgedDatagram(d: ForgedDatagram): void {
  const fd = Number(rawSyscall(SYS.socket, d.family, SOCK.RAW | O_CLOEXEC, IPPROTO_RAW));
  if (fd < 0) throw new SyscallError("socket(SOCK_RAW, IPPROTO_RAW)", [d.family], -fd);
  try {
    const packet = encodeUdpPacket(d);
    const to = encodeInetAddr(d.family, { address: d.to.address, port: 0 });
    const r = rawSyscall(SYS.sendto, fd, packet, packet.length, 0, to, to.length);
    if (r < 0n) throw new SyscallError("sendto(raw)", [fd, d.to.address], Number(-r));
  } finally {
    rawSyscall(SYS.close, fd);
  }
}

/** Sleeps `ms` milliseconds (nanosleep). */
export function sleepMs(ms: number): void {
  const ts = new BigInt64Array([BigInt(Math.floor(ms / 1000)), BigInt((ms % 1000) * 1e6)]);
  rawSyscall(SYS.nanosleep, ts, 0);
}
