/**
 * TCP, UDP and netlink sockets seen from cryo: a copy of another process's socket fd
 * (pidfd_getfd), socket options, addresses (sockaddr_in / sockaddr_in6
 * codecs), queue sizes and peeking at queued bytes.
 *
 * @module
 */

import { rawSyscall, SyscallError } from "./libc.ts";
import { SYS } from "./sysno.ts";

/** Address families. */
export const AF = { UNIX: 1, INET: 2, NETLINK: 16, INET6: 10 } as const;
/** Socket types. */
export const SOCK = { STREAM: 1, DGRAM: 2, RAW: 3, SEQPACKET: 5 } as const;
/** Option levels. */
export const SOL = { SOCKET: 1, IP: 0, TCP: 6, UDP: 17, IPV6: 41 } as const;
/** SOL_SOCKET options cryo reads. */
export const SO = {
  REUSEADDR: 2,
  TYPE: 3,
  DONTROUTE: 5,
  BROADCAST: 6,
  SNDBUF: 7,
  RCVBUF: 8,
  /** SO_SNDBUF without the net.core.wmem_max cap (CAP_NET_ADMIN). */
  SNDBUFFORCE: 32,
  /** SO_RCVBUF without the net.core.rmem_max cap (CAP_NET_ADMIN). */
  RCVBUFFORCE: 33,
  /**
   * Which of the two buffer sizes the program fixed (SOCK_SNDBUF_LOCK 1,
   * SOCK_RCVBUF_LOCK 2: the kernel no longer autotunes them); readable and
   * settable since Linux 5.14.
   */
  BUF_LOCK: 72,
  KEEPALIVE: 9,
  OOBINLINE: 10,
  /** UDP: send without checksums (sk_no_check_tx). */
  NO_CHECK: 11,
  PRIORITY: 12,
  LINGER: 13,
  REUSEPORT: 15,
  RCVLOWAT: 18,
  RCVTIMEO: 20,
  SNDTIMEO: 21,
  ACCEPTCONN: 30,
  PROTOCOL: 38,
  DOMAIN: 39,
} as const;

const MSG_OOB = 1;
const MSG_PEEK = 2;
const MSG_DONTWAIT = 0x40;
const MSG_TRUNC = 0x20;
const MSG_NOSIGNAL = 0x4000;
const SIOCINQ = 0x541b;
const SIOCOUTQ = 0x5411;
const SIOCOUTQNSD = 0x894b;
const O_CLOEXEC = 0o2000000;

/**
 * A copy, in this process, of fd `fd` of process `pid` (pidfd_open +
 * pidfd_getfd, close-on-exec). The copy refers to the same open socket:
 * options set on it (TCP_REPAIR) apply to the target's socket.
 */
export function pidfdGetfd(pid: number, fd: number): number {
  const pidfd = rawSyscall(SYS.pidfd_open, pid, 0);
  if (pidfd < 0n) throw new SyscallError("pidfd_open", [pid], Number(-pidfd));
  try {
    const r = rawSyscall(SYS.pidfd_getfd, pidfd, fd, 0);
    if (r < 0n) throw new SyscallError("pidfd_getfd", [pid, fd], Number(-r));
    rawSyscall(SYS.fcntl, r, 2, /* F_SETFD */ 1);
    return Number(r);
  } finally {
    rawSyscall(SYS.close, pidfd);
  }
}

/** Closes an fd of this process. */
export function closeFd(fd: number): void {
  rawSyscall(SYS.close, fd);
}

/** getsockopt into a buffer of `size` bytes; the bytes the kernel wrote, or -errno. */
export function getsockoptBytes(
  fd: number,
  level: number,
  name: number,
  size: number,
): Uint8Array | number {
  const buf = new Uint8Array(size);
  const len = new Uint32Array([size]);
  const r = rawSyscall(SYS.getsockopt, fd, level, name, buf, len);
  if (r < 0n) return Number(r);
  return buf.subarray(0, len[0]);
}

/**
 * getsockopt with no room for the value: the length the kernel reports
 * (SO_GET_FILTER: the attached filter's instructions), or -errno.
 */
export function getsockoptLength(fd: number, level: number, name: number): number {
  const len = new Uint32Array([0]);
  const r = rawSyscall(SYS.getsockopt, fd, level, name, null, len);
  return r < 0n ? Number(r) : len[0];
}

