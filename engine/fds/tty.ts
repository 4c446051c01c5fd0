/**
 * Terminals. A pseudo-terminal whose master is held inside the tree (tmux,
 * screen, `script`, expect) is re-created with the same index (/dev/pts/N),
 * termios, window size, packet mode, lock, exclusive mode of either side,
 * the master's output stopped, output column (modulo 8) and the bytes waiting in it (`tty_queue.ts`),
 * and its slaves closed again when every holder had closed them (the
 * master reads EIO); its slave is reopened by path, a `/dev/tty` fd as
 * `/dev/tty` when the terminal behind it is its holder's controlling
 * terminal restored with the tree; a session whose controlling terminal it
 * was gets it back, with the same foreground process group. Any other
 * terminal (the user's own, a pty whose master is outside the tree), and a
 * controlling terminal that would not come back, is outside the tree: it
 * needs the opt-in `--shell-job`, and restore attaches such fds to the
 * restorer's stdio. A pty slave fd hung up when its master was closed (a
 * daemon whose ssh session ended) comes back as the slave of a new pty,
 * hung up with TIOCVHANGUP, whose master is then closed: it reads end of
 * file and fails every write and ioctl with EIO as before; only the pty's
 * index (st_rdev, the link's /dev/pts/N) differs, a pty that no longer
 * exists. Other hung-up terminal fds and line disciplines other than N_TTY
 * are refused.
 *
 * Dump reads a pty's state through a copy of its master (pidfd_getfd): on
 * a master, the termios and window-size ioctls act on the slave. Restore
 * opens the masters in cryo itself, where it can ask for an index (by
 * holding the lower ones open meanwhile), and hands them to the tree at
 * fixed "transfer" fd numbers through the launcher, like an inherited fd;
 * each holder takes its master from there in its own fd phase.
 *
 * @module
 */

import { inInitialUserNs } from "../task/userns.ts";
import { withTargetFd } from "../../ffi/pidfd.ts";
import { POLL, pollFd } from "../../ffi/pty_queue.ts";
import { lineDiscipline, readPtyState, terminalDevice, unreadBytes } from "../../ffi/tty.ts";
import { SYS } from "../../ffi/sysno.ts";
import { decodeBase64, encodeBase64 } from "../base64.ts";
import type { FdInfo, ProcessImage } from "../model.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import type { Refusals, SupportId } from "../support.ts";
import type { FdSource } from "./types.ts";
import {
  decodePtyQueue,
  encodePtyQueue,
  type PtyQueue,
  type PtyQueueRefusal,
  takePtyQueues,
} from "./tty_queue.ts";

/** Major and minor of /dev/ptmx. */
const PTMX = { major: 5, minor: 2 };
/** Major and minor of /dev/tty (the opener's controlling terminal). */
const DEV_TTY = { major: 5, minor: 0 };
/** Majors of Unix98 pty slaves (/dev/pts/N). */
const PTS_MAJOR_FIRST = 136;
const PTS_MAJOR_LAST = 143;
const O_RDWR = 2;
const O_NOCTTY = 0o400;
const O_CLOEXEC = 0o2000000;
const TIOCSCTTY = 0x540e;
const TIOCSPTLCK = 0x40045431;
const TIOCGPTPEER = 0x5441;
const TIOCVHANGUP = 0x5437;
const O_ACCMODE = 3;
const O_NONBLOCK = 0o4000;
const O_LARGEFILE = 0o100000;

/**
 * Emits the creation of a hung-up pty slave fd into `scratchSlot`: a new
 * pty, its slave opened through the master (TIOCGPTPEER) with `flags`,
 * hung up; the master (kept by `keepMaster`, which must leave it open) is
 * closed with the fd phase's temporaries, which removes its /dev/pts node.
 */
export function emitHungUpTty(
  p: ProgramBuilder,
  flags: number,
  scratchSlot: number,
  keepMaster: () => number,
): void {
  p.op(SYS.open, [p.cstring("/dev/ptmx"), O_RDWR | O_NOCTTY | O_CLOEXEC, 0], {
    store: scratchSlot,
    comment: "a new pty, to hang up",
  });
  const master = keepMaster();
  p.op(SYS.ioctl, [master, TIOCSPTLCK, p.u64s([0n])], { comment: "unlockpt" });
  // Without O_CLOEXEC, which would show in its status flags (keep sets FD_CLOEXEC).
  p.op(SYS.ioctl, [master, TIOCGPTPEER, flags | O_NOCTTY], {
    store: scratchSlot,
    comment: "its slave",
  });
  p.op(SYS.ioctl, [{ slot: scratchSlot }, TIOCVHANGUP, 0], { comment: "hung up (TIOCVHANGUP)" });
}

