/**
 * Mount and file calls Deno does not offer, for the private tmpfs mounts
 * of a launched tree (engine/pidns/mounts.ts): mount, umount, lchown and
 * the size of a file's extended attribute names.
 *
 * @module
 */

import { rawSyscall, syscall } from "./libc.ts";
import { SYS } from "./sysno.ts";

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const SYS_FCHOWNAT = 260;
const SYS_LLISTXATTR = 195;

const c = (s: string) => new TextEncoder().encode(s + "\0");

/** mount(2); throws a SyscallError on failure. */
export function mount(
  source: string,
  target: string,
  fstype: string,
  flags: number,
  data: string,
): void {
  syscall(SYS.mount, c(source), c(target), c(fstype), flags, c(data));
}

/** umount2(2); -errno on failure, else 0. */
export function umount(path: string, flags = 0): number {
  return Number(rawSyscall(SYS.umount2, c(path), flags));
}

/** Changes the owner of `path` itself (a symlink is not followed). */
export function lchown(path: string, uid: number, gid: number): void {
  syscall(SYS_FCHOWNAT, AT_FDCWD, c(path), uid, gid, AT_SYMLINK_NOFOLLOW);
}

/** Bytes of extended attribute names of `path` itself (0: none), or -errno. */
export function xattrNamesSize(path: string): number {
  return Number(rawSyscall(SYS_LLISTXATTR, c(path), 0, 0));
}
