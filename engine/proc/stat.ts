/**
 * Reader of /proc/<pid>/stat (and /proc/<pid>/task/<tid>/stat).
 *
 * The comm field may contain spaces and parentheses, so fields are split
 * after the LAST ')'. The mm fields (start_code ... env_end) are only filled
 * in when the reader may ptrace the process (root here); they are 0 for
 * kernel threads and zombies.
 *
 * @module
 */

import type { Hex, MmFields } from "../model.ts";
import { ProcFormatError } from "./errors.ts";
import { procPath, readProcText } from "./io.ts";

/** The fields of /proc/<pid>/stat (numbering of proc(5) in comments). */
export interface ProcStat {
  /** (1) pid or tid. */
  pid: number;
  /** (2) comm, without the parentheses. */
  comm: string;
  /** (3) state letter: R, S, D, T, t, Z, X, I, ... */
  state: string;
  /** (4) parent pid. */
  ppid: number;
  /** (5) process group id. */
  pgrp: number;
  /** (6) session id. */
  session: number;
  /** (7) controlling terminal device number (0 if none). */
  ttyNr: number;
  /** (8) foreground process group of the terminal (-1 if none). */
  tpgid: number;
  /** (9) kernel PF_* flags. */
  flags: number;
  /** (10) minor faults. */
  minflt: number;
  /** (11) minor faults of waited-for children. */
  cminflt: number;
  /** (12) major faults. */
  majflt: number;
  /** (13) major faults of waited-for children. */
  cmajflt: number;
  /** (14) user time, clock ticks. */
  utime: number;
  /** (15) system time, clock ticks. */
  stime: number;
  /** (16) children user time. */
  cutime: number;
  /** (17) children system time. */
  cstime: number;
  /** (18) priority. */
  priority: number;
  /** (19) nice value. */
  nice: number;
  /** (20) number of threads. */
  numThreads: number;
  /** (22) start time after boot, clock ticks. */
  starttime: number;
  /** (23) virtual size in bytes. */
  vsize: bigint;
  /** (24) resident pages. */
  rss: number;
  /** (25) RLIMIT_RSS soft limit (2^64-1 when unlimited). */
  rsslim: bigint;
  /** (26) start of the text. */
  startCode: bigint;
  /** (27) end of the text. */
  endCode: bigint;
  /** (28) start (bottom) of the main stack. */
  startStack: bigint;
  /** (38) signal sent to the parent on exit. */
  exitSignal: number;
  /** (39) CPU last run on. */
  processor: number;
  /** (40) real-time priority. */
  rtPriority: number;
  /** (41) scheduling policy. */
  policy: number;
  /** (45) start of initialized and uninitialized data. */
  startData: bigint;
  /** (46) end of data. */
  endData: bigint;
  /** (47) start of the heap (brk area). The current brk is not in /proc. */
  startBrk: bigint;
  /** (48) start of argv strings. */
  argStart: bigint;
  /** (49) end of argv strings. */
  argEnd: bigint;
  /** (50) start of environment strings. */
  envStart: bigint;
  /** (51) end of environment strings. */
  envEnd: bigint;
  /** (52) exit status as waitpid reports it (for a zombie). */
  exitCode: number;
  /** All fields after comm as strings, index 0 = field (3). */
  raw: string[];
}

/** The PF_KTHREAD bit of {@link ProcStat.flags}. */
export const PF_KTHREAD = 0x00200000;

/** Parses the text of a stat file. */
export function parseStat(text: string, pid = 0, path = "stat"): ProcStat {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 0 || close < open) throw new ProcFormatError(pid, path, "no (comm)");
  const raw = text.slice(close + 2).trim().split(" ");
  if (raw.length < 50) throw new ProcFormatError(pid, path, `only ${raw.length + 2} fields`);
  const n = (field: number) => Number(raw[field - 3]);
  const b = (field: number) => BigInt(raw[field - 3]);
  return {
    pid: Number(text.slice(0, open).trim()),
    comm: text.slice(open + 1, close),
    state: raw[0],
    ppid: n(4),
    pgrp: n(5),
    session: n(6),
    ttyNr: n(7),
    tpgid: n(8),
    flags: n(9),
    minflt: n(10),
    cminflt: n(11),
    majflt: n(12),
    cmajflt: n(13),
    utime: n(14),
    stime: n(15),
    cutime: n(16),
    cstime: n(17),
    priority: n(18),
    nice: n(19),
    numThreads: n(20),
    starttime: n(22),
    vsize: b(23),
    rss: n(24),
    rsslim: b(25),
    startCode: b(26),
    endCode: b(27),
    startStack: b(28),
    exitSignal: n(38),
    processor: n(39),
    rtPriority: n(40),
    policy: n(41),
    startData: b(45),
    endData: b(46),
    startBrk: b(47),
    argStart: b(48),
    argEnd: b(49),
    envStart: b(50),
    envEnd: b(51),
    exitCode: n(52),
    raw,
  };
}

/** Reads /proc/<pid>/stat, or /proc/<pid>/task/<tid>/stat when `tid` is given. */
export function readStat(pid: number, tid?: number): ProcStat {
  return parseStat(readProcText(pid, "stat", tid), pid, procPath(pid, "stat", tid));
}

function hex(v: bigint): Hex {
  return `0x${v.toString(16)}`;
}

/**
 * The model's {@link MmFields} from a stat record. /proc does not show the
 * current program break: pass it (from an injected brk(0), exact) or let it
 * default to start_brk.
 */
export function mmFieldsOf(stat: ProcStat, brk: bigint = stat.startBrk): MmFields {
  return {
    startCode: hex(stat.startCode),
    endCode: hex(stat.endCode),
    startData: hex(stat.startData),
    endData: hex(stat.endData),
    startBrk: hex(stat.startBrk),
    brk: hex(brk),
    startStack: hex(stat.startStack),
    argStart: hex(stat.argStart),
    argEnd: hex(stat.argEnd),
    envStart: hex(stat.envStart),
    envEnd: hex(stat.envEnd),
  };
}