/** What a terminal fd is, from its device number. */
export type TtyRole =
  | { role: "master"; index?: number }
  | { role: "slave"; index: number }
  | { role: "terminal" };

/** Classifies a terminal by its device numbers. */
export function ttyRole(major: number, minor: number): TtyRole {
  if (major === PTMX.major && minor === PTMX.minor) return { role: "master" };
  if (major >= PTS_MAJOR_FIRST && major <= PTS_MAJOR_LAST) {
    return { role: "slave", index: (major - PTS_MAJOR_FIRST) * 256 + minor };
  }
  return { role: "terminal" };
}

/** The pty index of a controlling terminal given as /proc/<pid>/stat tty_nr, or null. */
export function ptyIndexOfTtyNr(ttyNr: number): number | null {
  if (ttyNr === 0) return null;
  const major = (ttyNr >> 8) & 0xfff;
  const minor = (ttyNr & 0xff) | ((ttyNr >> 12) & 0xfff00);
  const r = ttyRole(major, minor);
  return r.role === "slave" ? r.index : null;
}

/**
 * Dump: the fdinfo extras of terminal fd `fd` of the frozen process `pid`
 * (device `major:minor`). Through a master, the bytes waiting in the pty
 * (typed but not read, or written but not read by the master) are read and
 * put back (`tty_queue.ts`); what cannot be is named for {@link checkTtys}.
 */
export function collectTty(
  pid: number,
  fd: number,
  major: number,
  minor: number,
): Record<string, string> {
  const role = ttyRole(major, minor);
  if (role.role === "terminal") {
    if (major !== DEV_TTY.major || minor !== DEV_TTY.minor) return { "tty-role": "terminal" };
    // /dev/tty: the terminal behind it (the opener's controlling terminal then).
    const dev = withTargetFd(pid, fd, terminalDevice);
    if (dev === "hung-up") return { "tty-role": "terminal", "tty-hung-up": "1" };
    const index = ptyIndexOfTtyNr(dev);
    return index === null
      ? { "tty-role": "terminal" }
      : { "tty-role": "devtty", "devtty-index": String(index) };
  }
  return withTargetFd(pid, fd, (copy): Record<string, string> => {
    // One ioctl tells a hung-up fd (vhangup: EIO) and a line discipline other than N_TTY.
    const ldisc = lineDiscipline(copy);
    const odd: Record<string, string> = ldisc === "hung-up"
      ? { "tty-hung-up": "1" }
      : ldisc !== 0
      ? { "tty-ldisc": String(ldisc) }
      : {};
    if (role.role === "slave") {
      return {
        "tty-role": "slave",
        "pty-index": String(role.index),
        ...odd,
        ...(ldisc === 0 ? { "pty-unread": String(unreadBytes(copy)) } : {}),
      };
    }
    if (ldisc !== 0) return { "tty-role": "master", ...odd }; // refused: see checkTtys
    const s = readPtyState(copy);
    // The slave device's owner and mode (grantpt, chown by a login program).
    const slave = Deno.statSync(`/dev/pts/${s.index}`);
    // The slave closed by every holder: the master reads EIO (restore closes a slave again).
    // No room to write to the master with its input not full (else the look refuses): its
    // output is stopped (tcflow on the master).
    const revents = pollFd(copy, POLL.OUT);
    const look = takePtyQueues(copy, s.index, pid);
    const queue: Record<string, string> = { "pty-queue-look": "1" };
    if (revents & POLL.HUP) queue["pty-hup"] = "1";
    if (!(revents & POLL.OUT)) queue["pty-master-stopped"] = "1";
    if ("refused" in look) queue["pty-queue-refused"] = `${look.refused}\t${look.detail}`;
    else {
      if (look.queue) queue["pty-queue"] = encodePtyQueue(look.queue);
      if (look.slaveExclusive) queue["pty-slave-exclusive"] = "1";
      if (look.column) queue["pty-column"] = String(look.column);
    }
    return {
      ...queue,
      "pty-owner": `${slave.uid}:${slave.gid}:${(slave.mode ?? 0) & 0o7777}`,
      "tty-role": "master",
      "pty-index": String(s.index),
      "pty-termios": encodeBase64(s.termios),
      "pty-winsize": encodeBase64(s.winsize),
      "pty-packet": s.packet ? "1" : "0",
      "pty-locked": s.locked ? "1" : "0",
      "pty-exclusive": s.exclusive ? "1" : "0",
      "pty-unread": String(s.masterUnread),
    };
  });
}

