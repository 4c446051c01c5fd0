/**
 * statx(2) for the change time of a file in nanoseconds: Deno's
 * `FileInfo.ctime` keeps whole seconds only, and the change time is what
 * tells a rewritten file whose modification time was set back (utimes
 * cannot set it) from the file a dump saw. Also the access and
 * modification times of an open file, to the nanosecond, and their
 * setting back (utimensat on the fd).
 *
 * @module
 */

import { cstr, rawSyscall } from "./libc.ts";
import { SYS } from "./sysno.ts";

const AT_FDCWD = -100;
const STATX_CTIME = 0x80;
/** Offset in struct statx of stx_ctime (struct statx_timestamp: i64 sec, u32 nsec). */
const CTIME_AT = 0x60;

const buf = new Uint8Array(256);
const view = new DataView(buf.buffer);

/**
 * The change time of `path` (symlinks followed) in ns since the epoch, as
 * a decimal string, or -errno.
 */
export function changeTimeNs(path: string): string | number {
  const r = rawSyscall(SYS.statx, AT_FDCWD, cstr(path), 0, STATX_CTIME, buf);
  if (r < 0n) return Number(r);
  const sec = view.getUint32(CTIME_AT, true) + view.getInt32(CTIME_AT + 4, true) * 2 ** 32;
  return `${sec}${String(view.getUint32(CTIME_AT + 8, true)).padStart(9, "0")}`;
}

/** Offsets in struct statx of stx_attributes and stx_attributes_mask (both u64). */
const ATTRIBUTES_AT = 0x08;
const ATTRIBUTES_MASK_AT = 0x38;

/**
 * The file attributes statx reports for `path` (symlinks followed), only
 * those its file system supports (stx_attributes & stx_attributes_mask:
 * STATX_ATTR_IMMUTABLE 0x10, STATX_ATTR_APPEND 0x20, ...), or 0 when it
 * cannot be asked.
 */
export function fileAttributes(path: string): number {
  const r = rawSyscall(SYS.statx, AT_FDCWD, cstr(path), 0, 0, buf);
  if (r < 0n) return 0;
  const attrs = view.getBigUint64(ATTRIBUTES_AT, true) &
    view.getBigUint64(ATTRIBUTES_MASK_AT, true);
  return Number(attrs & 0xffffffffn);
}

/** What {@link pathFacts} reads of a file. */
export interface PathFacts {
  /** st_dev as Deno's `FileInfo.dev` gives it (makedev of stx_dev_major and stx_dev_minor). */
  dev: number;
  ino: number;
  /** As {@link fileAttributes}: the attributes its file system supports. */
  attributes: number;
}

const STATX_INO = 0x100;
const INO_AT = 0x20;
const DEV_MAJOR_AT = 0x88;
const DEV_MINOR_AT = 0x8c;

/**
 * Device, inode and attributes of `path` (symlinks followed) in one statx,
 * without building a Deno `FileInfo`; undefined when it cannot be asked.
 */
export function pathFacts(path: string): PathFacts | undefined {
  const r = rawSyscall(SYS.statx, AT_FDCWD, cstr(path), 0, STATX_INO, buf);
  if (r < 0n) return undefined;
  const major = BigInt(view.getUint32(DEV_MAJOR_AT, true));
  const minor = BigInt(view.getUint32(DEV_MINOR_AT, true));
  const dev = ((major & 0xfffn) << 8n) | ((major & ~0xfffn) << 32n) | (minor & 0xffn) |
    ((minor & ~0xffn) << 12n);
  const attrs = view.getBigUint64(ATTRIBUTES_AT, true) &
    view.getBigUint64(ATTRIBUTES_MASK_AT, true);
  return {
    dev: Number(dev),
    ino: Number(view.getBigUint64(INO_AT, true)),
    attributes: Number(attrs & 0xffffffffn),
  };
}

const AT_EMPTY_PATH = 0x1000;
const STATX_ATIME = 0x20;
const STATX_MTIME = 0x40;
/** Offsets in struct statx of stx_atime and stx_mtime. */
const ATIME_AT = 0x40;
const MTIME_AT = 0x70;

/** A file time as (seconds, nanoseconds) since the epoch. */
export type FileTime = [number, number];

function timeAt(at: number): FileTime {
  return [Number(view.getBigInt64(at, true)), view.getUint32(at + 8, true)];
}

/**
 * The access and modification times of the open file `fd`, or null when
 * statx cannot tell them.
 */
export function fileTimes(fd: number): { atime: FileTime; mtime: FileTime } | null {
  const r = rawSyscall(SYS.statx, fd, cstr(""), AT_EMPTY_PATH, STATX_ATIME | STATX_MTIME, buf);
  if (r < 0n) return null;
  const mask = view.getUint32(0, true);
  if ((mask & (STATX_ATIME | STATX_MTIME)) !== (STATX_ATIME | STATX_MTIME)) return null;
  return { atime: timeAt(ATIME_AT), mtime: timeAt(MTIME_AT) };
}

/** Sets the access and modification times of the open file `fd` (utimensat on the fd); -errno or 0. */
export function setFileTimes(fd: number, atime: FileTime, mtime: FileTime): number {
  const ts = new BigInt64Array([
    BigInt(atime[0]),
    BigInt(atime[1]),
    BigInt(mtime[0]),
    BigInt(mtime[1]),
  ]);
  return Number(rawSyscall(SYS.utimensat, fd, 0, ts, 0));
}

/**
 * The access and modification times of `path` (symlinks followed, so a
 * /proc/<pid>/cwd link reaches a deleted directory), or null when statx
 * cannot tell them.
 */
export function pathTimes(path: string): { atime: FileTime; mtime: FileTime } | null {
  const r = rawSyscall(SYS.statx, AT_FDCWD, cstr(path), 0, STATX_ATIME | STATX_MTIME, buf);
  if (r < 0n) return null;
  const mask = view.getUint32(0, true);
  if ((mask & (STATX_ATIME | STATX_MTIME)) !== (STATX_ATIME | STATX_MTIME)) return null;
  return { atime: timeAt(ATIME_AT), mtime: timeAt(MTIME_AT) };
}

/** Sets the access and modification times of `path` (utimensat, symlinks followed); -errno or 0. */
export function setPathTimes(path: string, atime: FileTime, mtime: FileTime): number {
  const ts = new BigInt64Array([
    BigInt(atime[0]),
    BigInt(atime[1]),
    BigInt(mtime[0]),
    BigInt(mtime[1]),
  ]);
  return Number(rawSyscall(SYS.utimensat, AT_FDCWD, cstr(path), ts, 0));
}
