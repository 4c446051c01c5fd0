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
import { closeFd, getsockoptBytes, getsockoptInt, newSocket, SOL } from "../../ffi/net.ts";

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
  opt("SO_MARK", 36),
  opt("SO_RXQ_OVFL", 40),
  opt("SO_PEEK_OFF", 42),
  opt("SO_PASSPIDFD", 76),
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
): void {
  const addr = to ? p.data(to, 8) : 0n;
  for (const m of queue) {
    const bytes = decodeBase64(m.data);
    p.op(
      SYS.sendto,
      [from, p.data(bytes, 1), bytes.length, MSG_DONTWAIT | MSG_NOSIGNAL, addr, to?.length ?? 0],
      { comment: `${bytes.length} bytes back into ${what}` },
    );
  }
}

/** What a peek at a receive queue found. */
export interface CollectedQueue {
  queue: QueuedMessage[];
  /** Set when the queue holds something cryo cannot send again (fds in flight). */
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
  const peeked = peekQueue(fd, stream, maxBytes, endAtZero);
  const problem = peeked.some((m) => m.rights)
    ? "file descriptors in flight (SCM_RIGHTS) in its receive queue"
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
    })),
    ...(problem ? { problem } : {}),
    ...(foreign ? { nonRootCreds: foreign.credIds!.join(":") } : {}),
  };
}

/** Bytes of queued socket data held by `fds` (for sizing restore programs). */
export function fdQueueBytes(fds: readonly FdInfo[]): number {
  return fds.reduce(
    (n, f) =>
      n + queueBytes(f.socket?.unix?.queue ?? []) + 64 * (f.socket?.unix?.queue.length ?? 0),
    0,
  );
}

/** Bytes of data in `queue` (for sizing the restore program). */
export function queueBytes(queue: readonly QueuedMessage[]): number {
  return queue.reduce((n, m) => n + Math.ceil(m.data.length * 3 / 4), 0);
}