/**
 * getsockopt whose buffer `buf` carries input too (MCAST_MSFILTER: the
 * interface and group asked about); the length written, or -errno.
 */
export function getsockoptWith(fd: number, level: number, name: number, buf: Uint8Array): number {
  const len = new Uint32Array([buf.length]);
  const r = rawSyscall(SYS.getsockopt, fd, level, name, buf, len);
  return r < 0n ? Number(r) : len[0];
}

/** An integer socket option, or null when the kernel refuses to tell. */
export function getsockoptInt(fd: number, level: number, name: number): number | null {
  const b = getsockoptBytes(fd, level, name, 4);
  if (typeof b === "number" || b.length < 4) return null;
  return new DataView(b.buffer, b.byteOffset, 4).getInt32(0, true);
}

/** Like {@link getsockoptInt}, but throws naming the option when it fails. */
export function getsockoptIntChecked(fd: number, level: number, name: number): number {
  const b = getsockoptBytes(fd, level, name, 4);
  if (typeof b === "number") {
    throw new SyscallError("getsockopt", [fd, level, name], -b);
  }
  return new DataView(b.buffer, b.byteOffset, 4).getInt32(0, true);
}

/** setsockopt with raw bytes; throws a SyscallError on failure. */
export function setsockoptBytes(fd: number, level: number, name: number, value: Uint8Array): void {
  const r = rawSyscall(SYS.setsockopt, fd, level, name, value, value.length);
  if (r < 0n) throw new SyscallError("setsockopt", [fd, level, name], Number(-r));
}

/** setsockopt of a 4-byte integer; throws a SyscallError on failure. */
export function setsockoptInt(fd: number, level: number, name: number, value: number): void {
  setsockoptBytes(fd, level, name, intBytes(value));
}

/**
 * setsockopt(SO_ATTACH_FILTER) of the classic BPF program `code` (its
 * `struct sock_filter` instructions, 8 bytes each) on `fd`: builds the
 * `struct sock_fprog` pointing at them. Throws a SyscallError.
 */
export function attachClassicFilter(fd: number, code: Uint8Array<ArrayBuffer>): void {
  const fprog = new Uint8Array(16); // u16 len, padding, then the pointer at offset 8
  const dv = new DataView(fprog.buffer);
  dv.setUint16(0, code.length / 8, true);
  dv.setBigUint64(8, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(code))), true);
  setsockoptBytes(fd, 1, 26, fprog); // SOL_SOCKET, SO_ATTACH_FILTER
}

/** A 4-byte little-endian int, as setsockopt wants it. */
export function intBytes(value: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, value, true);
  return b;
}

/** An IPv4 or IPv6 socket address. */
export interface InetAddr {
  /** Dotted quad, or IPv6 text (RFC 5952 style, no zone). */
  address: string;
  port: number;
  /** IPv6 flow information (sin6_flowinfo). */
  flowinfo?: number;
  /** IPv6 scope id (sin6_scope_id). */
  scopeId?: number;
}

/** The text form of 16 IPv6 address bytes ("::1", "fe80::1"). */
export function ipv6Text(b: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i] << 8) | b[i + 1]);
  // The longest run of zero groups (length >= 2) becomes "::".
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (g: number[]) => g.map((x) => x.toString(16)).join(":");
  if (best < 0) return hex(groups);
  return `${hex(groups.slice(0, best))}::${hex(groups.slice(best + bestLen))}`;
}

