/**
 * Reading what sits in another process's pipe without consuming it: the
 * pipe is reopened through /proc/<pid>/fd/<n> and tee()'d into a private
 * pipe, which is then read.
 *
 * @module
 */

import { cstr, rawSyscall } from "./libc.ts";
import { SYS } from "./sysno.ts";

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const SPLICE_F_NONBLOCK = 2;
const F_GETPIPE_SZ = 1032;
const F_SETPIPE_SZ = 1031;
const MAX_PEEK = 1 << 20;
const FIONREAD = 0x541b;

/** Bytes readable from pipe `fd` (FIONREAD), -1 on error. */
function readable(fd: number): number {
  const n = new Int32Array(1);
  return rawSyscall(SYS.ioctl, fd, FIONREAD, n) < 0n ? -1 : n[0];
}

/**
 * The packets (O_DIRECT writes) at the head of the `total` bytes in pipe
 * `own`, given the sizes `chunks` that plain reads of a copy returned (a
 * read stops after a packet): copies the pipe again and reads one byte of
 * each chunk, which swallows the whole chunk only if it is a packet. Returns
 * the packets' sizes (the bytes after them are plain), or null when a chunk
 * mixes plain bytes and a packet (they cannot be queued again exactly).
 */
function packetsOf(own: number, chunks: readonly number[], total: number, size: number) {
  if (chunks.length === 0) return [];
  const pair = new Int32Array(2);
  if (rawSyscall(SYS.pipe2, pair, O_CLOEXEC | O_NONBLOCK) < 0n) return null;
  try {
    rawSyscall(SYS.fcntl, pair[1], F_SETPIPE_SZ, Math.max(size, 4096));
    if (rawSyscall(SYS.tee, own, pair[1], total, SPLICE_F_NONBLOCK) !== BigInt(total)) return null;
    const one = new Uint8Array(Math.max(...chunks));
    const packets: number[] = [];
    for (const [i, n] of chunks.entries()) {
      const last = i === chunks.length - 1;
      // A 1-byte chunk before others ends in a packet (a read goes on past plain bytes).
      if (n === 1) {
        rawSyscall(SYS.read, pair[0], one, 1);
        if (!last || packets.length) packets.push(1);
        continue;
      }
      const before = readable(pair[0]);
      if (rawSyscall(SYS.read, pair[0], one, 1) !== 1n) return null;
      const dropped = before - readable(pair[0]);
      if (dropped === n) {
        packets.push(n);
        continue;
      }
      if (dropped !== 1 || !last) return null;
      // The last chunk starts plain: it must be plain to its end (reading
      // into a packet short of its end would drop the rest of it).
      if (n > 2 && rawSyscall(SYS.read, pair[0], one, n - 2) !== BigInt(n - 2)) return null;
      if (readable(pair[0]) !== 1) return null;
    }
    return packets;
  } finally {
    rawSyscall(SYS.close, pair[0]);
    rawSyscall(SYS.close, pair[1]);
  }
}

/** What {@link peekPipe} finds in a pipe. */
export interface PipePeek {
  /** The bytes waiting in it. */
  data: Uint8Array;
  /** Its buffer size (F_GETPIPE_SZ). */
  size: number;
  /**
   * The sizes of the packets (written in O_DIRECT mode) at the head of
   * `data`, when there are any (the bytes after them are plain); null when
   * packets and plain bytes mix so that they cannot be queued again exactly.
   */
  packets?: number[] | null;
}

/**
 * The bytes sitting in pipe `fd` of `pid`, its buffer size and the packets
 * among them, read without consuming them (tee into a private pipe, then
 * read that).
 */
export function peekPipe(pid: number, fd: number): PipePeek {
  const own = Number(rawSyscall(SYS.open, cstr(`/proc/${pid}/fd/${fd}`), O_NONBLOCK | O_CLOEXEC));
  if (own < 0) return { data: new Uint8Array(), size: 0 };
  try {
    const size = Number(rawSyscall(SYS.fcntl, own, F_GETPIPE_SZ));
    const pair = new Int32Array(2);
    if (rawSyscall(SYS.pipe2, pair, O_CLOEXEC | O_NONBLOCK) < 0n) {
      return { data: new Uint8Array(), size };
    }
    try {
      rawSyscall(SYS.fcntl, pair[1], F_SETPIPE_SZ, Math.max(size, 4096));
      const n = rawSyscall(SYS.tee, own, pair[1], MAX_PEEK, SPLICE_F_NONBLOCK);
      if (n <= 0n) return { data: new Uint8Array(), size };
      const buf = new Uint8Array(Number(n));
      let done = 0;
      const chunks: number[] = [];
      while (done < buf.length) {
        const r = rawSyscall(SYS.read, pair[0], buf.subarray(done), buf.length - done);
        if (r <= 0n) break;
        chunks.push(Number(r));
        done += Number(r);
      }
      const packets = packetsOf(own, chunks, done, size);
      return { data: buf.subarray(0, done), size, ...(packets?.length !== 0 ? { packets } : {}) };
    } finally {
      rawSyscall(SYS.close, pair[0]);
      rawSyscall(SYS.close, pair[1]);
    }
  } finally {
    rawSyscall(SYS.close, own);
  }
}
