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

/** pidfd_getfd: a copy in this process of fd `fd` of the process of `pidfd`, or `-errno`. */
export function pidfdGetfd(pidfd: number, fd: number): bigint {
  return rawSyscall(SYS.pidfd_getfd, pidfd, fd, 0);
}
