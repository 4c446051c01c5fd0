/**
 * Kernel file handles: a file's handle (name_to_handle_at), and opening a
 * file by its handle (open_by_handle_at), as fdinfo prints it for inotify
 * watches, to find the path of a watched inode.
 *
 * @module
 */

import { cstr, rawSyscall } from "./libc.ts";
import { SYS } from "./sysno.ts";

const O_PATH = 0o10000000;
const O_DIRECTORY = 0o200000;
const O_CLOEXEC = 0o2000000;

/**
 * A read-only fd of directory `path` (a mount point to decode handles
 * against: the kernel does not take O_PATH fds there), or -errno. Opening
 * it is an open event on that directory for whoever watches it.
 */
export function openDirFd(path: string): number {
  return Number(rawSyscall(SYS.open, cstr(path), O_DIRECTORY | O_CLOEXEC, 0));
}

/**
 * Opens the inode a file handle names, as an O_PATH fd (no open event is
 * generated, whatever the file is), decoding it against the filesystem of
 * `mountFd`. Returns the fd or -errno (ESTALE when the inode is gone).
 * Needs CAP_DAC_READ_SEARCH.
 */
export function openByHandle(mountFd: number, type: number, handle: Uint8Array): number {
  // struct file_handle { u32 handle_bytes; int handle_type; unsigned char f_handle[]; }
  const buf = new Uint8Array(8 + handle.length);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, handle.length, true);
  dv.setInt32(4, type, true);
  buf.set(handle, 8);
  return Number(rawSyscall(SYS.open_by_handle_at, mountFd, buf, O_PATH | O_CLOEXEC));
}

/** A file's kernel file handle and the id of the mount it was found through. */
export interface FileHandle {
  /** handle_type of struct file_handle. */
  type: number;
  /** f_handle's bytes. */
  bytes: Uint8Array;
  /** The mount id (as /proc/self/mountinfo's first column). */
  mountId: number;
}

const SYS_NAME_TO_HANDLE_AT = 303;
const AT_FDCWD = -100;
const AT_SYMLINK_FOLLOW = 0x400;
/** MAX_HANDLE_SZ: the largest handle the kernel makes. */
const MAX_HANDLE_BYTES = 128;

/**
 * The file handle of what `path` names (a magic link such as
 * /proc/<pid>/fd/<n> is followed to the open file), or -errno
 * (EOPNOTSUPP: the file system makes no handles).
 */
export function nameToHandle(path: string): FileHandle | number {
  const buf = new Uint8Array(8 + MAX_HANDLE_BYTES);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, MAX_HANDLE_BYTES, true);
  const mount = new Int32Array(1);
  const r = Number(
    rawSyscall(SYS_NAME_TO_HANDLE_AT, AT_FDCWD, cstr(path), buf, mount, AT_SYMLINK_FOLLOW),
  );
  if (r < 0) return r;
  const n = dv.getUint32(0, true);
  return { type: dv.getInt32(4, true), bytes: buf.slice(8, 8 + n), mountId: mount[0] };
}

/** Closes an fd returned by the functions above. */
export function closeFd(fd: number): void {
  if (fd >= 0) rawSyscall(SYS.close, fd);
}
