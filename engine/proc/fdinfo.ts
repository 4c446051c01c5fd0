/**
 * Reader of /proc/<pid>/fdinfo/<fd>, with decoders for the per-kind lines
 * (eventfd, epoll, timerfd, signalfd, inotify).
 *
 * @module
 */

import { ProcFormatError } from "./errors.ts";
import { procPath, readProcText } from "./io.ts";

/** The O_CLOEXEC bit as it appears in fdinfo flags. */
export const O_CLOEXEC = 0o2000000;

/**
 * Keys whose lines repeat (one per epoll target, inotify watch, fanotify
 * mark, file lock); their values are always arrays in
 * {@link FdInfoRecord.extra}, in file order.
 */
export const REPEATED_FDINFO_KEYS: ReadonlySet<string> = new Set([
  "tfd",
  "inotify",
  "fanotify",
  "lock",
]);

/** A parsed fdinfo file. */
export interface FdInfoRecord {
  /** File position (0 past 2^53: the exact decimal is then in extra.pos). */
  pos: number;
  /** Open flags as in /proc (octal there), INCLUDING O_CLOEXEC if set. */
  flags: number;
  /** True when O_CLOEXEC is set. */
  cloexec: boolean;
  /** Mount id of the file (see mountinfo). */
  mntId: number;
  /** Inode number (kernels >= 5.14), 0 when absent. */
  ino: number;
  /**
   * Every other line as key -> value (value trimmed). Keys of
   * {@link REPEATED_FDINFO_KEYS} map to arrays of their lines' values, and
   * any other key seen more than once becomes an array too. For lines like
   * "inotify wd:1 ino:..." the key is the first word ("inotify") and the
   * value the rest ("wd:1 ino:...").
   */
  extra: Record<string, string | string[]>;
}

const WORD_PREFIXED = /^(inotify|fanotify)\s+(.*)$/;

/** Parses the text of an fdinfo file. */
export function parseFdInfo(text: string, pid = 0, path = "fdinfo"): FdInfoRecord {
  let pos: number | undefined;
  let flags: number | undefined;
  let mntId = 0;
  let ino = 0;
  const extra: Record<string, string | string[]> = {};
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let key: string;
    let value: string;
    const w = WORD_PREFIXED.exec(line);
    if (w) {
      key = w[1];
      value = w[2].trim();
    } else {
      const colon = line.indexOf(":");
      if (colon <= 0) continue;
      key = line.slice(0, colon).trim();
      value = line.slice(colon + 1).trim();
    }
    switch (key) {
      case "pos":
        pos = Number(value);
        // Offsets past 2^53 (ext4 directory hash cookies, seeks far into a
        // device) keep their exact decimal text in extra.pos; pos is 0.
        if (!Number.isSafeInteger(pos)) {
          extra.pos = value;
          pos = 0;
        }
        continue;
      case "flags":
        flags = parseInt(value, 8);
        continue;
      case "mnt_id":
        mntId = Number(value);
        continue;
      case "ino":
        ino = Number(value);
        continue;
    }
    const prev = extra[key];
    if (REPEATED_FDINFO_KEYS.has(key)) {
      if (Array.isArray(prev)) prev.push(value);
      else extra[key] = [value];
    } else if (prev === undefined) {
      extra[key] = value;
    } else if (Array.isArray(prev)) {
      prev.push(value);
    } else {
      extra[key] = [prev, value];
    }
  }
  if (pos === undefined || flags === undefined || Number.isNaN(flags)) {
    throw new ProcFormatError(pid, path, "no pos/flags lines");
  }
  return { pos, flags, cloexec: (flags & O_CLOEXEC) !== 0, mntId, ino, extra };
}

/** Reads /proc/<pid>/fdinfo/<fd>. */
export function readFdInfo(pid: number, fd: number): FdInfoRecord {
  const rel = `fdinfo/${fd}`;
  return parseFdInfo(readProcText(pid, rel), pid, procPath(pid, rel));
}

