/**
 * File operations cryo needs beyond Deno's own: memfd_create with seals,
 * O_TMPFILE files, and the data extents of a sparse file (SEEK_DATA /
 * SEEK_HOLE), all on raw fds.
 *
 * @module
 */

import { cstr, rawSyscall, syscall, syscallNum } from "./libc.ts";
import { SYS } from "./sysno.ts";

const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;
const O_TMPFILE = 0o20200000;
const MFD_CLOEXEC = 1;
const MFD_ALLOW_SEALING = 2;
const F_ADD_SEALS = 1033;
const F_GET_SEALS = 1034;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const ENXIO = 6;

/** F_SEAL_* bits. */
export const SEALS = { SEAL: 1, SHRINK: 2, GROW: 4, WRITE: 8, FUTURE_WRITE: 16, EXEC: 32 } as const;

/** A new memfd (close-on-exec, sealable) named `name`. */
export function memfdCreate(name: string): number {
  return syscallNum(SYS.memfd_create, cstr(name), MFD_CLOEXEC | MFD_ALLOW_SEALING);
}

/** The seals of a memfd (F_SEAL_SEAL alone for one made without MFD_ALLOW_SEALING). */
export function getSeals(fd: number): number {
  const r = rawSyscall(SYS.fcntl, fd, F_GET_SEALS);
  return r < 0n ? 0 : Number(r);
}

/** Adds seals to a memfd. */
export function addSeals(fd: number, seals: number): void {
  if (seals !== 0) syscall(SYS.fcntl, fd, F_ADD_SEALS, seals);
}

