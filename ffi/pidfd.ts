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
