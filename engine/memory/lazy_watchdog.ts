/**
 * The watchdog of a lazy restore, run as its own small process
 * (engine/memory/lazy_serve.ts spawns it): it holds a copy of every
 * userfaultfd of the tree, so a dying cryo never releases them (a
 * released userfaultfd unregisters its ranges, and the pages cryo had not
 * yet copied would then fault in as zeros). It blocks reading fd 3, a
 * pipe whose only writer is cryo: "D" means every page is in (or cryo
 * killed the tree itself) and it just exits; end of file means cryo died,
 * and it kills every process of the tree through its pidfds before
 * exiting, so no task returns to user mode with a missing page.
 *
 * argv: the number of userfaultfds (at fds 4..), then the number of
 * pidfds (after them).
 *
 * @module
 */

import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";

const SIGKILL = 9;

/** Blocks until cryo says done or dies; kills the tree in the second case. */
function main(): never {
  rawSyscall(SYS.setsid);
  const uffds = Number(Deno.args[0]);
  const pidfds = Number(Deno.args[1]);
  const buf = new Uint8Array(1);
  let r: bigint;
  do r = rawSyscall(SYS.read, 3, buf, 1); while (r === -4n /* EINTR */);
  if (r !== 1n || buf[0] !== 0x44 /* "D" */) {
    for (let i = 0; i < pidfds; i++) {
      rawSyscall(SYS.pidfd_send_signal, 4 + uffds + i, SIGKILL, 0, 0);
    }
  }
  rawSyscall(SYS.exit_group, 0);
  Deno.exit(0);
}

if (import.meta.main) main();
