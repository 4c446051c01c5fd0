/**
 * Objects the engine creates itself and hands to the restored tree through
 * the launcher, at fixed transfer fd numbers above every fd of the tree:
 * pseudo-terminal masters, which only cryo can open with a chosen index
 * (engine/fds/tty.ts), and deleted files and memfds, re-created from their
 * saved content (engine/fds/ghost.ts).
 *
 * @module
 */

import { rawSyscall, syscallNum } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import {
  applyPtyState,
  openPtyMaster,
  setExclusive,
  setPtyLock,
  stopOutput,
} from "../../ffi/tty.ts";
import { openPeer } from "../../ffi/pty_queue.ts";
import { type PlannedPty, ptyStateBytes } from "../fds/tty.ts";
import { createGhost, type PlannedGhosts } from "../fds/ghost.ts";
import { refillPty } from "../fds/tty_queue.ts";
import { RestoreError } from "../errors.ts";

const F_DUPFD_CLOEXEC = 1030;

/** The fds cryo provides to one restored tree. */
export class ProvidedFds {
  /** The tree's ptys as planned. */
  readonly ptys: readonly PlannedPty[];
  /** Transfer fd number -> cryo's fd (every cryo fd above every transfer number). */
  readonly fds = new Map<number, number>();
  /**
   * cryo's slaves of the ptys it put bytes or a column back into or set the slave's
   * exclusive mode on, open until the tree holds its own (a last slave
   * closing would show the master a hang-up).
   */
  readonly #slaves: number[] = [];

  private constructor(ptys: readonly PlannedPty[]) {
    this.ptys = ptys;
  }

  /**
   * Opens every pty master with its index and state and re-creates every
   * ghost file of `dir`. Throws a RestoreError (having closed what it
   * opened) naming a pty index in use on this host or a ghost file that
   * cannot be re-created.
   */
  static async open(
    ptys: readonly PlannedPty[],
    ghosts: PlannedGhosts,
    dir: string,
    /** Deleted cwds made for the restore: path -> "<dev>:<ino>" of the directory at dump. */
    madeCwds: ReadonlyMap<string, string> = new Map(),
  ): Promise<ProvidedFds> {
    const out = new ProvidedFds(ptys);
    const transfer = [
      ...ptys.map((p) => p.transferFd),
      ...[...ghosts.values()].map((g) => g.transferFd),
    ];
    if (transfer.length === 0) return out;
    const above = Math.max(...transfer) + 1;
    const keep = (transferFd: number, fd: number) => {
      try {
        out.fds.set(transferFd, syscallNum(SYS.fcntl, fd, F_DUPFD_CLOEXEC, above));
      } finally {
        rawSyscall(SYS.close, fd);
      }
    };
    try {
      for (const p of ptys) {
        const fd = openPtyMaster(p.index);
        if (fd === null) {
          throw new RestoreError(`cannot restore: /dev/pts/${p.index} is in use on this host`);
        }
        let slave: number | undefined;
        try {
          // The column and queued bytes go back first: that leaves the termios as saved.
          if (p.queue || p.column) {
            slave = refillPty(fd, p.queue, p.column ?? 0, ptyStateBytes(p).termios);
          }
          applyPtyState(fd, { ...ptyStateBytes(p), packet: p.packet });
          if (p.exclusive) setExclusive(fd);
          if (p.masterStopped) stopOutput(fd);
          if (p.slaveExclusive) setExclusive(slave ??= openPeer(fd));
          if (p.hup) {
            // Its slaves were all closed: closing cryo's shows the master the same EIO.
            rawSyscall(SYS.close, slave ?? openPeer(fd));
            slave = undefined;
          }
          if (slave !== undefined) out.#slaves.push(slave);
          slave = undefined;
          if (p.owner) {
            const slave = `/dev/pts/${p.index}`;
            Deno.chownSync(slave, p.owner.uid, p.owner.gid);
            Deno.chmodSync(slave, p.owner.mode);
          }
        } catch (e) {
          if (slave !== undefined) rawSyscall(SYS.close, slave);
          rawSyscall(SYS.close, fd);
          throw e;
        }
        keep(p.transferFd, fd);
      }
      for (const { ghost, transferFd } of ghosts.values()) {
        keep(transferFd, await createGhost(ghost, dir, madeCwds));
      }
    } catch (e) {
      out.close();
      throw e;
    }
    return out;
  }

  /** Re-locks the ptys that were locked, and closes cryo's copies (the tree holds its own). */
  close(): void {
    for (const p of this.ptys) {
      const fd = this.fds.get(p.transferFd);
      if (fd !== undefined && p.locked) {
        try {
          setPtyLock(fd, true);
        } catch { /* the tree is gone */ }
      }
    }
    for (const fd of this.fds.values()) rawSyscall(SYS.close, fd);
    this.fds.clear();
    for (const fd of this.#slaves.splice(0)) rawSyscall(SYS.close, fd);
  }
}