/** An unnamed regular file (O_TMPFILE) in directory `dir`, read-write, close-on-exec. */
export function openTmpfile(dir: string, mode: number): number {
  return syscallNum(SYS.open, cstr(dir), O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
}

/**
 * A new file at `path` (which must not exist), read-write and close-on-exec,
 * unlinked at once: its /proc link then reads "<path> (deleted)". Returns
 * null when `path` exists.
 */
export function createUnlinked(path: string, mode: number): number | null {
  const O_CREAT_EXCL = 0o100 | 0o200;
  const fd = rawSyscall(SYS.open, cstr(path), O_CREAT_EXCL | O_RDWR | O_CLOEXEC, mode);
  if (fd === -17n /* EEXIST */) return null;
  if (fd < 0n) syscall(SYS.open, cstr(path), O_CREAT_EXCL | O_RDWR | O_CLOEXEC, mode); // throws
  syscall(SYS.unlink, cstr(path));
  return Number(fd);
}

/** Sets the size of an open file. */
export function truncateFd(fd: number, size: number): void {
  syscall(SYS.ftruncate, fd, size);
}

/** Sets owner and mode of an open file. */
export function chownChmodFd(fd: number, uid: number, gid: number, mode: number): void {
  syscall(SYS.fchown, fd, uid, gid);
  syscall(SYS.fchmod, fd, mode & 0o7777);
}

/** The size of the open file `fd` (lseek to its end), or -1 when it cannot be told. */
export function fileSize(fd: number): number {
  const end = rawSyscall(SYS.lseek, fd, 0, 2 /* SEEK_END */);
  return end < 0n ? -1 : Number(end);
}

/**
 * The data extents [offset, length] of the open file `fd` of `size` bytes:
 * holes are left out (a file system without SEEK_DATA gives one extent).
 */
export function dataExtents(fd: number, size: number): [number, number][] {
  const out: [number, number][] = [];
  let pos = 0;
  while (pos < size) {
    const data = rawSyscall(SYS.lseek, fd, pos, SEEK_DATA);
    if (data === -BigInt(ENXIO)) break; // only a hole from here on
    if (data < 0n) return size > 0 ? [[0, size]] : [];
    const hole = rawSyscall(SYS.lseek, fd, data, SEEK_HOLE);
    const end = hole < 0n ? size : Math.min(Number(hole), size);
    if (end > Number(data)) out.push([Number(data), end - Number(data)]);
    pos = end;
  }
  return out;
}

const FS_IOC_FIEMAP = 0xc020660b;
const FIEMAP_EXTENT_LAST = 0x1;
const FIEMAP_EXTENT_UNWRITTEN = 0x800;
const FIEMAP_HEAD = 32;
const FIEMAP_EXTENT = 56;
const FIEMAP_BATCH = 64;

/**
 * The unwritten extents [offset, length] of the open file `fd`: blocks
 * fallocate reserved that were never written (they read as zeros and
 * SEEK_DATA skips them), also those past the file's size
 * (FALLOC_FL_KEEP_SIZE). Empty where the file system has no FIEMAP
 * (tmpfs) or nothing is unwritten.
 */
export function unwrittenExtents(fd: number): [number, number][] {
  const out: [number, number][] = [];
  const buf = new Uint8Array(FIEMAP_HEAD + FIEMAP_BATCH * FIEMAP_EXTENT);
  const v = new DataView(buf.buffer);
  let start = 0n;
  for (;;) {
    buf.fill(0);
    v.setBigUint64(0, start, true); // fm_start
    v.setBigUint64(8, 0xffffffffffffffffn - start, true); // fm_length: to the end
    v.setUint32(24, FIEMAP_BATCH, true); // fm_extent_count
    if (rawSyscall(SYS.ioctl, fd, FS_IOC_FIEMAP, buf) < 0n) return out;
    const n = v.getUint32(20, true); // fm_mapped_extents
    if (n === 0) return out;
    for (let i = 0; i < n; i++) {
      const e = FIEMAP_HEAD + i * FIEMAP_EXTENT;
      const logical = v.getBigUint64(e, true), length = v.getBigUint64(e + 16, true);
      const flags = v.getUint32(e + 40, true);
      if (flags & FIEMAP_EXTENT_UNWRITTEN) {
        const last = out[out.length - 1];
        if (last && last[0] + last[1] === Number(logical)) last[1] += Number(length);
        else out.push([Number(logical), Number(length)]);
      }
      if (flags & FIEMAP_EXTENT_LAST) return out;
      start = logical + length;
    }
  }
}

const FALLOC_FL_KEEP_SIZE = 1;

/** Reserves [offset, offset + length) of `fd` with fallocate, the size kept; a negative errno on failure. */
export function reserveRange(fd: number, offset: number, length: number): number {
  return Number(rawSyscall(SYS.fallocate, fd, FALLOC_FL_KEEP_SIZE, offset, length));
}

const O_PATH = 0o10000000;
const O_NOFOLLOW = 0o400000;

/**
 * The content of the symlink `path` leads to (a /proc/<pid>/fd/<n> link of
 * an O_PATH fd of a symlink: the jump lands on the symlink itself, read
 * with readlinkat(fd, "")), or -errno.
 */
export function symlinkContentThrough(path: string): string | number {
  const fd = Number(rawSyscall(SYS.open, cstr(path), O_PATH | O_CLOEXEC, 0));
  if (fd < 0) return fd;
  try {
    const buf = new Uint8Array(4096);
    const n = Number(rawSyscall(SYS.readlinkat, fd, cstr(""), buf, buf.length));
    return n < 0 ? n : new TextDecoder().decode(buf.subarray(0, n));
  } finally {
    rawSyscall(SYS.close, fd);
  }
}

/** An O_PATH fd (close-on-exec) of the symlink `path` itself (O_NOFOLLOW), or -errno. */
export function openSymlinkItself(path: string): number {
  return Number(rawSyscall(SYS.open, cstr(path), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0));
}

/** lchown(2): the owner of the symlink `path` itself; -errno or 0. */
export function lchown(path: string, uid: number, gid: number): number {
  return Number(rawSyscall(SYS.lchown, cstr(path), uid, gid));
}

const MFD_HUGETLB = 4;
const MFD_HUGE_SHIFT = 26;

/**
 * A new hugetlbfs memfd (MFD_HUGETLB, close-on-exec, sealable) named `name`
 * with pages of `pageSize` bytes; `-errno` on failure.
 */
export function memfdCreateHuge(name: string, pageSize: number): number {
  const flags = MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB |
    (Math.log2(pageSize) << MFD_HUGE_SHIFT);
  return Number(rawSyscall(SYS.memfd_create, cstr(name), flags));
}

/**
 * Runs `fill` with a writable view of `length` bytes of file `fd` from
 * `offset` on, mapped shared (hugetlbfs takes no write(): its pages are
 * filled through a mapping); unmapped after. `offset` and `length` must be
 * multiples of the file's page size, inside its size. Returns `-errno` when
 * the mmap fails (0 else).
 */
export async function withSharedMapping(
  fd: number,
  offset: number,
  length: number,
  fill: (bytes: Uint8Array) => Promise<void>,
): Promise<number> {
  if (length === 0) return 0;
  const PROT_RW = 3, MAP_SHARED = 1;
  const addr = rawSyscall(SYS.mmap, 0, length, PROT_RW, MAP_SHARED, fd, offset);
  if (addr < 0n && addr > -4096n) return Number(addr);
  try {
    const view = new Deno.UnsafePointerView(Deno.UnsafePointer.create(addr)!);
    await fill(new Uint8Array(view.getArrayBuffer(length)));
  } finally {
    syscall(SYS.munmap, addr, length);
  }
  return 0;
}
