/**
 * userfaultfd ioctls for write tracking (include/uapi/linux/userfaultfd.h):
 * the API handshake, registering ranges in write-protect mode and
 * write-protecting them. The fd may belong to another process's mm (a
 * userfaultfd created by injection and taken with pidfd_getfd): the
 * ioctls act on the mm that created it.
 *
 * @module
 */

import { rawSyscall } from "./libc.ts";
import { SYS } from "./sysno.ts";
import { UFFD_API } from "./probe.ts";
import type { SyscallTable } from "./syscall_table.ts";

/** _IOWR(0xAA, 0x3F, struct uffdio_api): 24 bytes. */
const UFFDIO_API = 0xc018aa3fn;
/** _IOWR(0xAA, 0x00, struct uffdio_register): 32 bytes. */
const UFFDIO_REGISTER = 0xc020aa00n;
/** _IOWR(0xAA, 0x06, struct uffdio_writeprotect): 24 bytes. */
const UFFDIO_WRITEPROTECT = 0xc018aa06n;

/** userfaultfd(2) flag: handle faults from user mode only (allowed without privilege). */
export const UFFD_USER_MODE_ONLY = 1;
/** UFFDIO_REGISTER_MODE_WP. */
export const UFFDIO_REGISTER_MODE_WP = 2n;
/** UFFDIO_WRITEPROTECT_MODE_WP. */
export const UFFDIO_WRITEPROTECT_MODE_WP = 1n;

/** UFFDIO_API on `fd` asking for `features`: 0 or `-errno`. */
export function uffdApi(fd: number, features: bigint): bigint {
  const api = new BigUint64Array([UFFD_API, features, 0n]);
  return rawSyscall(SYS.ioctl, fd, UFFDIO_API, api);
}

/** UFFDIO_REGISTER of [start, start+len) with `mode`: 0 or `-errno`. */
export function uffdRegister(fd: number, start: bigint, len: bigint, mode: bigint): bigint {
  const arg = new BigUint64Array([start, len, mode, 0n]);
  return rawSyscall(SYS.ioctl, fd, UFFDIO_REGISTER, arg);
}

/** UFFDIO_WRITEPROTECT of [start, start+len) (set, or clear with `mode` 0): 0 or `-errno`. */
export function uffdWriteProtect(fd: number, start: bigint, len: bigint, mode: bigint): bigint {
  const arg = new BigUint64Array([start, len, mode]);
  return rawSyscall(SYS.ioctl, fd, UFFDIO_WRITEPROTECT, arg);
}

/** _IOR(0xAA, 0x01, struct uffdio_range): 16 bytes. */
const UFFDIO_UNREGISTER = 0x8010aa01n;

/**
 * UFFDIO_UNREGISTER of [start, start+len): unregisters the mappings there
 * and lifts their write protection (under the mm's mmap lock held for
 * writing): 0 or `-errno`.
 */
export function uffdUnregister(fd: number, start: bigint, len: bigint): bigint {
  const arg = new BigUint64Array([start, len]);
  return rawSyscall(SYS.ioctl, fd, UFFDIO_UNREGISTER, arg);
}

/**
 * Appends to `table` (ffi/syscall_table.ts) the release of
 * [start, start+len) by `fd`: UFFDIO_REGISTER in write-protect mode (the
 * guard of engine/dump/uffd_release.ts), then, only if that succeeded,
 * UFFDIO_UNREGISTER. Returns both entries' indexes (the second's result is
 * 0 when skipped).
 */
export function tableRelease(
  table: SyscallTable,
  fd: number,
  start: bigint,
  len: bigint,
): [number, number] {
  const register = table.syscallOrSkipNext(
    SYS.ioctl,
    fd,
    UFFDIO_REGISTER,
    new BigUint64Array([start, len, UFFDIO_REGISTER_MODE_WP, 0n]),
  );
  const unregister = table.syscall(
    SYS.ioctl,
    fd,
    UFFDIO_UNREGISTER,
    new BigUint64Array([start, len]),
  );
  return [register, unregister];
}

/** pidfd_getfd: a copy in this process of fd `fd` of the process of `pidfd`, or `-errno`. */
export function pidfdGetfd(pidfd: number, fd: number): bigint {
  return rawSyscall(SYS.pidfd_getfd, pidfd, fd, 0);
}