/** The value of an extra key as a list (empty when absent). */
export function extraList(info: FdInfoRecord, key: string): string[] {
  const v = info.extra[key];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** The value of an extra key as one string (first line when repeated). */
export function extraValue(info: FdInfoRecord, key: string): string | undefined {
  const v = info.extra[key];
  return Array.isArray(v) ? v[0] : v;
}

/** Splits "k1:v1 k2: v2 ..." into a record (values untouched, as strings). */
export function parseFdInfoPairs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/([A-Za-z_][\w-]*):\s*(\S+)/g)) out[m[1]] = m[2];
  return out;
}

/** The eventfd counter (eventfd-count is printed in hex), or undefined. */
export function eventfdCount(info: FdInfoRecord): bigint | undefined {
  const v = extraValue(info, "eventfd-count");
  return v === undefined ? undefined : BigInt(`0x${v}`);
}

/** One epoll target (a "tfd:" line). */
export interface EpollTarget {
  /** The watched fd number in the owning process. */
  tfd: number;
  /** Event mask (EPOLLIN=1, ...). */
  events: number;
  /** The user data word. */
  data: bigint;
  /** File position of the watched file. */
  pos: number;
  /** Inode of the watched file. */
  ino: number;
  /** Device of the watched file (kernel dev_t encoding). */
  sdev: number;
}

/** Decodes the "tfd:" lines of an epoll fd. */
export function epollTargets(info: FdInfoRecord): EpollTarget[] {
  return extraList(info, "tfd").map((line) => {
    const p = parseFdInfoPairs(`tfd: ${line}`);
    return {
      tfd: Number(p.tfd),
      events: parseInt(p.events, 16),
      data: BigInt(`0x${p.data}`),
      pos: Number(p.pos ?? 0),
      ino: parseInt(p.ino ?? "0", 16),
      sdev: parseInt(p.sdev ?? "0", 16),
    };
  });
}

/** One inotify watch (an "inotify wd:..." line). */
export interface InotifyWatch {
  /** Watch descriptor. */
  wd: number;
  /** Inode of the watched object. */
  ino: number;
  /** Device of the watched object (kernel dev_t encoding). */
  sdev: number;
  /** Event mask (IN_*). */
  mask: number;
  /** Ignored mask. */
  ignoredMask: number;
  /** Everything on the line, raw (fhandle-bytes, fhandle-type, f_handle). */
  fields: Record<string, string>;
}

/** Decodes the watch lines of an inotify fd. */
export function inotifyWatches(info: FdInfoRecord): InotifyWatch[] {
  return extraList(info, "inotify").map((line) => {
    const p = parseFdInfoPairs(line);
    return {
      wd: parseInt(p.wd, 16),
      ino: parseInt(p.ino, 16),
      sdev: parseInt(p.sdev, 16),
      mask: parseInt(p.mask, 16),
      ignoredMask: parseInt(p.ignored_mask ?? "0", 16),
      fields: p,
    };
  });
}

/** A timerfd's settings (values in nanoseconds). */
export interface TimerfdState {
  clockid: number;
  ticks: bigint;
  settimeFlags: number;
  valueNs: bigint;
  intervalNs: bigint;
}

function timespecNs(text: string | undefined): bigint {
  const m = /\((\d+),\s*(\d+)\)/.exec(text ?? "");
  return m ? BigInt(m[1]) * 1_000_000_000n + BigInt(m[2]) : 0n;
}

/** Decodes a timerfd's lines, or undefined when it is not one. */
export function timerfdState(info: FdInfoRecord): TimerfdState | undefined {
  const clock = extraValue(info, "clockid");
  if (clock === undefined) return undefined;
  return {
    clockid: Number(clock),
    ticks: BigInt(extraValue(info, "ticks") ?? "0"),
    settimeFlags: parseInt(extraValue(info, "settime flags") ?? "0", 8),
    valueNs: timespecNs(extraValue(info, "it_value")),
    intervalNs: timespecNs(extraValue(info, "it_interval")),
  };
}

/** The signal mask of a signalfd (bit n-1 = signal n), or undefined. */
export function signalfdMask(info: FdInfoRecord): bigint | undefined {
  const v = extraValue(info, "sigmask");
  return v === undefined ? undefined : BigInt(`0x${v}`);
}
