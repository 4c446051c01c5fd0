/**
 * One TCP segment written as if a connection's peer had sent it: the
 * restore of a half-closed connection needs its socket to receive the
 * peer's FIN (or the ACK of its own FIN), which TCP repair mode cannot
 * queue. The segment (IPv4 or IPv6 header, a 20-byte TCP header, no
 * payload, checksums computed here) goes out of a raw socket
 * (IPPROTO_RAW: the header is ours) to this host's own address, so the
 * kernel takes it in through loopback like any segment from the peer. It
 * carries {@link INJECT_MARK} (SO_MARK), which the dump's network lock
 * lets through (ffi/tcp_lock.ts). Needs CAP_NET_RAW (and CAP_NET_ADMIN for
 * the mark).
 *
 * @module
 */

import { rawSyscall, SyscallError } from "./libc.ts";
import { AF, closeFd, encodeInetAddr, inetAddressBytes, SOCK, SOL } from "./net.ts";
import { SYS } from "./sysno.ts";

/** skb->mark of injected segments ("cryo"); the network lock does not drop them. */
export const INJECT_MARK = 0x6372796f;

/** TCP header flags. */
export const TCP_FLAG = { FIN: 0x01, ACK: 0x10 } as const;

const IPPROTO_RAW = 255;
const IPPROTO_TCP = 6;
const SO_MARK = 36;
const O_CLOEXEC = 0o2000000;

/** A segment from `from` (the peer) to `to` (the restored socket). */
export interface InjectedSegment {
  /** The socket's family; an IPv6 socket with IPv4-mapped addresses sends IPv4. */
  family: "ipv4" | "ipv6";
  from: { address: string; port: number };
  to: { address: string; port: number; scopeId?: number };
  seq: number;
  ack: number;
  flags: number;
  /** The window field (already scaled down by the peer's shift). */
  window: number;
}

/** The IPv4 text of an IPv4-mapped IPv6 address, or null. */
function mappedV4(address: string): string | null {
  const b = inetAddressBytes(AF.INET6, address);
  const mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  return mapped ? [...b.subarray(12)].join(".") : null;
}

/** The 16-bit ones' complement sum of `parts`, folded and inverted. */
function checksum(parts: Uint8Array[]): number {
  let sum = 0;
  for (const p of parts) {
    for (let i = 0; i < p.length; i += 2) sum += (p[i] << 8) | (i + 1 < p.length ? p[i + 1] : 0);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function tcpHeader(s: InjectedSegment): Uint8Array {
  const h = new Uint8Array(20);
  const dv = new DataView(h.buffer);
  dv.setUint16(0, s.from.port);
  dv.setUint16(2, s.to.port);
  dv.setUint32(4, s.seq >>> 0);
  dv.setUint32(8, s.ack >>> 0);
  h[12] = 5 << 4; // data offset: 5 words, no options
  h[13] = s.flags;
  dv.setUint16(14, Math.min(s.window, 0xffff));
  return h;
}

/** The whole packet (IP header and TCP header) and the sockaddr to send it to. */
export function buildSegment(
  s: InjectedSegment,
): { family: number; packet: Uint8Array<ArrayBuffer>; dest: Uint8Array<ArrayBuffer> } {
  const tcp = tcpHeader(s);
  const v4From = s.family === "ipv4" ? s.from.address : mappedV4(s.from.address);
  const v4To = s.family === "ipv4" ? s.to.address : mappedV4(s.to.address);
  if (v4From !== null && v4To !== null) {
    const src = inetAddressBytes(AF.INET, v4From), dst = inetAddressBytes(AF.INET, v4To);
    const pseudo = new Uint8Array([...src, ...dst, 0, IPPROTO_TCP, 0, tcp.length]);
    new DataView(tcp.buffer).setUint16(16, checksum([pseudo, tcp]));
    const packet = new Uint8Array(20 + tcp.length);
    const dv = new DataView(packet.buffer);
    packet[0] = 0x45; // version 4, 5 words
    dv.setUint16(2, packet.length); // (the kernel fills it in too)
    packet[8] = 64; // ttl
    packet[9] = IPPROTO_TCP;
    packet.set(src, 12);
    packet.set(dst, 16);
    packet.set(tcp, 20); // the IP checksum and id: filled in by the kernel
    return { family: AF.INET, packet, dest: encodeInetAddr(AF.INET, { address: v4To, port: 0 }) };
  }
  const src = inetAddressBytes(AF.INET6, s.from.address);
  const dst = inetAddressBytes(AF.INET6, s.to.address);
  const pseudo = new Uint8Array(40);
  pseudo.set(src, 0);
  pseudo.set(dst, 16);
  new DataView(pseudo.buffer).setUint32(32, tcp.length);
  pseudo[39] = IPPROTO_TCP;
  new DataView(tcp.buffer).setUint16(16, checksum([pseudo, tcp]));
  const packet = new Uint8Array(40 + tcp.length);
  const dv = new DataView(packet.buffer);
  packet[0] = 0x60; // version 6
  dv.setUint16(4, tcp.length); // payload length
  packet[6] = IPPROTO_TCP;
  packet[7] = 64; // hop limit
  packet.set(src, 8);
  packet.set(dst, 24);
  packet.set(tcp, 40);
  const dest = encodeInetAddr(AF.INET6, { address: s.to.address, port: 0, scopeId: s.to.scopeId });
  return { family: AF.INET6, packet, dest };
}

/** Sends segment `s` to this host (see the module doc). Throws a {@link SyscallError}. */
export function injectSegment(s: InjectedSegment): void {
  const { family, packet, dest } = buildSegment(s);
  const fd = Number(rawSyscall(SYS.socket, family, SOCK.RAW | O_CLOEXEC, IPPROTO_RAW));
  if (fd < 0) throw new SyscallError("socket(SOCK_RAW, IPPROTO_RAW)", [family], -fd);
  try {
    const mark = new Int32Array([INJECT_MARK]);
    const m = rawSyscall(SYS.setsockopt, fd, SOL.SOCKET, SO_MARK, mark, 4);
    if (m < 0n) throw new SyscallError("setsockopt(SO_MARK)", [fd], Number(-m));
    const r = rawSyscall(SYS.sendto, fd, packet, packet.length, 0, dest, dest.length);
    if (r < 0n) throw new SyscallError("sendto (raw segment)", [fd], Number(-r));
  } finally {
    closeFd(fd);
  }
}
