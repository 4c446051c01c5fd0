/**
 * fcntl queries on an fd of cryo's own (for example a copy of a target's fd
 * from pidfd_getfd, which shares the target's open file description).
 *
 * @module
 */

import { rawSyscall } from "./libc.ts";
import { fOwnerEx } from "./structs.ts";
import { SYS } from "./sysno.ts";

const F_GETSIG = 11;
const F_GETOWN_EX = 16;

/** The owner (F_GETOWN_EX: type and pid) and signal (F_GETSIG) of the description behind `fd`. */
export function fdOwnerOf(fd: number): { type: number; pid: number; sig: number } {
  const buf = new Uint8Array(fOwnerEx.size);
  const r = rawSyscall(SYS.fcntl, fd, F_GETOWN_EX, buf);
  const owner = r < 0n ? { type: 0, pid: 0 } : fOwnerEx.decode(buf);
  const sig = rawSyscall(SYS.fcntl, fd, F_GETSIG);
  return { type: owner.type, pid: owner.pid, sig: sig < 0n ? 0 : Number(sig) };
}
