/**
 * Terminal ioctls (x86-64 numbers) on pseudo-terminals: termios2, window
 * size, packet mode, the slave lock, the pty index and queue lengths, the
 * line discipline, exclusive mode, the device behind /dev/tty, and opening
 * a pty master with a chosen index.
 *
 * On a pty master the termios and window-size ioctls act on its slave, so
 * cryo reads and sets a terminal's whole state through the master alone.
 *
 * @module
 */

import { cstr, rawSyscall, syscall, syscallNum } from "./libc.ts";
import { SYS } from "./sysno.ts";

/** ioctl request numbers used on terminals. */
export const TTY_IOCTL = {
  TCGETS2: 0x802c542an,
  TCSETS2: 0x402c542bn,
  TIOCGWINSZ: 0x5413,
  TIOCSWINSZ: 0x5414,
  TIOCOUTQ: 0x5411,
  FIONREAD: 0x541b,
  TIOCSCTTY: 0x540e,
  TIOCGPGRP: 0x540f,
  TIOCSPGRP: 0x5410,
  TIOCPKT: 0x5420,
  TIOCGPKT: 0x80045438n,
  TIOCGPTN: 0x80045430n,
  TIOCSPTLCK: 0x40045431n,
  TIOCGPTLCK: 0x80045439n,
  TIOCEXCL: 0x540c,
  TIOCGEXCL: 0x80045440n,
  TIOCGETD: 0x5424,
  TCXONC: 0x540a,
  TIOCGDEV: 0x80045432n,
} as const;

const EIO = 5;

/** sizeof(struct termios2). */
export const TERMIOS2_BYTES = 44;
/** sizeof(struct winsize). */
export const WINSIZE_BYTES = 8;

/** What cryo saves of a pseudo-terminal, read through its master. */
export interface PtyState {
  /** The pty index (N of /dev/pts/N). */
  index: number;
  /** struct termios2 of the slave, raw. */
  termios: Uint8Array;
  /** struct winsize, raw. */
  winsize: Uint8Array;
  /** Packet mode of the master. */
  packet: boolean;
  /** The slave is locked (TIOCSPTLCK). */
  locked: boolean;
  /** Exclusive mode of the slave (TIOCEXCL). */
  exclusive: boolean;
  /** Bytes the slave wrote that the master has not read. */
  masterUnread: number;
}

function ioctlInt(fd: number, req: number | bigint): number {
  const v = new Int32Array(1);
  syscall(SYS.ioctl, fd, req, v);
  return v[0];
}

/** Reads the state of the pty whose master is `fd` (a fd of this process). */
export function readPtyState(fd: number): PtyState {
  const termios = new Uint8Array(TERMIOS2_BYTES);
  syscall(SYS.ioctl, fd, TTY_IOCTL.TCGETS2, termios);
  const winsize = new Uint8Array(WINSIZE_BYTES);
  syscall(SYS.ioctl, fd, TTY_IOCTL.TIOCGWINSZ, winsize);
  return {
    index: ioctlInt(fd, TTY_IOCTL.TIOCGPTN),
    termios,
    winsize,
    packet: ioctlInt(fd, TTY_IOCTL.TIOCGPKT) !== 0,
    locked: ioctlInt(fd, TTY_IOCTL.TIOCGPTLCK) !== 0,
    exclusive: ioctlInt(fd, TTY_IOCTL.TIOCGEXCL) !== 0,
    masterUnread: ioctlInt(fd, TTY_IOCTL.FIONREAD),
  };
}

/** Bytes waiting to be read on a terminal fd (FIONREAD). */
export function unreadBytes(fd: number): number {
  return ioctlInt(fd, TTY_IOCTL.FIONREAD);
}

/**
 * The line discipline of terminal fd `fd` (TIOCGETD: 0 is N_TTY), or
 * "hung-up" when the fd was hung up (vhangup: every ioctl fails with EIO).
 */
export function lineDiscipline(fd: number): number | "hung-up" {
  const v = new Int32Array(1);
  const r = rawSyscall(SYS.ioctl, fd, TTY_IOCTL.TIOCGETD, v);
  if (r === -BigInt(EIO)) return "hung-up";
  if (r < 0n) syscall(SYS.ioctl, fd, TTY_IOCTL.TIOCGETD, v); // throws, naming the errno
  return v[0];
}

/**
 * The device number (as /proc/<pid>/stat's tty_nr encodes it) of the
 * terminal behind fd `fd` (TIOCGDEV: /dev/tty's real terminal), or
 * "hung-up" for a hung-up fd.
 */
export function terminalDevice(fd: number): number | "hung-up" {
  const v = new Uint32Array(1);
  const r = rawSyscall(SYS.ioctl, fd, TTY_IOCTL.TIOCGDEV, v);
  if (r === -BigInt(EIO)) return "hung-up";
  if (r < 0n) syscall(SYS.ioctl, fd, TTY_IOCTL.TIOCGDEV, v);
  return v[0];
}

/** Exclusive mode (TIOCGEXCL) of the terminal of fd `fd` (a master's is its own, not its slave's). */
export function isExclusive(fd: number): boolean {
  return ioctlInt(fd, TTY_IOCTL.TIOCGEXCL) !== 0;
}

/** Sets exclusive mode (TIOCEXCL) on the terminal of fd `fd`. */
export function setExclusive(fd: number): void {
  syscall(SYS.ioctl, fd, TTY_IOCTL.TIOCEXCL, 0);
}

/** Stops the output of the terminal of fd `fd` as `tcflow(fd, TCOOFF)` does. */
export function stopOutput(fd: number): void {
  syscall(SYS.ioctl, fd, TTY_IOCTL.TCXONC, 0 /* TCOOFF */);
}

/** Sets termios, window size and packet mode of the pty whose master is `fd`. */
export function applyPtyState(
  fd: number,
  s: Pick<PtyState, "termios" | "winsize" | "packet">,
): void {
  syscall(SYS.ioctl, fd, TTY_IOCTL.TCSETS2, s.termios);
  syscall(SYS.ioctl, fd, TTY_IOCTL.TIOCSWINSZ, s.winsize);
  syscall(SYS.ioctl, fd, TTY_IOCTL.TIOCPKT, new Int32Array([s.packet ? 1 : 0]));
}

/** Locks or unlocks the slave of the master `fd`. */
export function setPtyLock(fd: number, locked: boolean): void {
  syscall(SYS.ioctl, fd, TTY_IOCTL.TIOCSPTLCK, new Int32Array([locked ? 1 : 0]));
}

const O_RDWR = 2;
const O_NOCTTY = 0o400;
const O_CLOEXEC = 0o2000000;
/** How many pty masters may be opened while looking for one index. */
const MAX_PTY_ATTEMPTS = 4096;

/**
 * Opens `/dev/ptmx` until the kernel hands out pty `index` (it gives the
 * lowest free index, so the ones below are held open meanwhile and closed
 * afterwards), unlocks its slave and returns the master (O_CLOEXEC), or
 * null when that index is in use.
 */
export function openPtyMaster(index: number): number | null {
  const held: number[] = [];
  try {
    for (let i = 0; i < MAX_PTY_ATTEMPTS; i++) {
      const fd = syscallNum(SYS.open, cstr("/dev/ptmx"), O_RDWR | O_NOCTTY | O_CLOEXEC, 0);
      const got = ioctlInt(fd, TTY_IOCTL.TIOCGPTN);
      if (got === index) {
        setPtyLock(fd, false);
        return fd;
      }
      held.push(fd);
      if (got > index) return null;
    }
    return null;
  } finally {
    for (const fd of held) rawSyscall(SYS.close, fd);
  }
}
