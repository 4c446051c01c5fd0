/**
 * Bytes waiting in a pseudo-terminal of the tree: input the slave side has
 * not read (written to the master, already through the slave's input
 * processing) and output the master has not read (written to the slave,
 * already through its output processing).
 *
 * Dump looks through a copy of the master and a slave cryo opens beside it
 * (TIOCGPTPEER), with packet mode off meanwhile (so neither the reads nor
 * the termios changes touch its status byte) and the exact termios put back
 * afterwards. In canonical mode the complete lines are read one canonical
 * read each — with input processing, echo and signals off, so bytes still
 * on their way to the line discipline are not processed twice — and then,
 * switched to non-canonical, the partial line. The master's queue is read
 * as it is (a master's own termios are always raw). Everything is put back
 * at once, so a tree left running finds the same bytes:
 *
 * - output: written to the slave with OPOST off, so it is not processed
 *   again and lands in the master's queue unchanged;
 * - input, non-canonical: handed to the line discipline byte by byte
 *   (TIOCSTI, processed synchronously under a raw termios);
 * - input, canonical: the same, under a canonical termios with nothing but
 *   newline, EOF and literal-next special: each line's inner special bytes
 *   are escaped with literal-next, its terminator (newline, EOL, EOL2) is
 *   sent as is, a line ended by EOF gets an EOF again; the partial line
 *   follows unterminated. The reader then gets the same lines, one per
 *   canonical read, and the same partial line to edit.
 *
 * Restore does the same put-back on the re-created pty before the tree
 * runs, keeping its slave open until the tree is released (a last slave
 * closing would show the master a hang-up).
 *
 * Refused (before anything is touched): a packet-mode status byte not read
 * yet (reading it would consume it), a slave never opened (its queue cannot
 * be read without opening it, and closing it again would show the master a
 * hang-up), a slave whose line discipline is not N_TTY (its state is not
 * readable, and a restore would give N_TTY), output stopped or a master
 * buffer full (the bytes could not be written back), an input queue at the
 * line discipline's limit (more bytes may wait before it, not processed
 * yet). The look also reads the slave's exclusive mode (TIOCEXCL).
 *
 * The output column (where the line discipline's output processing thinks
 * the cursor is: it expands a TAB under TAB3, and starts the echo of a new
 * input line from it, which the echo of ERASE after a TAB counts from) is
 * not readable; modulo 8, which is all a TAB depends on, it is measured
 * once the master's queue is empty: a TAB written under OPOST|TAB3 comes
 * out as 8 - column % 8 spaces, and as many backspaces put the column back
 * exactly (discarded from the master's input by a TCIFLUSH, without
 * waiting for them). Restore writes column % 8 spaces into the new
 * pty (discarded the same way) before anything else.
 *
 * @module
 */

import {
  decodeTermios2,
  discardMasterInput,
  encodeTermios2,
  getTermios2,
  injectInput,
  inputCount,
  LFLAG,
  openPeer,
  OPOST,
  POLL,
  pollFd,
  readOnce,
  setPacketMode,
  setTermios2,
  TAB3,
  type Termios2,
  VCC,
  writeAllWaiting,
} from "../../ffi/pty_queue.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { withTargetFd } from "../../ffi/pidfd.ts";
import {
  isExclusive,
  lineDiscipline,
  setPtyLock,
  terminalDevice,
  TTY_IOCTL,
} from "../../ffi/tty.ts";
import { decodeBase64, encodeBase64 } from "../base64.ts";
import { ImageFormatError } from "../image/errors.ts";
import type { SupportId } from "../support.ts";
import { ptyIndexOfTtyNr } from "./tty.ts";

/** N_TTY_BUF_SIZE - 1: the most bytes the line discipline holds. */
const LDISC_MAX = 4095;
/** How long a put-back waits for room in the master's queue. */
const WRITE_TIMEOUT_MS = 10_000;
/** More lines than a 4096-byte buffer can hold means the reads never end. */
const MAX_LINES = 4097;

/** The bytes waiting in one pty. */
export interface PtyQueue {
  /** The slave was in canonical mode (and not EXTPROC): `lines` are complete lines. */
  canonical: boolean;
  /** Complete lines, each as one canonical read returns it (an EOF-ended line without the EOF). */
  lines: Uint8Array[];
  /** The partial line (canonical) or every input byte (non-canonical). */
  partial: Uint8Array;
  /** Bytes the master has not read. */
  output: Uint8Array;
}