/** A pseudo-terminal of the tree, re-created by the engine before the launch. */
export interface PlannedPty {
  /** N of /dev/pts/N. */
  index: number;
  /** The fd number the master is handed to the tree at. */
  transferFd: number;
  /** struct termios2 and struct winsize (base64), packet mode, lock, exclusive mode (the master's). */
  termios: string;
  winsize: string;
  packet: boolean;
  locked: boolean;
  exclusive: boolean;
  /** The slave's exclusive mode (TIOCEXCL through the slave). */
  slaveExclusive?: boolean;
  /** Every slave was closed again: the master reads EIO and polls POLLHUP. */
  hup?: boolean;
  /** The master's output was stopped (tcflow(master, TCOOFF)): writes to it wait. */
  masterStopped?: boolean;
  /** The output column modulo 8 (absent: 0), see tty_queue.ts. */
  column?: number;
  /** Owner and mode of /dev/pts/<index> (absent in images from before they were recorded). */
  owner?: { uid: number; gid: number; mode: number };
  /** Bytes waiting in its queues, put back before the tree runs (absent: none). */
  queue?: PtyQueue;
}

function ownerOf(text: string | undefined): Pick<PlannedPty, "owner"> {
  const m = text?.match(/^(\d+):(\d+):(\d+)$/);
  return m ? { owner: { uid: Number(m[1]), gid: Number(m[2]), mode: Number(m[3]) } } : {};
}

/** The pty index of a terminal fd, or undefined for other fds. */
export function indexOf(f: FdInfo): number | undefined {
  return f.kind === "tty" && f.extra["pty-index"] !== undefined
    ? Number(f.extra["pty-index"])
    : undefined;
}

/**
 * The ptys whose master is held inside the tree, each with a transfer fd
 * number from `firstTransferFd` on.
 */
export function planPtys(images: readonly ProcessImage[], firstTransferFd: number): PlannedPty[] {
  const out = new Map<number, PlannedPty>();
  for (const p of images) {
    for (const f of p.fds) {
      if (f.excluded || f.extra["tty-role"] !== "master" || unusable(f)) continue;
      const index = indexOf(f)!;
      if (out.has(index)) continue;
      out.set(index, {
        index,
        transferFd: firstTransferFd + out.size,
        termios: f.extra["pty-termios"],
        winsize: f.extra["pty-winsize"],
        packet: f.extra["pty-packet"] === "1",
        locked: f.extra["pty-locked"] === "1",
        exclusive: f.extra["pty-exclusive"] === "1",
        ...(f.extra["pty-slave-exclusive"] === "1" ? { slaveExclusive: true } : {}),
        ...(f.extra["pty-hup"] === "1" ? { hup: true } : {}),
        ...(f.extra["pty-master-stopped"] === "1" ? { masterStopped: true } : {}),
        ...(f.extra["pty-column"] ? { column: Number(f.extra["pty-column"]) % 8 } : {}),
        ...ownerOf(f.extra["pty-owner"]),
        ...(f.extra["pty-queue"] ? { queue: decodePtyQueue(f.extra["pty-queue"]) } : {}),
      });
    }
  }
  return [...out.values()];
}

/**
 * A pty slave fd hung up whose pty is gone (its /dev/pts node removed: the
 * master was closed), in the initial user namespace (TIOCVHANGUP needs
 * CAP_SYS_ADMIN there): restored hung up (see the module comment).
 */
function hungUpGone(f: FdInfo): boolean {
  return f.extra["tty-hung-up"] === "1" && f.extra["tty-role"] === "slave" &&
    f.target.startsWith("/dev/pts/") && f.target.endsWith(" (deleted)") && inInitialUserNs();
}

/** A terminal fd hung up, or on a line discipline other than N_TTY: refused. */
function unusable(f: FdInfo): boolean {
  return f.extra["tty-hung-up"] === "1" || f.extra["tty-ldisc"] !== undefined;
}

