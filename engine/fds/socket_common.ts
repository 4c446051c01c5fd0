/**
 * What every socket family shares: socket options (read from a copy of the
 * target's fd at dump, set again at restore), the receive queue (peeked at
 * dump without consuming it, sent again from the peer at restore), and a
 * temporarily raised send buffer so that a refill never blocks or writes
 * short. Family modules (engine/fds/unix.ts, the TCP one) use these.
 *
 * @module
 */

import { decodeBase64, encodeBase64 } from "../base64.ts";
import type { FdInfo, QueuedMessage, SocketOption } from "../model.ts";
import type { ArgInput, ProgramBuilder } from "../program/builder.ts";
import { SYS } from "../../ffi/sysno.ts";
import { peekQueue } from "../../ffi/socket.ts";
import {
  closeFd,
  getsockoptBytes,
  getsockoptInt,
  getsockoptLength,
  newSocket,
  SOL,
} from "../../ffi/net.ts";

const SOL_SOCKET = SOL.SOCKET;

/** One socket option cryo knows how to save: level, number and value size in bytes. */
export interface OptionSpec {
  name: string;
  level: number;
  optname: number;
  size: number;
}

const opt = (name: string, optname: number, size = 4): OptionSpec => ({
  name,
  level: SOL_SOCKET,
  optname,
  size,
});

const SO_GET_FILTER = 26;

/**
 * Why socket `fd` (a copy of the target's fd) cannot be restored because
 * of a packet filter attached to it (SO_ATTACH_FILTER, SO_ATTACH_BPF), or
 * null when it has none: the filter is not saved.
 */
export function filterProblem(fd: number): string | null {
  // With no room for it, the kernel tells the filter's length in
  // instructions; an eBPF filter cannot be read (EACCES).
  const n = getsockoptLength(fd, SOL.SOCKET, SO_GET_FILTER);
  if (n < 0) return "an eBPF filter (SO_ATTACH_BPF) is attached";
  return n > 0 ? `a classic BPF filter of ${n} instructions (SO_ATTACH_FILTER) is attached` : null;
}

/** SO_SNDBUF. */
export const SO_SNDBUF = 7;
/** SO_RCVBUF. */
export const SO_RCVBUF = 8;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;

/**
 * The SOL_SOCKET options saved for every socket when they differ from a
 * fresh socket's (family modules may pass more, e.g. IPPROTO_TCP ones).
 * SO_SNDBUF and SO_RCVBUF are always saved.
 */
export const SOCKET_OPTIONS: readonly OptionSpec[] = [
  opt("SO_REUSEADDR", 2),
  opt("SO_DONTROUTE", 5),
  opt("SO_BROADCAST", 6),
  opt("SO_KEEPALIVE", 9),
  opt("SO_OOBINLINE", 10),
  opt("SO_PRIORITY", 12),
  opt("SO_LINGER", 13, 8),
  opt("SO_REUSEPORT", 15),
  opt("SO_PASSCRED", 16),
  opt("SO_RCVLOWAT", 18),
  opt("SO_RCVTIMEO", 20, 16),
  opt("SO_SNDTIMEO", 21, 16),
  opt("SO_TIMESTAMP", 29),
  opt("SO_PASSSEC", 34),
  opt("SO_TIMESTAMPNS", 35),
  opt("SO_TIMESTAMP_NEW", 63),
  opt("SO_TIMESTAMPNS_NEW", 64),
  opt("SO_MARK", 36),
  opt("SO_RXQ_OVFL", 40),
  opt("SO_PEEK_OFF", 42),
  opt("SO_PASSPIDFD", 76),
  // Branch sockprobe2 (tests/targets/rt_sockprobe2.c unix-stream, unix-dgram).
  opt("SO_WIFI_STATUS", 41),
  opt("SO_SELECT_ERR_QUEUE", 45),
  opt("SO_BUSY_POLL", 46),
  opt("SO_MAX_PACING_RATE", 47, 8),
  opt("SO_INCOMING_CPU", 49),
  opt("SO_TXTIME", 61, 8),
  opt("SO_PREFER_BUSY_POLL", 69),
  opt("SO_RCVMARK", 75),
];

const defaultsCache = new Map<string, Map<string, string>>();

function readOptions(fd: number, specs: readonly OptionSpec[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const s of specs) {
    const b = getsockoptBytes(fd, s.level, s.optname, s.size);
    if (typeof b !== "number") out.set(s.name, encodeBase64(b));
  }
  return out;
}