/** Why a pty's queues are refused. */
export type PtyQueueRefusal = Extract<
  SupportId,
  | "tty.pty-packet-status"
  | "tty.pty-output-blocked"
  | "tty.pty-input-full"
  | "tty.pty-slave-unopened"
  | "tty.ldisc"
>;

/**
 * What a dump found in a pty: nothing, the queues (put back already), or a
 * refusal; and whether its slave is in exclusive mode (read through the
 * slave cryo opened: a master's TIOCGEXCL is the master's own).
 */
export type PtyQueueLook =
  | { queue: PtyQueue | null; slaveExclusive: boolean; column: number }
  | { refused: PtyQueueRefusal; detail: string };

function ioctlInt(fd: number, req: number | bigint): number {
  const v = new Int32Array(1);
  return rawSyscall(SYS.ioctl, fd, req, v) < 0n ? 0 : v[0];
}

/** Raw: no input or output processing, no echo, no signals, a read returns what there is. */
function rawOf(t: Termios2, keepCanon = false): Termios2 {
  const off = LFLAG.ISIG | LFLAG.ECHO | LFLAG.ECHOE | LFLAG.ECHOK | LFLAG.ECHONL |
    LFLAG.TOSTOP | LFLAG.ECHOCTL | LFLAG.ECHOPRT | LFLAG.ECHOKE | LFLAG.IEXTEN |
    (keepCanon ? 0 : LFLAG.ICANON | LFLAG.EXTPROC);
  const cc = [...t.cc];
  cc[VCC.VMIN] = 1;
  cc[VCC.VTIME] = 0;
  return { ...t, iflag: 0, oflag: t.oflag & ~OPOST, lflag: t.lflag & ~off, cc };
}

function isCanonical(t: Termios2): boolean {
  return (t.lflag & LFLAG.ICANON) !== 0 && (t.lflag & LFLAG.EXTPROC) === 0;
}

/** The bytes that end a canonical line under `t` besides EOF (0 is "disabled"). */
function terminators(t: Termios2): Set<number> {
  const out = new Set([0x0a]);
  if (t.cc[VCC.VEOL] !== 0) out.add(t.cc[VCC.VEOL]);
  if ((t.lflag & LFLAG.IEXTEN) && t.cc[VCC.VEOL2] !== 0) out.add(t.cc[VCC.VEOL2]);
  return out;
}

/**
 * The termios and bytes that rebuild `lines` and `partial` in an empty
 * canonical queue of a slave whose termios is `t`.
 */
export function canonicalFill(
  t: Termios2,
  lines: readonly Uint8Array[],
  partial: Uint8Array,
): { termios: Termios2; bytes: Uint8Array } {
  const ends = terminators(t);
  const free = [0x04, 0x16, 0x01, 0x02, 0x03, 0x05, 0x06, 0x07].filter((c) => !ends.has(c));
  const [eof, lnext] = free;
  const cc = new Array(19).fill(0);
  cc[VCC.VEOF] = eof;
  cc[VCC.VLNEXT] = lnext;
  cc[VCC.VEOL] = t.cc[VCC.VEOL];
  if (t.lflag & LFLAG.IEXTEN) cc[VCC.VEOL2] = t.cc[VCC.VEOL2];
  cc[VCC.VMIN] = 1;
  const termios: Termios2 = {
    ...t,
    iflag: 0,
    oflag: t.oflag & ~OPOST,
    lflag: LFLAG.ICANON | LFLAG.IEXTEN,
    cc,
  };
  const special = new Set([...ends, eof, lnext]);
  const out: number[] = [];
  const literal = (bytes: Uint8Array) => {
    for (const b of bytes) {
      if (special.has(b)) out.push(lnext);
      out.push(b);
    }
  };
  for (const line of lines) {
    const last = line.length ? line[line.length - 1] : -1;
    if (ends.has(last)) {
      literal(line.subarray(0, line.length - 1));
      out.push(last);
    } else {
      literal(line);
      out.push(eof);
    }
  }
  literal(partial);
  return { termios, bytes: new Uint8Array(out) };
}

/** Line-discipline slots the input takes (an EOF mark takes one). */
function inputSlots(q: PtyQueue, t: Termios2): number {
  const ends = terminators(t);
  let n = q.partial.length;
  for (const l of q.lines) n += l.length + (l.length && ends.has(l[l.length - 1]) ? 0 : 1);
  return n;
}

function readLines(slave: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  // A zero-timeout poll flushes bytes still on their way to the line discipline.
  while (pollFd(slave, POLL.IN) & POLL.IN) {
    const line = readOnce(slave, 8192);
    if (line === null) break;
    out.push(line);
    if (out.length > MAX_LINES) throw new Error("the pty's input never ends");
  }
  return out;
}

