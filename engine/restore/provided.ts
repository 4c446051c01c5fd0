/**
 * Objects the engine creates itself and hands to the restored tree through
 * the launcher, at fixed transfer fd numbers: pseudo-terminal masters,
 * which only cryo can open with a chosen index (engine/fds/tty.ts).
 *
 * @module
 */

import { rawSyscall, syscallNum } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { applyPtyState, openPtyMaster, setPtyLock } from "../../ffi/tty.ts";
import { type PlannedPty, ptyStateBytes } from "../fds/tty.ts";
import { RestoreError } from "../errors.ts";

const F_DUPFD_CLOEXEC = 1030;
const TIOCEXCL = 0x540c;

/** The pty masters of one restore, opened by cryo. */
export class ProvidedPtys {
  /** The ptys as planned. */
  readonly planned: readonly PlannedPty[];
  readonly #fds = new Map<number, number>();

  constructor(planned: readonly PlannedPty[]) {
    this.planned = planned;
  }

  /**
   * Opens every master with its index and state; returns transfer fd ->
   * cryo's fd (all above every transfer number) for the launcher. Throws
   * a RestoreError naming a pty index that is in use on this host.
   */
  open(): Map<number, number> {
    if (this.planned.length === 0) return this.#fds;
    const above = Math.max(...this.planned.map((p) => p.transferFd)) + 1;
    for (const p of this.planned) {
      const fd = openPtyMaster(p.index);
      if (fd === null) {
        this.close();
        throw new RestoreError(`cannot restore: /dev/pts/${p.index} is in use on this host`);
      }
      try {
        applyPtyState(fd, {
          ...ptyStateBytes(p),
          packet: p.packet,
          locked: p.locked,
          exclusive: p.exclusive,
        });
        if (p.exclusive) rawSyscall(SYS.ioctl, fd, TIOCEXCL, 0);
        this.#fds.set(p.transferFd, syscallNum(SYS.fcntl, fd, F_DUPFD_CLOEXEC, above));
      } finally {
        rawSyscall(SYS.close, fd);
      }
    }
    return this.#fds;
  }

  /** Re-locks the ptys that were locked, and closes cryo's masters (the tree holds its own). */
  close(): void {
    for (const p of this.planned) {
      const fd = this.#fds.get(p.transferFd);
      if (fd !== undefined && p.locked) {
        try {
          setPtyLock(fd, true);
        } catch { /* the tree is gone */ }
      }
    }
    for (const fd of this.#fds.values()) rawSyscall(SYS.close, fd);
    this.#fds.clear();
  }
}
