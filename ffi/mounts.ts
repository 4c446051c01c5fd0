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

const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;
const O_NOATIME = 0o1000000;

/** Reads a whole file without changing its access time (O_NOATIME; the caller owns it or is root). */
export function readFileNoAtime(path: string, size: number): Uint8Array {
  const fd = Number(syscall(SYS.open, c(path), O_RDONLY | O_CLOEXEC | O_NOATIME));
  try {
    const out = new Uint8Array(size);
    let at = 0;
    while (at < size) {
      const n = Number(syscall(SYS.read, fd, out.subarray(at), size - at));
      if (n === 0) break;
      at += n;
    }
    return out.subarray(0, at);
  } finally {
    rawSyscall(SYS.close, fd);
  }
}

const SYS_STATFS = 137;

/** The file system magic number (statfs f_type) of what `path` names, or undefined when it cannot be read. */
export function fsMagic(path: string): number | undefined {
  const b = new Uint8Array(120);
  if (rawSyscall(SYS_STATFS, c(path), b) < 0n) return undefined;
  return Number(new DataView(b.buffer).getBigInt64(0, true));
}