/**
 * The pty index of `p`'s controlling terminal when the restore gives it
 * back: its session leader is in the tree (`byPid`) with the same
 * controlling terminal, a pty of the tree (`inTree`). Otherwise null.
 */
function restoredCtty(
  p: ProcessImage,
  byPid: ReadonlyMap<number, ProcessImage>,
  inTree: ReadonlySet<number>,
): number | null {
  const leader = byPid.get(p.sid);
  if (!p.ctty || !leader?.ctty || leader.ctty.ttyNr !== p.ctty.ttyNr) return null;
  const index = ptyIndexOfTtyNr(p.ctty.ttyNr);
  return index !== null && inTree.has(index) ? index : null;
}

/**
 * Reports every terminal of the tree to the restorability table: ptys of
 * the tree are saved with the bytes waiting in them (unless their master's
 * look refused them), /dev/tty when it is its holder's controlling terminal
 * restored with the tree; other terminals, and controlling terminals that
 * do not come back, need `--shell-job` (a session leader's is refused);
 * hung-up terminal fds and line disciplines other than N_TTY are refused.
 */
export function checkTtys(images: readonly ProcessImage[], refusals: Refusals): void {
  const inTree = new Set(planPtys(images, 0).map((p) => p.index));
  const byPid = new Map(images.map((p) => [p.pid, p]));
  const masters = new Map<number, Record<string, string>>();
  for (const p of images) {
    for (const f of p.fds) {
      const index = indexOf(f);
      if (!f.excluded && index !== undefined && f.extra["tty-role"] === "master") {
        masters.set(index, f.extra);
      }
    }
  }
  for (const p of images) {
    for (const f of p.fds) {
      if (f.kind !== "tty" || f.excluded) continue;
      const where = `process ${p.pid} fd ${f.fd} (${f.target})`;
      const index = indexOf(f);
      const role = f.extra["tty-role"];
      if (role === undefined) continue; // an image from before terminals were described
      if (hungUpGone(f)) {
        refusals.use("tty.hung-up-gone", where);
        continue;
      }
      if (f.extra["tty-hung-up"] === "1") {
        refusals.use("tty.hung-up", where);
        continue;
      }
      if (f.extra["tty-ldisc"] !== undefined) {
        refusals.use("tty.ldisc", where, `line discipline ${f.extra["tty-ldisc"]}, not N_TTY`);
        continue;
      }
      if (role === "devtty") {
        const real = Number(f.extra["devtty-index"]);
        if (restoredCtty(p, byPid, inTree) === real) refusals.use("tty.devtty", where);
        else if (inTree.has(real)) {
          refusals.use(
            "tty.devtty-other",
            where,
            `/dev/pts/${real} is not its controlling terminal restored with the tree`,
          );
        } else refusals.use("tty.external", where);
        continue;
      }
      if (index !== undefined && inTree.has(index)) {
        refusals.use("tty.pty", where);
        const master = masters.get(index)!;
        if (master["pty-queue-look"] === "1") {
          if (role === "master") checkQueue(master, where, refusals);
        } else if (Number(f.extra["pty-unread"] ?? 0) > 0) {
          refusals.add(
            `${where}: ${f.extra["pty-unread"]} bytes wait in it, not saved in this image`,
          );
        }
      } else {
        refusals.use("tty.external", where);
      }
    }
    const ctty = p.ctty;
    if (ctty && ctty.ttyNr !== 0 && p.sid === p.pid) {
      const index = ptyIndexOfTtyNr(ctty.ttyNr);
      if (index === null || !inTree.has(index)) {
        refusals.use(
          "tty.external-ctty",
          `process ${p.pid} (session leader)`,
          "its controlling terminal is outside the tree",
        );
      } else if (ctty.fgPgrp > 0 && !images.some((x) => x.pgid === ctty.fgPgrp)) {
        refusals.use(
          "tty.fg-group-gone",
          `process ${p.pid} (session leader)`,
          `the foreground group ${ctty.fgPgrp} of /dev/pts/${index} has no process in the tree`,
        );
      }
    } else if (ctty && ctty.ttyNr !== 0 && restoredCtty(p, byPid, inTree) === null) {
      const why = byPid.has(p.sid)
        ? "its controlling terminal is outside the tree"
        : `its session leader ${p.sid} is outside the tree`;
      refusals.use("tty.external", `process ${p.pid} (${why})`);
    }
  }
}

