/**
 * The byte queues of a pseudo-terminal, seen from cryo: the slave opened
 * beside its master (TIOCGPTPEER), zero-timeout polls, reads until the
 * line discipline has nothing more, bytes handed to the slave's line
 * discipline one at a time (TIOCSTI, synchronous: processed under the
 * termios of that moment), writes that wait for room, and the
 * `struct termios2` codec the queue logic edits.
 *
 * @module
 */

import { cstr, rawSyscall, syscall, SyscallError, syscallNum } from "./libc.ts";
import { Errno } from "./errno.ts";
import { SYS } from "./sysno.ts";
import { TERMIOS2_BYTES, TTY_IOCTL } from "./tty.ts";

const TIOCGPTPEER = 0x5441;
const TIOCSTI = 0x5412;
const TCFLSH = 0x540b;
const TCIFLUSH = 0;
const O_RDWR = 2;
const O_NOCTTY = 0o400;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

/** poll(2) event bits. */
export const POLL = { IN: 1, PRI: 2, OUT: 4, ERR: 8, HUP: 16 } as const;

/** Indices into `c_cc`. */
export const VCC = {
  VINTR: 0,
  VQUIT: 1,
  VERASE: 2,
  VKILL: 3,
  VEOF: 4,
  VTIME: 5,
  VMIN: 6,
  VSTART: 8,
  VSTOP: 9,
  VSUSP: 10,
  VEOL: 11,
  VREPRINT: 12,
  VDISCARD: 13,
  VWERASE: 14,
  VLNEXT: 15,
  VEOL2: 16,
} as const;

/** `c_lflag` bits. */
export const LFLAG = {
  ISIG: 0o1,
  ICANON: 0o2,
  ECHO: 0o10,
  ECHOE: 0o20,
  ECHOK: 0o40,
  ECHONL: 0o100,
  TOSTOP: 0o400,
  ECHOCTL: 0o1000,
  ECHOPRT: 0o2000,
  ECHOKE: 0o4000,
  IEXTEN: 0o100000,
  EXTPROC: 0o200000,
} as const;

/** `c_oflag` OPOST. */
export const OPOST = 1;
/** `c_oflag` TAB3 (XTABS): a TAB written becomes spaces up to the next multiple of 8. */
export const TAB3 = 0o14000;

/** struct termios2, decoded. */
export interface Termios2 {
  iflag: number;
  oflag: number;
  cflag: number;
  lflag: number;
  line: number;
  /** 19 control characters. */
  cc: number[];
  ispeed: number;
  ospeed: number;
}

/** Decodes a raw struct termios2 (44 bytes). */
export function decodeTermios2(b: Uint8Array): Termios2 {
  const dv = new DataView(b.buffer, b.byteOffset, TERMIOS2_BYTES);
  return {
    iflag: dv.getUint32(0, true),
    oflag: dv.getUint32(4, true),
    cflag: dv.getUint32(8, true),
    lflag: dv.getUint32(12, true),
    line: b[16],
    cc: [...b.subarray(17, 36)],
    ispeed: dv.getUint32(36, true),
    ospeed: dv.getUint32(40, true),
  };
}

/** Encodes a struct termios2. */
export function encodeTermios2(t: Termios2): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(TERMIOS2_BYTES);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, t.iflag >>> 0, true);
  dv.setUint32(4, t.oflag >>> 0, true);
  dv.setUint32(8, t.cflag >>> 0, true);
  dv.setUint32(12, t.lflag >>> 0, true);
  b[16] = t.line;
  b.set(t.cc.slice(0, 19), 17);
  dv.setUint32(36, t.ispeed >>> 0, true);
  dv.setUint32(40, t.ospeed >>> 0, true);
  return b;
}

/** The termios of the pty whose master (or slave) is `fd`, raw. */
export function getTermios2(fd: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(TERMIOS2_BYTES);
  syscall(SYS.ioctl, fd, TTY_IOCTL.TCGETS2, b);
  return b;
}

/** Sets the termios (TCSETS2: at once, nothing flushed). */
export function setTermios2(fd: number, raw: Uint8Array): void {
  syscall(SYS.ioctl, fd, TTY_IOCTL.TCSETS2, raw);
}