function readAll(fd: number, viaPoll: boolean): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let i = 0;; i++) {
    if (viaPoll && !(pollFd(fd, POLL.IN) & POLL.IN)) break;
    const b = readOnce(fd, 65536);
    if (b === null || b.length === 0) break;
    parts.push(b);
    if (i > 4096) throw new Error("the pty's queue never ends");
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) out.set(p, (off += p.length) - p.length);
  return out;
}

/** Puts `q` back into the empty queues of the pty (master `master`, slave `slave`), then sets `t`. */
function putBack(master: number, slave: number, q: PtyQueue, t: Uint8Array): void {
  const saved = decodeTermios2(t);
  setTermios2(master, encodeTermios2(rawOf(saved)));
  if (q.output.length) writeAllWaiting(slave, q.output, WRITE_TIMEOUT_MS);
  if (q.canonical) {
    const fill = canonicalFill(saved, q.lines, q.partial);
    setTermios2(master, encodeTermios2(fill.termios));
    injectInput(slave, fill.bytes);
  } else {
    injectInput(slave, q.partial);
  }
  setTermios2(master, t);
}

function isEmpty(q: PtyQueue): boolean {
  return q.lines.length === 0 && q.partial.length === 0 && q.output.length === 0;
}

/**
 * Whether any process cryo can see has /dev/pts/`index` open (by that path,
 * or as /dev/tty: its controlling terminal), looking at process `first`
 * (the master's holder) before all others.
 */
export function slaveOpenAnywhere(index: number, first: number): boolean {
  const path = `/dev/pts/${index}`;
  let want: Deno.FileInfo;
  try {
    want = Deno.statSync(path);
  } catch {
    return false;
  }
  const holds = (pid: string): boolean => {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(`/proc/${pid}/fd`)];
    } catch {
      return false; // gone, or not ours to read
    }
    for (const e of entries) {
      try {
        const link = Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`);
        if (link === "/dev/tty") {
          // Its controlling terminal, opened as /dev/tty: the terminal behind it.
          const dev = withTargetFd(Number(pid), Number(e.name), terminalDevice);
          if (dev !== "hung-up" && ptyIndexOfTtyNr(dev) === index) return true;
          continue;
        }
        if (link !== path) continue;
        const st = Deno.statSync(`/proc/${pid}/fd/${e.name}`);
        if (st.dev === want.dev && st.rdev === want.rdev) return true;
      } catch { /* closed meanwhile, or not ours to copy */ }
    }
    return false;
  };
  if (holds(String(first))) return true;
  for (const e of Deno.readDirSync("/proc")) {
    if (/^\d+$/.test(e.name) && e.name !== String(first) && holds(e.name)) return true;
  }
  return false;
}

/**
 * Dump: reads the queues of the pty whose master is `master` (a copy of
 * the frozen target's fd, pty `index`, held by process `pid`) and puts
 * them back as they were. Refusals are decided before anything is changed.
 */
export function takePtyQueues(master: number, index: number, pid: number): PtyQueueLook {
  const packet = ioctlInt(master, TTY_IOCTL.TIOCGPKT) !== 0;
  if (packet && (pollFd(master, POLL.PRI) & POLL.PRI)) {
    return { refused: "tty.pty-packet-status", detail: "a packet-mode status byte waits" };
  }
  // A slave closed by all shows the master a hang-up; one never opened does
  // not, and cryo's look (opening and closing it) would give it one.
  if (!(pollFd(master, 0) & POLL.HUP) && !slaveOpenAnywhere(index, pid)) {
    return { refused: "tty.pty-slave-unopened", detail: "no process ever opened its slave" };
  }
  const locked = ioctlInt(master, TTY_IOCTL.TIOCGPTLCK) !== 0;
  if (locked) setPtyLock(master, false);
  let slave: number;
  try {
    slave = openPeer(master);
  } finally {
    if (locked) setPtyLock(master, true);
  }
  try {
    const ldisc = lineDiscipline(slave);
    if (ldisc !== 0) {
      return { refused: "tty.ldisc", detail: `its slave's line discipline is ${ldisc}, not N_TTY` };
    }
    const slaveExclusive = isExclusive(slave);
    const t = getTermios2(master);
    const saved = decodeTermios2(t);
    if (!(pollFd(slave, POLL.OUT) & POLL.OUT)) {
      return {
        refused: "tty.pty-output-blocked",
        detail: "its output is stopped or the master's buffer is full",
      };
    }
    if (inputCount(slave) >= LDISC_MAX) {
      return { refused: "tty.pty-input-full", detail: `${LDISC_MAX} bytes wait in it` };
    }
    if (packet) setPacketMode(master, false);
    let q: PtyQueue;
    let column: number;
    try {
      const canonical = isCanonical(saved);
      let lines: Uint8Array[] = [];
      if (canonical) {
        setTermios2(master, encodeTermios2(rawOf(saved, true)));
        lines = readLines(slave);
      }
      setTermios2(master, encodeTermios2(rawOf(saved)));
      const partial = readAll(slave, false);
      const output = readAll(master, true);
      column = measureColumn(master, slave, saved);
      q = { canonical, lines, partial, output };
      putBack(master, slave, q, t);
    } finally {
      setTermios2(master, t);
      if (packet) setPacketMode(master, true);
    }
    if (inputSlots(q, saved) >= LDISC_MAX) {
      return { refused: "tty.pty-input-full", detail: `${inputSlots(q, saved)} bytes wait in it` };
    }
    return { queue: isEmpty(q) ? null : q, slaveExclusive, column };
  } finally {
    rawSyscall(SYS.close, slave);
  }
}

