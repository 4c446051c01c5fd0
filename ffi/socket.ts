/**
 * Looking at another process's socket from cryo, through a copy of its fd
 * (ffi/pidfd.ts: the same open file description, so what is read from it
 * is the target's): a pending error, and a non-destructive read of the
 * receive queue (MSG_PEEK with SO_PEEK_OFF, control messages decoded).
 * getsockopt and the other socket calls are in ffi/net.ts.
 *
 * @module
 */

import { rawSyscall } from "./libc.ts";
import { SYS } from "./sysno.ts";
import { errnoName } from "./errno.ts";
import { getsockoptInt } from "./net.ts";

const SOL_SOCKET = 1;
const SO_PASSCRED = 16;
const SO_PEEK_OFF = 42;
const MSG_PEEK = 0x2;
const MSG_TRUNC = 0x20;
const MSG_CTRUNC = 0x8;
const MSG_DONTWAIT = 0x40;
const SCM_RIGHTS = 1;
const SCM_CREDENTIALS = 2;
const EAGAIN = 11;

/** Errors of the socket helpers, naming the call. */
export class SocketError extends Error {}

/** setsockopt of an int option; returns 0 or -errno (never throws: used to put options back). */
function setSockOptInt(fd: number, level: number, name: number, value: number): number {
  const b = new Int32Array([value]);
  return Number(rawSyscall(SYS.setsockopt, fd, level, name, b, 4));
}

/**
 * Whether socket `fd` has an error pending (what SO_ERROR would return and
 * clear), seen as POLLERR by a zero-timeout poll, which clears nothing.
 */
export function hasPendingError(fd: number): boolean {
  const pfd = new Int32Array([fd, 0]); // struct pollfd: fd, events 0, revents
  if (rawSyscall(SYS.poll, pfd, 1, 0) < 0n) return false;
  return ((pfd[1] >>> 16) & 0x8) !== 0; // revents & POLLERR
}

/**
 * The shut-down state of a datagram socket as a zero-timeout poll shows it
 * (it clears nothing): 3 (both ways: POLLHUP), 1 (receiving: POLLRDHUP) or
 * 0. A socket shut down for sending only shows nothing (0).
 */
export function polledShutdown(fd: number): number {
  const pfd = new Int32Array([fd, 0x2000]); // events POLLRDHUP
  if (rawSyscall(SYS.poll, pfd, 1, 0) < 0n) return 0;
  const revents = pfd[1] >>> 16;
  return revents & 0x10 ? 3 : revents & 0x2000 ? 1 : 0; // POLLHUP, POLLRDHUP
}

/**
 * Whether socket `fd`'s receive side is shut down (RCV_SHUTDOWN), as a
 * zero-timeout poll shows it (POLLRDHUP); it clears nothing.
 */
export function receiveShutDown(fd: number): boolean {
  const pfd = new Int32Array([fd, 0x2000]); // events POLLRDHUP
  if (rawSyscall(SYS.poll, pfd, 1, 0) < 0n) return false;
  return ((pfd[1] >>> 16) & 0x2000) !== 0;
}

/** One message (or, for a stream, one chunk) seen in a receive queue. */
export interface PeekedMessage {
  /** Its bytes. */
  data: Uint8Array;
  /** Sender's address (sun_path bytes; empty when unnamed). */
  from: Uint8Array;
  /** Pid of SCM_CREDENTIALS (the sender at send time). */
  credPid?: number;
  /** Uid and gid of SCM_CREDENTIALS. */
  credIds?: [number, number];
  /** Fds passed with it (SCM_RIGHTS) or a truncated control part. */
  rights: boolean;
  /**
   * With `keepRights`: the fds passed with it, installed in cryo by the
   * peek (the caller closes them); `truncated` when the control part did
   * not fit (some were lost).
   */
  fds?: number[];
  /** The control part was truncated (MSG_CTRUNC). */
  truncated?: boolean;
}

/**
 * Reads the receive queue of socket `fd` without consuming it: SO_PEEK_OFF
 * is set to 0 and each MSG_PEEK read moves it on; SO_PASSCRED is on while
 * peeking so each message names its sender. Both options are put back as
 * they were. `stream` joins everything into one message; otherwise each
 * datagram is one message. Fds passed in a message are closed again here.
 * `maxBytes` (the bytes known to be queued) stops reading there;
 * `endAtZero` (the socket is shut down for reading) takes a 0-byte read as
 * the end of a datagram queue. `keepRights` keeps the passed fds open in
 * `fds` (the caller closes them) and, for a stream, keeps apart the
 * bytes that came with fds (see `splitStream`).
 */