/** Packet mode of master `fd` on or off (turning it on clears a pending status). */
export function setPacketMode(fd: number, on: boolean): void {
  syscall(SYS.ioctl, fd, TTY_IOCTL.TIOCPKT, new Int32Array([on ? 1 : 0]));
}

/** Opens the slave of master `fd` in cryo: read-write, no controlling tty, non-blocking. */
export function openPeer(master: number): number {
  return syscallNum(SYS.ioctl, master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
}

/**
 * Discards the bytes waiting to be read on master `master`, those still on
 * their way to its line discipline included (TCIFLUSH, synchronous).
 */
export function discardMasterInput(master: number): void {
  syscall(SYS.ioctl, master, TCFLSH, TCIFLUSH);
}

/** The revents of a zero-timeout poll of `fd` for `events` (or with a timeout in ms). */
export function pollFd(fd: number, events: number, timeoutMs = 0): number {
  const pfd = new Int16Array(4); // struct pollfd: int fd; short events; short revents
  new Int32Array(pfd.buffer, 0, 1)[0] = fd;
  pfd[2] = events;
  const r = rawSyscall(SYS.poll, pfd, 1, timeoutMs);
  if (r < 0n) throw new SyscallError("poll", [fd, events], Number(-r));
  return pfd[3];
}

/** Bytes waiting on terminal `fd` (FIONREAD: complete lines only in canonical mode). */
export function inputCount(fd: number): number {
  const v = new Int32Array(1);
  syscall(SYS.ioctl, fd, TTY_IOCTL.FIONREAD, v);
  return v[0];
}

/** One read of at most `max` bytes; null when it would block (EAGAIN). */
export function readOnce(fd: number, max: number): Uint8Array | null {
  const buf = new Uint8Array(max);
  const r = rawSyscall(SYS.read, fd, buf, max);
  if (r === -BigInt(Errno.EAGAIN)) return null;
  if (r < 0n) throw new SyscallError("read", [fd, max], Number(-r));
  return buf.slice(0, Number(r));
}

/** Hands `bytes` to the line discipline of terminal `fd`, one TIOCSTI each (needs CAP_SYS_ADMIN). */
export function injectInput(fd: number, bytes: Uint8Array): void {
  const one = new Uint8Array(1);
  for (const b of bytes) {
    one[0] = b;
    syscall(SYS.ioctl, fd, TIOCSTI, one);
  }
}

/**
 * Writes all of `bytes` to non-blocking `fd`, waiting (poll) for room;
 * throws when no room comes within `timeoutMs`.
 */
export function writeAllWaiting(fd: number, bytes: Uint8Array, timeoutMs: number): void {
  let off = 0;
  const deadline = Date.now() + timeoutMs;
  while (off < bytes.length) {
    const rest = bytes.subarray(off);
    const r = rawSyscall(SYS.write, fd, rest, rest.length);
    if (r > 0n) {
      off += Number(r);
      continue;
    }
    if (r < 0n && r !== -BigInt(Errno.EAGAIN)) {
      throw new SyscallError("write", [fd, rest.length], Number(-r));
    }
    if (Date.now() > deadline) {
      throw new Error(`write: no room for ${bytes.length - off} bytes after ${timeoutMs} ms`);
    }
    pollFd(fd, POLL.OUT, 50);
  }
}

/**
 * Probe: opens a pty pair and hands its slave one byte with TIOCSTI.
 * Returns 0n, or the -errno of the call that failed.
 */
export function tiocstiProbe(): bigint {
  const master = rawSyscall(SYS.open, cstr("/dev/ptmx"), O_RDWR | O_NOCTTY | O_CLOEXEC, 0);
  if (master < 0n) return master;
  try {
    const unlock = rawSyscall(SYS.ioctl, master, TTY_IOCTL.TIOCSPTLCK, new Int32Array([0]));
    if (unlock < 0n) return unlock;
    const slave = rawSyscall(
      SYS.ioctl,
      master,
      TIOCGPTPEER,
      O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC,
    );
    if (slave < 0n) return slave;
    const r = rawSyscall(SYS.ioctl, slave, TIOCSTI, new Uint8Array([0x61]));
    rawSyscall(SYS.close, slave);
    return r < 0n ? r : 0n;
  } finally {
    rawSyscall(SYS.close, master);
  }
}
