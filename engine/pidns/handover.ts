/**
 * Handing the engine's fds (pty masters, re-created deleted files:
 * engine/restore/provided.ts) to a root that was not spawned by the engine
 * (the init of a fresh pid namespace, engine/pidns/): at its exec stop,
 * before its program starts, syscalls injected into it copy each fd from
 * the engine with pidfd_getfd and put it at its transfer number, as the
 * launcher's posix_spawn would have.
 *
 * @module
 */

import { findSyscallInstruction, injectSyscall } from "../../ffi/inject.ts";
import { SYS } from "../../ffi/sysno.ts";
import { errnoName } from "../../ffi/errno.ts";
import { RestoreError } from "../errors.ts";

const F_DUPFD = 0;

/**
 * Installs `fds` (transfer number -> the engine's fd) in stopped process
 * `pid`; temporaries are kept above every transfer number and closed.
 */
export function handOverFds(pid: number, fds: ReadonlyMap<number, number>): void {
  if (fds.size === 0) return;
  const site = findSyscallInstruction(pid);
  const call = (what: string, nr: number, ...args: (number | bigint)[]) => {
    const r = injectSyscall(pid, site, nr, ...args);
    if (r < 0n) {
      throw new RestoreError(
        `cannot hand the tree's fds to process ${pid}: ${what} failed: ${errnoName(Number(-r))}`,
      );
    }
    return Number(r);
  };
  const high = Math.max(...fds.keys()) + 1;
  const moveHigh = (fd: number) => {
    const to = call("fcntl(F_DUPFD)", SYS.fcntl, fd, F_DUPFD, high);
    call("close", SYS.close, fd);
    return to;
  };
  const pidfd = moveHigh(call("pidfd_open", SYS.pidfd_open, Deno.pid, 0));
  const temps = new Map<number, number>();
  for (const [transfer, ours] of fds) {
    temps.set(transfer, moveHigh(call("pidfd_getfd", SYS.pidfd_getfd, pidfd, ours, 0)));
  }
  for (const [transfer, temp] of temps) {
    call(`dup2(${transfer})`, SYS.dup2, temp, transfer);
    call("close", SYS.close, temp);
  }
  call("close", SYS.close, pidfd);
}