/** The slave's termios `t` with output processing reduced to OPOST (and `extra`), raw otherwise. */
function columnTermios(t: Termios2, extra = 0): Uint8Array {
  return encodeTermios2({ ...rawOf(t), oflag: OPOST | extra });
}

/**
 * Dump: the output column modulo 8 of the pty (master's queue empty, the
 * tree frozen), left as it was. The caller puts the termios back.
 */
function measureColumn(master: number, slave: number, t: Termios2): number {
  setTermios2(master, columnTermios(t, TAB3));
  // A TAB, then a mark that ends its spaces.
  writeAllWaiting(slave, new Uint8Array([0x09, 0x21]), WRITE_TIMEOUT_MS);
  const seen: number[] = [];
  while (seen.length < 9 && seen[seen.length - 1] !== 0x21) {
    if (!(pollFd(master, POLL.IN, WRITE_TIMEOUT_MS) & POLL.IN)) break;
    const b = readOnce(master, 9 - seen.length);
    if (b === null || b.length === 0) break;
    seen.push(...b);
  }
  const n = seen.length - 1;
  if (seen[n] !== 0x21 || n < 1 || seen.slice(0, n).some((b) => b !== 0x20)) {
    throw new Error("a TAB written to measure the pty's column did not come out as spaces");
  }
  // Backspaces put the column back; the master need not see them.
  writeAllWaiting(slave, new Uint8Array(n + 1).fill(0x08), WRITE_TIMEOUT_MS);
  discardMasterInput(master);
  return (8 - n) % 8;
}

/**
 * Restore: fills the freshly opened pty whose master is `master` (packet
 * mode off, nothing queued) — the output column (modulo 8) first, then the
 * queued bytes `q` — and sets termios `t`. Returns cryo's slave fd, to
 * close once the tree holds its own.
 */
export function refillPty(
  master: number,
  q: PtyQueue | undefined,
  column: number,
  t: Uint8Array,
): number {
  const slave = openPeer(master);
  try {
    if (column) {
      setTermios2(master, columnTermios(decodeTermios2(t)));
      writeAllWaiting(slave, new Uint8Array(column).fill(0x20), WRITE_TIMEOUT_MS);
      discardMasterInput(master);
    }
    if (q) putBack(master, slave, q, t);
    setTermios2(master, t);
    return slave;
  } catch (e) {
    rawSyscall(SYS.close, slave);
    throw e;
  }
}

/** The queue as an fdinfo extra (JSON with base64 bytes). */
export function encodePtyQueue(q: PtyQueue): string {
  return JSON.stringify({
    canonical: q.canonical,
    lines: q.lines.map(encodeBase64),
    partial: encodeBase64(q.partial),
    output: encodeBase64(q.output),
  });
}

/** Reads back {@link encodePtyQueue}; throws an ImageFormatError on anything else. */
export function decodePtyQueue(text: string): PtyQueue {
  let j;
  try {
    j = JSON.parse(text);
  } catch {
    j = null;
  }
  if (
    typeof j !== "object" || j === null || typeof j.canonical !== "boolean" ||
    !Array.isArray(j.lines) || j.lines.some((l: unknown) => typeof l !== "string") ||
    typeof j.partial !== "string" || typeof j.output !== "string"
  ) throw new ImageFormatError("", "malformed pty queue record");
  return {
    canonical: j.canonical,
    lines: j.lines.map((l: string) => decodeBase64(l)),
    partial: decodeBase64(j.partial),
    output: decodeBase64(j.output),
  };
}