const QUEUE_REFUSALS: readonly PtyQueueRefusal[] = [
  "tty.ldisc",
  "tty.pty-packet-status",
  "tty.pty-output-blocked",
  "tty.pty-input-full",
  "tty.pty-slave-unopened",
];

/** Reports what a master's look found in its pty's queues. */
function checkQueue(master: Record<string, string>, where: string, refusals: Refusals): void {
  const refused = master["pty-queue-refused"];
  if (refused !== undefined) {
    const [id, detail] = refused.split("\t");
    if ((QUEUE_REFUSALS as readonly string[]).includes(id)) {
      refusals.use(id as SupportId, where, detail);
    } else refusals.add(`${where}: its queued bytes were refused (${refused})`);
  } else if (master["pty-queue"] !== undefined) {
    refusals.use(inInitialUserNs() ? "tty.pty-queued" : "tty.pty-queued-rootless", where);
  }
}

/**
 * Restore plan of a terminal fd: a pty of the tree from its planned master;
 * `/dev/tty` reopened, or the restorer's stdio fd `stdio`; a terminal
 * outside the tree from `outside` (outside.ts `outsideSource`).
 */
export function planTty(
  f: FdInfo,
  stdio: number,
  ptys: readonly PlannedPty[],
  outside: FdSource | string = { kind: "inherit", from: stdio },
): FdSource | string {
  if (hungUpGone(f)) {
    return { kind: "hungup-tty", flags: f.flags & (O_ACCMODE | O_NONBLOCK | O_LARGEFILE) };
  }
  if (f.extra["tty-role"] === "devtty") {
    // checkTtys let it through: its holder's controlling terminal by the time fds are opened.
    const real = Number(f.extra["devtty-index"]);
    if (ptys.some((p) => p.index === real)) {
      return { kind: "open", path: "/dev/tty", flags: f.flags & ~O_CLOEXEC };
    }
    return { kind: "inherit", from: stdio };
  }
  const index = indexOf(f);
  const pty = index === undefined ? undefined : ptys.find((p) => p.index === index);
  if (!pty) return outside;
  if (f.extra["tty-role"] === "master") return { kind: "inherit", from: pty.transferFd };
  return { kind: "open", path: `/dev/pts/${pty.index}`, flags: (f.flags & ~O_CLOEXEC) | O_NOCTTY };
}

/**
 * Ops at the start of a session leader's program (after setsid, before it
 * forks): take back the controlling terminal if it is a pty of the tree,
 * so the children inherit it.
 */
export function emitControllingTty(
  p: ProgramBuilder,
  proc: ProcessImage,
  ptys: readonly PlannedPty[],
  scratchSlot: number,
): void {
  if (proc.sid !== proc.pid || !proc.ctty) return;
  const index = ptyIndexOfTtyNr(proc.ctty.ttyNr);
  if (index === null || !ptys.some((x) => x.index === index)) return;
  p.op(SYS.open, [p.cstring(`/dev/pts/${index}`), O_RDWR | O_NOCTTY | O_CLOEXEC, 0], {
    store: scratchSlot,
    comment: `controlling terminal /dev/pts/${index}`,
  });
  p.op(SYS.ioctl, [{ slot: scratchSlot }, TIOCSCTTY, 0], { comment: "TIOCSCTTY" });
  p.op(SYS.close, [{ slot: scratchSlot }]);
}

/**
 * The terminal whose foreground process group the engine sets (by
 * injection into the session leader, once every group exists), or null.
 */
export function foregroundGroupOf(
  proc: ProcessImage,
  ptys: readonly PlannedPty[],
): { path: string; pgrp: number } | null {
  if (proc.sid !== proc.pid || !proc.ctty || proc.ctty.fgPgrp <= 0) return null;
  const index = ptyIndexOfTtyNr(proc.ctty.ttyNr);
  if (index === null || !ptys.some((x) => x.index === index)) return null;
  return { path: `/dev/pts/${index}`, pgrp: proc.ctty.fgPgrp };
}

/** The raw termios2 and winsize of a planned pty. */
export function ptyStateBytes(p: PlannedPty): { termios: Uint8Array; winsize: Uint8Array } {
  return { termios: decodeBase64(p.termios), winsize: decodeBase64(p.winsize) };
}