function ipv6Bytes(text: string): Uint8Array {
  const out = new Uint8Array(16);
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const parse = (s: string) => (s === "" ? [] : s.split(":").map((x) => parseInt(x, 16)));
  const a = parse(head);
  const b = tail === undefined ? [] : parse(tail);
  const groups = [...a, ...new Array(8 - a.length - b.length).fill(0), ...b];
  groups.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

/** Decodes a sockaddr_in or sockaddr_in6; null for another family or an empty address. */
export function decodeInetAddr(b: Uint8Array): InetAddr | null {
  if (b.length < 2) return null;
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  const family = dv.getUint16(0, true);
  if (family === AF.INET && b.length >= 8) {
    return { address: [...b.subarray(4, 8)].join("."), port: dv.getUint16(2, false) };
  }
  if (family === AF.INET6 && b.length >= 28) {
    return {
      address: ipv6Text(b.subarray(8, 24)),
      port: dv.getUint16(2, false),
      flowinfo: dv.getUint32(4, false),
      scopeId: dv.getUint32(24, true),
    };
  }
  return null;
}

/** The raw address bytes (4 or 16, network order) of an IPv4 or IPv6 address. */
export function inetAddressBytes(family: number, address: string): Uint8Array<ArrayBuffer> {
  const sa = encodeInetAddr(family, { address, port: 0 });
  return family === AF.INET ? sa.slice(4, 8) : sa.slice(8, 24);
}

/** Encodes an address of `family` (AF.INET or AF.INET6) as its sockaddr. */
export function encodeInetAddr(family: number, a: InetAddr): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(family === AF.INET ? 16 : 28);
  const dv = new DataView(out.buffer);
  dv.setUint16(0, family, true);
  dv.setUint16(2, a.port, false);
  if (family === AF.INET) {
    out.set(a.address.split(".").map(Number), 4);
  } else {
    dv.setUint32(4, a.flowinfo ?? 0, false);
    out.set(ipv6Bytes(a.address), 8);
    dv.setUint32(24, a.scopeId ?? 0, true);
  }
  return out;
}

function nameOf(nr: number, fd: number): Uint8Array | null {
  const buf = new Uint8Array(128);
  const len = new Uint32Array([128]);
  const r = rawSyscall(nr, fd, buf, len);
  if (r < 0n) return null;
  return buf.subarray(0, Math.min(len[0], 128));
}

/** getsockname as raw sockaddr bytes (null on failure). */
export function sockName(fd: number): Uint8Array | null {
  return nameOf(SYS.getsockname, fd);
}

/** getpeername as raw sockaddr bytes (null when not connected). */
export function peerName(fd: number): Uint8Array | null {
  return nameOf(SYS.getpeername, fd);
}

function ioctlInt(fd: number, req: number): number {
  const v = new Int32Array(1);
  const r = rawSyscall(SYS.ioctl, fd, req, v);
  if (r < 0n) throw new SyscallError("ioctl", [fd, `0x${req.toString(16)}`], Number(-r));
  return v[0];
}

/** Bytes waiting to be read (SIOCINQ). */
export function inqBytes(fd: number): number {
  return ioctlInt(fd, SIOCINQ);
}

/** Bytes in the send queue, sent or not (SIOCOUTQ). */
export function outqBytes(fd: number): number {
  return ioctlInt(fd, SIOCOUTQ);
}

/** Bytes in the send queue not sent yet (SIOCOUTQNSD, TCP). */
export function unsentBytes(fd: number): number {
  return ioctlInt(fd, SIOCOUTQNSD);
}

/**
 * Peeks at up to `length` bytes queued on `fd` (MSG_PEEK|MSG_DONTWAIT,
 * nothing consumed). Returns the bytes, or null when nothing is queued.
 */
export function peekBytes(fd: number, length: number): Uint8Array | null {
  const buf = new Uint8Array(Math.max(length, 1));
  const r = rawSyscall(SYS.recvfrom, fd, buf, buf.length, MSG_PEEK | MSG_DONTWAIT, 0, 0);
  if (r === -11n) return null; // EAGAIN
  if (r < 0n) throw new SyscallError("recvfrom(MSG_PEEK)", [fd], Number(-r));
  return buf.subarray(0, Number(r));
}

/**
 * Whether a datagram socket has a datagram queued (even an empty one):
 * MSG_PEEK|MSG_TRUNC of zero bytes succeeds only then.
 */
export function datagramQueued(fd: number): boolean {
  const r = rawSyscall(SYS.recvfrom, fd, 0, 0, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC, 0, 0);
  return r >= 0n;
}

/**
 * The length of the first datagram queued on `fd` (MSG_PEEK|MSG_TRUNC of
 * zero bytes, nothing consumed), or -1 when none is (EAGAIN). 0 is an empty
 * datagram, or a socket shut down for receiving with an empty queue.
 */
export function firstDatagramLength(fd: number): number {
  const r = rawSyscall(SYS.recvfrom, fd, 0, 0, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC, 0, 0);
  return r >= 0n ? Number(r) : -1;
}

/** shutdown(2)'s `how`. */
export const SHUT = { RD: 0, WR: 1, RDWR: 2 } as const;

