/**
 * System V shared memory from cryo itself: create a segment, attach it to
 * read or write its content, set its owner and mode, remove it. The
 * `shmid64_ds` layout is x86-64's.
 *
 * @module
 */

import { rawSyscall, syscall } from "./libc.ts";
import { SYS } from "./sysno.ts";

/** shmget flags. */
export const IPC_CREAT = 0o1000;
/** Fail if the key exists. */
export const IPC_EXCL = 0o2000;
/** shmat: attach read-only. */
export const SHM_RDONLY = 0o10000;
const IPC_RMID = 0;
const IPC_SET = 1;
const SHMID_DS_SIZE = 112;

/** shmget(key, size, flags): the shmid, or -errno. */
export function shmGet(key: number, size: number, flags: number): number {
  return Number(rawSyscall(SYS.shmget, key, size, flags));
}

/** Marks segment `shmid` for removal (IPC_RMID); -errno on failure, else 0. */
export function shmRemove(shmid: number): number {
  return Number(rawSyscall(SYS.shmctl, shmid, IPC_RMID, 0));
}

/** shmctl(IPC_SET): sets the owner and the permission bits of `shmid`. */
export function shmSetOwner(shmid: number, uid: number, gid: number, mode: number): void {
  const b = new Uint8Array(SHMID_DS_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(4, uid, true);
  v.setUint32(8, gid, true);
  v.setUint32(20, mode & 0o777, true);
  syscall(SYS.shmctl, shmid, IPC_SET, b);
}

/**
 * Attaches `shmid` in cryo (read-only or read-write), gives `fn` its
 * first `size` bytes as a view (and the attach address), and detaches it
 * again whatever happens.
 */
export function withShmAttached<T>(
  shmid: number,
  size: number,
  writable: boolean,
  fn: (view: Uint8Array, addr: bigint) => T,
): T {
  const addr = syscall(SYS.shmat, shmid, 0, writable ? 0 : SHM_RDONLY);
  try {
    const ptr = Deno.UnsafePointer.create(addr);
    if (ptr === null || size === 0) return fn(new Uint8Array(0), addr);
    const buf = new Deno.UnsafePointerView(ptr).getArrayBuffer(size);
    return fn(new Uint8Array(buf), addr);
  } finally {
    rawSyscall(SYS.shmdt, addr);
  }
}
