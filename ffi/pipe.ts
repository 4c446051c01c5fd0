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

/**
 * The bytes sitting in pipe `fd` of `pid` and its buffer size, read
 * without consuming them (tee into a private pipe, then read that).
 */
export function peekPipe(pid: number, fd: number): { data: Uint8Array; size: number } {
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
      while (done < buf.length) {
        const r = rawSyscall(SYS.read, pair[0], buf.subarray(done), buf.length - done);
        if (r <= 0n) break;
        done += Number(r);
      }
      return { data: buf.subarray(0, done), size };
    } finally {
      rawSyscall(SYS.close, pair[0]);
      rawSyscall(SYS.close, pair[1]);
    }
  } finally {
    rawSyscall(SYS.close, own);
  }
}