/** _IOWR(0xAA, 0x03, struct uffdio_copy): 40 bytes. */
const UFFDIO_COPY = 0xc028aa03n;
/** _IOWR(0xAA, 0x04, struct uffdio_zeropage): 32 bytes. */
const UFFDIO_ZEROPAGE = 0xc020aa04n;
/** _IOR(0xAA, 0x02, struct uffdio_range): 16 bytes. */
const UFFDIO_WAKE = 0x8010aa02n;

/** The UFFDIO_* numbers a restore program needs (the stub issues them itself). */
export const UFFDIO = {
  API: UFFDIO_API,
  REGISTER: UFFDIO_REGISTER,
  UNREGISTER: UFFDIO_UNREGISTER,
  COPY: UFFDIO_COPY,
} as const;
/** UFFDIO_REGISTER_MODE_MISSING. */
export const UFFDIO_REGISTER_MODE_MISSING = 1n;
/** UFFD_FEATURE_* bits a lazy restore asks for (non-cooperative events). */
export const UFFD_FEATURE = {
  EVENT_FORK: 1n << 1n,
  EVENT_REMAP: 1n << 2n,
  EVENT_REMOVE: 1n << 3n,
  EVENT_UNMAP: 1n << 6n,
} as const;
/** uffd_msg.event values. */
export const UFFD_EVENT = {
  PAGEFAULT: 0x12,
  FORK: 0x13,
  REMAP: 0x14,
  REMOVE: 0x15,
  UNMAP: 0x16,
} as const;

/** One decoded struct uffd_msg (32 bytes): the event and its three words. */
export interface UffdMsg {
  event: number;
  /** pagefault: flags, address; remove/unmap: start, end; remap: from, to, len; fork: ufd. */
  a: bigint;
  b: bigint;
  c: bigint;
}

/**
 * Reads the queued messages of a non-blocking userfaultfd (at most `max`):
 * an empty list when none is queued, or `-errno` for another error.
 */
export function uffdRead(fd: number, max = 64): UffdMsg[] | bigint {
  const buf = new BigUint64Array(4 * max);
  const r = rawSyscall(SYS.read, fd, buf, buf.byteLength);
  if (r === -11n) return [];
  if (r < 0n) return r;
  const out: UffdMsg[] = [];
  for (let i = 0; i < Number(r) / 32; i++) {
    out.push({
      event: Number(buf[i * 4] & 0xffn),
      a: buf[i * 4 + 1],
      b: buf[i * 4 + 2],
      c: buf[i * 4 + 3],
    });
  }
  return out;
}

/**
 * UFFDIO_COPY of `len` bytes at `src` (cryo's buffer) to `dst` in the
 * uffd's mm (waking the faulters): bytes copied (>= 0) or `-errno`; on
 * `-EEXIST`/`-EAGAIN` after a partial copy, `copied` says how far it got.
 */
export function uffdCopy(
  fd: number,
  dst: bigint,
  src: Uint8Array,
  len: number,
): { r: bigint; copied: bigint } {
  const arg = new BigUint64Array([
    dst,
    BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(src))),
    BigInt(len),
    0n,
    0n,
  ]);
  const r = rawSyscall(SYS.ioctl, fd, UFFDIO_COPY, arg);
  const copied = BigInt.asIntN(64, arg[4]);
  return { r, copied };
}

/** UFFDIO_ZEROPAGE of [start, start+len): 0 or `-errno`. */
export function uffdZeropage(fd: number, start: bigint, len: bigint): bigint {
  const arg = new BigUint64Array([start, len, 0n, 0n]);
  return rawSyscall(SYS.ioctl, fd, UFFDIO_ZEROPAGE, arg);
}

/** UFFDIO_WAKE of [start, start+len): 0 or `-errno`. */
export function uffdWake(fd: number, start: bigint, len: bigint): bigint {
  const arg = new BigUint64Array([start, len]);
  return rawSyscall(SYS.ioctl, fd, UFFDIO_WAKE, arg);
}

/** poll(2) for input on `fds` for up to `timeoutMs`: the indexes that are readable. */
export function pollIn(fds: readonly number[], timeoutMs: number): number[] {
  const buf = new Uint8Array(8 * fds.length);
  const dv = new DataView(buf.buffer);
  fds.forEach((fd, i) => {
    dv.setInt32(i * 8, fd, true);
    dv.setInt16(i * 8 + 4, 1, /* POLLIN */ true);
  });
  const r = rawSyscall(SYS.poll, buf, fds.length, timeoutMs);
  if (r <= 0n) return [];
  return fds.map((_, i) => i).filter((i) => dv.getInt16(i * 8 + 6, true) !== 0);
}