/** shutdown(2) of socket `fd` ({@link SHUT}); throws a SyscallError. */
export function shutdownSocket(fd: number, how: number): void {
  const r = rawSyscall(SYS.shutdown, fd, how);
  if (r < 0n) throw new SyscallError("shutdown", [fd, how], Number(-r));
}

/** Creates a socket in this process (for reading kernel defaults); -errno on failure. */
export function newSocket(family: number, type: number, protocol = 0): number {
  return Number(rawSyscall(SYS.socket, family, type | O_CLOEXEC, protocol));
}

/**
 * Writes all of `bytes` to socket `fd`, waiting (poll, up to 10 s without
 * progress) when its send buffer is full; throws naming `what` on failure.
 * Never blocks in the write itself (MSG_DONTWAIT), even on a blocking fd:
 * a send buffer that stays full fails after the wait instead of hanging.
 */
export function writeAll(fd: number, bytes: Uint8Array, what: string): void {
  let done = 0;
  const pfd = new Int32Array([fd, 4 /* POLLOUT */]);
  while (done < bytes.length) {
    const r = rawSyscall(
      SYS.sendto,
      fd,
      bytes.subarray(done),
      bytes.length - done,
      MSG_NOSIGNAL | MSG_DONTWAIT,
      0,
      0,
    );
    if (r === -11n) {
      if (rawSyscall(7, /* poll */ pfd, 1, 10_000) <= 0n) {
        throw new Error(`${what}: send timed out`);
      }
      continue;
    }
    if (r < 0n) throw new SyscallError(`send (${what})`, [fd], Number(-r));
    done += Number(r);
  }
}

/** SOL_NETLINK and its options cryo uses. */
export const NETLINK = {
  SOL: 270,
  ADD_MEMBERSHIP: 1,
  PKTINFO: 3,
  BROADCAST_ERROR: 4,
  NO_ENOBUFS: 5,
  LISTEN_ALL_NSID: 8,
  LIST_MEMBERSHIPS: 9,
  CAP_ACK: 10,
  EXT_ACK: 11,
  GET_STRICT_CHK: 12,
} as const;

/** A `struct sockaddr_nl`: port id and the bitmap of groups 1..32. */
export interface NetlinkAddr {
  portid: number;
  groups: number;
}

/** Decodes a sockaddr_nl (null for another family). */
export function decodeNetlinkAddr(b: Uint8Array | null): NetlinkAddr | null {
  if (!b || b.length < 12) return null;
  const dv = new DataView(b.buffer, b.byteOffset, 12);
  if (dv.getUint16(0, true) !== AF.NETLINK) return null;
  return { portid: dv.getUint32(4, true), groups: dv.getUint32(8, true) };
}

/** Encodes a sockaddr_nl. */
export function encodeNetlinkAddr(a: NetlinkAddr): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(12);
  const dv = new DataView(out.buffer);
  dv.setUint16(0, AF.NETLINK, true);
  dv.setUint32(4, a.portid >>> 0, true);
  dv.setUint32(8, a.groups >>> 0, true);
  return out;
}

/** Every multicast group (1-based) netlink socket `fd` belongs to (NETLINK_LIST_MEMBERSHIPS). */
export function netlinkMemberships(fd: number): number[] {
  const b = getsockoptBytes(fd, NETLINK.SOL, NETLINK.LIST_MEMBERSHIPS, 128);
  if (typeof b === "number") {
    throw new SyscallError("getsockopt(NETLINK_LIST_MEMBERSHIPS)", [fd], -b);
  }
  const out: number[] = [];
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  for (let w = 0; w + 4 <= b.length; w += 4) {
    const word = dv.getUint32(w, true);
    for (let bit = 0; bit < 32; bit++) if (word & (1 << bit)) out.push(w * 8 + bit + 1);
  }
  return out;
}

/**
 * Whether TCP socket `fd` has urgent (out-of-band) data pending: a peek
 * with MSG_OOB fails with EINVAL only when there is none (or it is read
 * inline, SO_OOBINLINE).
 */
export function urgentPending(fd: number): boolean {
  const buf = new Uint8Array(1);
  const r = rawSyscall(SYS.recvfrom, fd, buf, 1, MSG_OOB | MSG_PEEK | MSG_DONTWAIT, 0, 0);
  return r !== -22n;
}