export function peekQueue(
  fd: number,
  stream: boolean,
  maxBytes?: number,
  endAtZero = false,
  maxMessages = 1 << 20,
  keepRights = false,
): PeekedMessage[] {
  const oldPeek = getsockoptInt(fd, SOL_SOCKET, SO_PEEK_OFF) ?? -1;
  const oldCred = getsockoptInt(fd, SOL_SOCKET, SO_PASSCRED) ?? 0;
  const set = setSockOptInt(fd, SOL_SOCKET, SO_PEEK_OFF, 0);
  if (set < 0) throw new SocketError(`setsockopt(SO_PEEK_OFF): ${errnoName(-set)}`);
  setSockOptInt(fd, SOL_SOCKET, SO_PASSCRED, 1);
  const out: PeekedMessage[] = [];
  try {
    let bufSize = 256 << 10;
    let data = new Uint8Array(bufSize);
    const name = new Uint8Array(112);
    const control = new Uint8Array(4096);
    const iov = new BigUint64Array(2);
    const msg = new BigUint64Array(7); // struct msghdr
    const ptr = (b: Uint8Array | BigUint64Array) =>
      BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b as Uint8Array<ArrayBuffer>)));
    let total = 0;
    let zeros = 0;
    // With `maxBytes` (what sock_diag says is queued) no read goes past the
    // end: there a read would return, and clear, a pending error.
    while (out.length < maxMessages && (maxBytes === undefined || total < maxBytes)) {
      iov[0] = ptr(data);
      iov[1] = BigInt(data.length);
      msg[0] = ptr(name);
      msg[1] = BigInt(name.length);
      msg[2] = ptr(iov);
      msg[3] = 1n;
      msg[4] = ptr(control);
      msg[5] = BigInt(control.length);
      msg[6] = 0n;
      const flags = MSG_PEEK | MSG_DONTWAIT | (stream ? 0 : MSG_TRUNC);
      const r = Number(rawSyscall(SYS.recvmsg, fd, msg, flags));
      if (r === -EAGAIN) break;
      if (r < 0) throw new SocketError(`recvmsg(MSG_PEEK): ${errnoName(-r)}`);
      if (!stream && r > data.length) {
        // A datagram larger than the buffer: peek it again, whole.
        setSockOptInt(fd, SOL_SOCKET, SO_PEEK_OFF, out.reduce((n, m) => n + m.data.length, 0));
        bufSize = r;
        data = new Uint8Array(bufSize);
        continue;
      }
      if (stream && r === 0) break; // end of stream
      // A socket shut down for reading reads 0 at the end of its queue: taken
      // as the end (a zero-length datagram just before it cannot be told apart).
      if (!stream && r === 0 && endAtZero) break;
      // Otherwise 0 is a zero-length datagram; once peeked the next read skips it.
      zeros = r === 0 ? zeros + 1 : 0;
      if (zeros > 4096) {
        throw new SocketError("recvmsg(MSG_PEEK): zero-length datagrams do not advance");
      }
      const nameLen = Number(msg[1]);
      const msgFlags = Number(BigInt.asUintN(32, msg[6]));
      const m: PeekedMessage = {
        data: data.slice(0, r),
        from: name.slice(2, Math.max(2, nameLen)),
        rights: (msgFlags & MSG_CTRUNC) !== 0,
        ...((msgFlags & MSG_CTRUNC) !== 0 ? { truncated: true } : {}),
      };
      parseControl(control.subarray(0, Number(msg[5])), m, keepRights);
      out.push(m);
      total += r;
    }
  } finally {
    setSockOptInt(fd, SOL_SOCKET, SO_PEEK_OFF, oldPeek);
    setSockOptInt(fd, SOL_SOCKET, SO_PASSCRED, oldCred);
  }
  if (!stream) return out;
  if (keepRights) return splitStream(out);
  const total = out.reduce((n, m) => n + m.data.length, 0);
  if (out.length <= 1) return out;
  const joined = new Uint8Array(total);
  let o = 0;
  for (const m of out) {
    joined.set(m.data, o);
    o += m.data.length;
  }
  return [{
    data: joined,
    from: out[0].from,
    credPid: out[0].credPid,
    rights: out.some((m) => m.rights),
  }];
}

/** Decodes the control messages of one peek into `m` (closing passed fds unless `keep`). */
function parseControl(c: Uint8Array, m: PeekedMessage, keep = false): void {
  const dv = new DataView(c.buffer, c.byteOffset, c.byteLength);
  for (let o = 0; o + 16 <= c.length;) {
    const len = Number(dv.getBigUint64(o, true));
    const level = dv.getInt32(o + 8, true);
    const type = dv.getInt32(o + 12, true);
    if (len < 16) break;
    if (level === SOL_SOCKET && type === SCM_RIGHTS) {
      m.rights = true;
      for (let i = o + 16; i + 4 <= o + len; i += 4) {
        const passed = dv.getInt32(i, true);
        if (keep) (m.fds ??= []).push(passed);
        else rawSyscall(SYS.close, passed);
      }
    } else if (level === SOL_SOCKET && type === SCM_CREDENTIALS && len >= 28) {
      m.credPid = dv.getInt32(o + 16, true);
      m.credIds = [dv.getUint32(o + 20, true), dv.getUint32(o + 24, true)];
    }
    o += (len + 7) & ~7;
  }
}

/**
 * Joins the chunks of a stream queue peeked with `keepRights` into the
 * messages a receiver tells apart: bytes without fds are joined (the
 * first chunk's credentials stand for them, as without `keepRights`); a peek
 * that brought fds ends with the message that carried them and is one
 * message. Where in it that message began cannot be seen: a peek goes on
 * past the bytes it asked for to the next buffer that carries fds from the
 * same sender, so bytes sent before it without fds by the same sender stay
 * in the message (the fds come with their first byte).
 */
function splitStream(chunks: PeekedMessage[]): PeekedMessage[] {
  const out: PeekedMessage[] = [];
  for (const c of chunks) {
    const last = out[out.length - 1];
    if (!c.rights && last && !last.rights) {
      const joined = new Uint8Array(last.data.length + c.data.length);
      joined.set(last.data);
      joined.set(c.data, last.data.length);
      last.data = joined;
    } else out.push({ ...c });
  }
  return out;
}
