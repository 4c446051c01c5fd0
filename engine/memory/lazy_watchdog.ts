/**
 * The watchdog of a lazy restore, run as its own small process
 * (engine/memory/lazy_serve.ts spawns it): it holds a copy of every
 * userfaultfd of the tree, so a dying cryo never releases them (a
 * released userfaultfd unregisters its ranges, and the pages cryo had not
 * yet copied would then fault in as zeros). It reads fd 3, a pipe whose
 * only writer is cryo:
 *
 * - "D": every page is in (or cryo killed the tree itself): it exits;
 * - "F" and two 32-bit fd numbers in cryo: a process forked, cryo serves
 *   its userfaultfd too; the watchdog takes copies of that userfaultfd and
 *   of the child's pidfd from cryo (pidfd_getfd through cryo's pidfd, fd 4);
 * - end of file: cryo died: it kills every process it knows (children
 *   first) through their pidfds, then exits, so no task returns to user
 *   mode with a missing page.
 *
 * argv: the number of userfaultfds (at fds 5..), then the number of
 * pidfds (after them).
 *
 * @module
 */

import { rawSyscall, readFully } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";

const SIGKILL = 9;

/** Serves cryo's messages until it says done or dies; kills the tree in the second case. */
function main(): never {
  rawSyscall(SYS.setsid);
  const uffds = Number(Deno.args[0]);
  const pidfds: number[] = [];
  for (let i = 0; i < Number(Deno.args[1]); i++) pidfds.push(5 + uffds + i);
  const held: number[] = [];
  const kind = new Uint8Array(1);
  for (;;) {
    if (!readFully(3, kind)) break;
    if (kind[0] === 0x44 /* "D" */) rawSyscall(SYS.exit_group, 0);
    const fds = new Uint32Array(2);
    if (kind[0] !== 0x46 /* "F" */ || !readFully(3, new Uint8Array(fds.buffer))) break;
    held.push(Number(rawSyscall(SYS.pidfd_getfd, 4, fds[0], 0)));
    pidfds.push(Number(rawSyscall(SYS.pidfd_getfd, 4, fds[1], 0)));
  }
  for (const fd of pidfds.toReversed()) rawSyscall(SYS.pidfd_send_signal, fd, SIGKILL, 0, 0);
  rawSyscall(SYS.exit_group, 0);
  Deno.exit(0);
}

if (import.meta.main) main();
