/**
 * Open file descriptors of a process: /proc/<pid>/fd links, their fdinfo
 * and stat, and a classifier saying what each fd is.
 *
 * @module
 */

import type { FdKind, FileIdentity } from "../model.ts";
import { assertAlive, ProcEntryNotFoundError } from "./errors.ts";
import { type FdInfoRecord, readFdInfo } from "./fdinfo.ts";
import { fileIdentityOf, procPath, readProcLink, readProcNumericDir, statProc } from "./io.ts";

/** Open fd numbers of a process, ascending (ProcessGoneError for a zombie). */
export function listFds(pid: number): number[] {
  const fds = readProcNumericDir(pid, "fd");
  if (fds.length === 0) assertAlive(pid, procPath(pid, "fd"));
  return fds;
}

/** readlink of /proc/<pid>/fd/<fd>: a path, "pipe:[ino]", "anon_inode:[eventfd]", ... */
export function readFdTarget(pid: number, fd: number): string {
  return readProcLink(pid, `fd/${fd}`);
}

/** stat facts of the open file behind an fd. */
export interface FdStat {
  /** st_mode (type and permission bits). */
  mode: number;
  /** Device of the inode. */
  dev: number;
  /** Inode number. */
  ino: number;
  /** Device number for character and block devices. */
  rdev: number;
  /** Size in bytes. */
  size: number;
  /** Link count (0 for an unlinked file). */
  nlink: number;
  /** Modification time in ms since the epoch (0 if unknown). */
  mtimeMs: number;
}

/** What an fd is, as decided by {@link classifyFd}. */
export interface FdClass {
  /** The kind, in the model's terms. */
  kind: FdKind;
  /** True when the link target ends in " (deleted)" (file, dir, fifo, memfd...). */
  deleted: boolean;
  /** For anon_inode fds: the name without brackets ("eventfd", "io_uring", ...). */
  anonName?: string;
  /** For path targets: the path without the " (deleted)" suffix. */
  path?: string;
}

const DELETED = " (deleted)";

const ANON_KINDS: Record<string, FdKind> = {
  eventfd: "eventfd",
  eventpoll: "epoll",
  timerfd: "timerfd",
  signalfd: "signalfd",
  inotify: "inotify",
  fanotify: "fanotify",
  pidfd: "pidfd",
};

/** Major number of a Linux dev_t. */
export function devMajor(dev: number): number {
  return Number((BigInt(dev) >> 8n) & 0xfffn) | Number((BigInt(dev) >> 32n) & ~0xfffn);
}

/** Minor number of a Linux dev_t. */
export function devMinor(dev: number): number {
  return (dev & 0xff) | Number((BigInt(dev) >> 12n) & 0xfff00n);
}

/** True for terminal character devices: tty*, console, ptmx (4, 5) and pts (136..143). */
export function isTtyDevice(rdev: number): boolean {
  const major = devMajor(rdev);
  return major === 4 || major === 5 || (major >= 136 && major <= 143);
}

/**
 * Classifies an fd from its link target and (if available) the stat of the
 * open file. Pure: no /proc access.
 */
export function classifyFd(target: string, stat: Deno.FileInfo | FdStat | null): FdClass {
  const deleted = target.endsWith(DELETED);
  if (target.startsWith("pipe:")) return { kind: "pipe", deleted: false };
  if (target.startsWith("socket:")) return { kind: "socket", deleted: false };
  if (target.startsWith("anon_inode:")) {
    const anonName = target.slice("anon_inode:".length).replace(/^\[(.*)\]$/, "$1");
    return { kind: ANON_KINDS[anonName] ?? "anon", deleted: false, anonName };
  }
  if (!target.startsWith("/")) return { kind: "unknown", deleted: false };
  const path = deleted ? target.slice(0, -DELETED.length) : target;
  if (path.startsWith("/memfd:")) return { kind: "memfd", deleted, path };
  const mode = stat ? (stat.mode ?? 0) & 0o170000 : 0;
  switch (mode) {
    case 0o100000:
      return { kind: "file", deleted, path };
    case 0o040000:
      return { kind: "directory", deleted, path };
    case 0o020000:
      return { kind: isTtyDevice(stat?.rdev ?? 0) ? "tty" : "chardev", deleted, path };
    case 0o060000:
      return { kind: "blockdev", deleted, path };
    case 0o010000:
      return { kind: "fifo", deleted, path };
    // Only O_PATH opens these by a path: a link itself (with O_NOFOLLOW), a socket's file.
    case 0o120000:
    case 0o140000:
      return { kind: "path", deleted, path };
  }
  return { kind: "unknown", deleted, path };
}

/** Everything /proc says about one fd. */
export interface ProcFd extends FdClass {
  /** The fd number. */
  fd: number;
  /** readlink of /proc/<pid>/fd/<fd>. */
  target: string;
  /** Parsed fdinfo (pos, flags, mnt_id, ino, extra). */
  info: FdInfoRecord;
  /** stat of the open file. */
  stat: FdStat;
  /** Identity of the file for path targets (files, dirs, devices, fifos, memfds). */
  file?: FileIdentity;
}

/** Reads one fd. Throws ProcEntryNotFoundError if it is not open. */
export function readFd(pid: number, fd: number): ProcFd {
  const target = readFdTarget(pid, fd);
  const info = readFdInfo(pid, fd);
  const st = statProc(pid, `fd/${fd}`);
  const stat: FdStat = {
    mode: st.mode ?? 0,
    dev: st.dev,
    ino: st.ino ?? 0,
    rdev: st.rdev ?? 0,
    size: st.size,
    nlink: st.nlink ?? 0,
    mtimeMs: st.mtime?.getTime() ?? 0,
  };
  const cls = classifyFd(target, stat);
  const out: ProcFd = { fd, target, info, stat, ...cls };
  if (cls.path !== undefined) out.file = fileIdentityOf(cls.path, st);
  return out;
}

/** Reads every open fd of a process, ascending; fds closed meanwhile are skipped. */
export function readFds(pid: number): ProcFd[] {
  const out: ProcFd[] = [];
  for (const fd of listFds(pid)) {
    try {
      out.push(readFd(pid, fd));
    } catch (err) {
      if (err instanceof ProcEntryNotFoundError) continue;
      throw err;
    }
  }
  return out;
}