/**
 * The options of socket `fd` (a copy of the target's fd) that differ from
 * those of a fresh socket of the same family and type, plus its buffer
 * sizes. `extra` adds family options.
 */
export function collectSocketOptions(
  fd: number,
  family: number,
  type: number,
  extra: readonly OptionSpec[] = [],
): SocketOption[] {
  const specs = [...SOCKET_OPTIONS, ...extra];
  const key = `${family}/${type}/${extra.map((e) => e.name).join(",")}`;
  let defaults = defaultsCache.get(key);
  if (!defaults) {
    const fresh = newSocket(family, type);
    defaults = fresh >= 0 ? readOptions(fresh, specs) : new Map();
    if (fresh >= 0) closeFd(fresh);
    defaultsCache.set(key, defaults);
  }
  const now = readOptions(fd, specs);
  const out: SocketOption[] = [];
  for (const s of specs) {
    const v = now.get(s.name);
    if (v !== undefined && v !== defaults.get(s.name)) {
      out.push({ name: s.name, level: s.level, optname: s.optname, value: v });
    }
  }
  for (const [name, optname] of [["SO_SNDBUF", SO_SNDBUF], ["SO_RCVBUF", SO_RCVBUF]] as const) {
    const v = getsockoptInt(fd, SOL_SOCKET, optname);
    if (v !== null) {
      out.push({ name, level: SOL_SOCKET, optname, value: encodeBase64(intBytes(v)) });
    }
  }
  return out;
}

function intBytes(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, v, true);
  return b;
}

/**
 * Emits setsockopt ops giving socket `fd` the saved `options`. Buffer sizes
 * are set with SO_SNDBUFFORCE/SO_RCVBUFFORCE at half the saved value (the
 * kernel doubles it), so they come back exactly, above the sysctl maximum too.
 */
export function emitSocketOptions(
  p: ProgramBuilder,
  fd: ArgInput,
  options: readonly SocketOption[],
  what: string,
): void {
  for (const o of options) {
    const bytes = decodeBase64(o.value);
    if (o.level === SOL_SOCKET && (o.optname === SO_SNDBUF || o.optname === SO_RCVBUF)) {
      const v = new DataView(bytes.buffer, bytes.byteOffset).getInt32(0, true);
      const force = o.optname === SO_SNDBUF ? SO_SNDBUFFORCE : SO_RCVBUFFORCE;
      p.op(SYS.setsockopt, [fd, SOL_SOCKET, force, p.data(intBytes(v >> 1), 4), 4], {
        comment: `${what} ${o.name} ${v}`,
      });
      continue;
    }
    p.op(SYS.setsockopt, [fd, o.level, o.optname, p.data(bytes, 8), bytes.length], {
      comment: `${what} ${o.name}`,
    });
  }
}

/** Send buffer given to a socket while its peer's queue is refilled. */
export const REFILL_SNDBUF = 16 << 20;

/** Emits an op raising `fd`'s send buffer so that a refill neither blocks nor writes short. */
export function emitRefillBuffer(p: ProgramBuilder, fd: ArgInput, what: string): void {
  p.op(SYS.setsockopt, [fd, SOL_SOCKET, SO_SNDBUFFORCE, p.data(intBytes(REFILL_SNDBUF), 4), 4], {
    comment: `${what}: room for the refill`,
  });
}

const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;

/**
 * Emits the sends that put `queue` back into the receive queue of the
 * socket `from` is connected to (or, with `to`, of the socket bound at that
 * sockaddr). Each message is one send, so datagram boundaries are kept.
 */
export function emitRefill(
  p: ProgramBuilder,
  from: ArgInput,
  queue: readonly QueuedMessage[],
  what: string,
  to?: Uint8Array,
  /** The fd numbers a message carries again (SCM_RIGHTS), if any (unix_scm.ts). */
  rights?: (m: QueuedMessage) => number[] | undefined,
): void {
  const addr = to ? p.data(to, 8) : 0n;
  for (const m of queue) {
    const bytes = decodeBase64(m.data);
    const fds = rights?.(m);
    if (fds?.length) {
      p.op(SYS.sendmsg, [
        from,
        p.data(msghdr(p, bytes, fds, addr, to?.length ?? 0), 8),
        MSG_DONTWAIT | MSG_NOSIGNAL,
      ], {
        comment: `${bytes.length} bytes with fds ${fds.join(", ")} back into ${what}`,
      });
      continue;
    }
    p.op(
      SYS.sendto,
      [from, p.data(bytes, 1), bytes.length, MSG_DONTWAIT | MSG_NOSIGNAL, addr, to?.length ?? 0],
      { comment: `${bytes.length} bytes back into ${what}` },
    );
  }
}

