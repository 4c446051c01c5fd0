/**
 * Taking a copy of another process's fd (pidfd_open + pidfd_getfd), so cryo
 * can query the open file description itself (ioctls, getsockopt) without
 * injecting anything into the target. The copy refers to the same open file
 * description: state read from it is the target's.
 *
 * @module
 */

import { rawSyscall, syscallNum } from "./libc.ts";
import { SYS } from "./sysno.ts";

/**
 * Runs `fn` with a copy (in cryo) of each of `fds` of process `pid` in turn,
 * through one pidfd (two system calls less per fd than {@link withTargetFd}
 * each); closes each copy after its call. Throws as withTargetFd does.
 */
export function eachTargetFd<T>(
  pid: number,
  fds: readonly number[],
  fn: (copy: number, fd: number) => T,
): T[] {
  if (fds.length === 0) return [];
  const pidfd = syscallNum(SYS.pidfd_open, pid, 0);
  try {
    return fds.map((fd) => {
      const copy = syscallNum(SYS.pidfd_getfd, pidfd, fd, 0);
      try {
        return fn(copy, fd);
      } finally {
        rawSyscall(SYS.close, copy);
      }
    });
  } finally {
    rawSyscall(SYS.close, pidfd);
  }
}

/** Runs `fn` with a copy (in cryo) of fd `fd` of process `pid`; closes the copy afterwards. */
export function withTargetFd<T>(pid: number, fd: number, fn: (copy: number) => T): T {
  const pidfd = syscallNum(SYS.pidfd_open, pid, 0);
  let copy = -1;
  try {
    copy = syscallNum(SYS.pidfd_getfd, pidfd, fd, 0);
    return fn(copy);
  } finally {
    if (copy >= 0) rawSyscall(SYS.close, copy);
    rawSyscall(SYS.close, pidfd);
  }
}

/** PIDFD_GET_INFO (_IOWR(0xFF, 11, struct pidfd_info), the 72-byte version with the coredump mask). */
const PIDFD_GET_INFO = 0xc048ff0b;
/** PIDFD_INFO_EXIT: ask for the exit status of a reaped process. */
const PIDFD_INFO_EXIT = 8n;
/** PIDFD_INFO_COREDUMP: ask whether it dumped core. */
const PIDFD_INFO_COREDUMP = 16n;

/** What a pidfd tells of its process once that was reaped (PIDFD_GET_INFO). */
export interface PidfdExit {
  /** The wait status it exited with (code << 8, or the signal | 0x80 for a core). */
  exitCode: number;
  /** The PIDFD_COREDUMP_* bits (0 when none or unknown). */
  coredumpMask: number;
}

/**
 * The exit status recorded in pidfd `fd` of a reaped process, or null when
 * the kernel has none for it (PIDFD_GET_INFO without PIDFD_INFO_EXIT set).
 */
export function pidfdExit(fd: number): PidfdExit | null {
  const buf = new Uint8Array(72);
  const dv = new DataView(buf.buffer);
  dv.setBigUint64(0, PIDFD_INFO_EXIT | PIDFD_INFO_COREDUMP, true);
  const r = rawSyscall(SYS.ioctl, fd, PIDFD_GET_INFO, buf);
  if (r < 0n) return null;
  if ((dv.getBigUint64(0, true) & PIDFD_INFO_EXIT) === 0n) return null;
  const core = (dv.getBigUint64(0, true) & PIDFD_INFO_COREDUMP) !== 0n;
  return { exitCode: dv.getInt32(60, true), coredumpMask: core ? dv.getUint32(64, true) : 0 };
}