const SCM_RIGHTS = 1;

/** A struct msghdr sending `bytes` (to `addr` when not 0) with `fds` as SCM_RIGHTS. */
function msghdr(
  p: ProgramBuilder,
  bytes: Uint8Array,
  fds: number[],
  addr: bigint,
  addrLen: number,
): Uint8Array {
  const iov = new Uint8Array(16);
  const iv = new DataView(iov.buffer);
  iv.setBigUint64(0, p.data(bytes, 1), true);
  iv.setBigUint64(8, BigInt(bytes.length), true);
  const space = 16 + ((4 * fds.length + 7) & ~7);
  const control = new Uint8Array(space);
  const cv = new DataView(control.buffer);
  cv.setBigUint64(0, BigInt(16 + 4 * fds.length), true); // cmsg_len
  cv.setInt32(8, SOL_SOCKET, true);
  cv.setInt32(12, SCM_RIGHTS, true);
  fds.forEach((fd, i) => cv.setInt32(16 + 4 * i, fd, true));
  const msg = new Uint8Array(56);
  const mv = new DataView(msg.buffer);
  mv.setBigUint64(0, addr, true);
  mv.setUint32(8, addrLen, true);
  mv.setBigUint64(16, p.data(iov, 8), true);
  mv.setBigUint64(24, 1n, true);
  mv.setBigUint64(32, p.data(control, 8), true);
  mv.setBigUint64(40, BigInt(space), true);
  return msg;
}

/** What a peek at a receive queue found. */
export interface CollectedQueue {
  queue: QueuedMessage[];
  /** Set when the queue holds something cryo cannot send again (fds it could not read). */
  problem?: string;
  /** Credentials of a queued message that are not root's ("uid:gid"), if any. */
  nonRootCreds?: string;
}

/**
 * Reads the receive queue of socket `fd` (a copy of the target's fd)
 * without consuming it. `stream` joins the bytes into one message.
 */
export function collectQueue(
  fd: number,
  stream: boolean,
  maxBytes?: number,
  endAtZero = false,
): CollectedQueue {
  // Passed fds are counted here (closed at once); engine/fds/unix_scm.ts identifies them.
  const peeked = peekQueue(fd, stream, maxBytes, endAtZero, undefined, true);
  for (const m of peeked) for (const passed of m.fds ?? []) closeFd(passed);
  const problem = peeked.some((m) => m.truncated || (m.rights && !m.fds?.length))
    ? "file descriptors in flight (SCM_RIGHTS) in its receive queue that could not be read"
    : undefined;
  // Without a pid a message carries no credentials (the kernel shows the overflow ids then).
  const foreign = peeked.find((m) =>
    m.credPid && m.credIds && (m.credIds[0] !== 0 || m.credIds[1] !== 0)
  );
  return {
    queue: peeked.map((m) => ({
      data: encodeBase64(m.data),
      ...(m.credPid !== undefined ? { credPid: m.credPid } : {}),
      ...(!stream && m.from.length ? { from: encodeBase64(m.from) } : {}),
      ...(m.fds?.length ? { fds: m.fds.map(() => ({})) } : {}),
    })),
    ...(problem ? { problem } : {}),
    ...(foreign ? { nonRootCreds: foreign.credIds!.join(":") } : {}),
  };
}

/** Bytes of queued socket data held by `fds` (for sizing restore programs). */
export function fdQueueBytes(fds: readonly FdInfo[]): number {
  return fds.reduce(
    (n, f) =>
      n + queueBytes(f.socket?.unix?.queue ?? []) +
      (f.socket?.unix?.queue ?? []).reduce(
        (k, m) => k + 64 + (m.fds ? 128 + 4 * m.fds.length : 0),
        0,
      ),
    0,
  );
}

/** Bytes of data in `queue` (for sizing the restore program). */
export function queueBytes(queue: readonly QueuedMessage[]): number {
  return queue.reduce((n, m) => n + Math.ceil(m.data.length * 3 / 4), 0);
}
