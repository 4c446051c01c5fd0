/**
 * Small per-process facts: cwd, root, exe, cmdline, environ, comm,
 * personality, timer slack.
 *
 * @module
 */

import type { DirAttrs, FileIdentity, ProcessImage } from "../model.ts";
import { pathTimes } from "../../ffi/statx.ts";
import { assertAlive } from "./errors.ts";
import {
  fileIdentityOf,
  procPath,
  readProcBytes,
  readProcLink,
  readProcText,
  statProc,
} from "./io.ts";

const DELETED = " (deleted)";

/** Device and inode of the cwd and root of a process; undefined if one cannot be stat'ed. */
export function readDirIds(pid: number): ProcessImage["dirIds"] {
  try {
    const id = (which: string) => {
      const st = statProc(pid, which);
      return { dev: st.dev, ino: st.ino ?? 0 };
    };
    return { cwd: id("cwd"), root: id("root") };
  } catch {
    return undefined;
  }
}

/**
 * Mode, owner and times of the cwd of `pid` when `cwd` (its readlink)
 * says it was deleted; undefined otherwise or when it cannot be stat'ed.
 */
export function readDeletedCwdAttrs(pid: number, cwd: string): DirAttrs | undefined {
  if (!cwd.endsWith(DELETED)) return undefined;
  try {
    const st = statProc(pid, "cwd");
    const times = pathTimes(procPath(pid, "cwd"));
    return {
      mode: (st.mode ?? 0o700) & 0o7777,
      uid: st.uid ?? 0,
      gid: st.gid ?? 0,
      ...(times ? { atime: times.atime, mtime: times.mtime } : {}),
    };
  } catch {
    return undefined;
  }
}

/** readlink of /proc/<pid>/cwd (ProcessGoneError for a zombie). */
export function readCwd(pid: number): string {
  return readProcLink(pid, "cwd");
}

/** readlink of /proc/<pid>/root. */
export function readRoot(pid: number): string {
  return readProcLink(pid, "root");
}

/** readlink of /proc/<pid>/exe (may end in " (deleted)"). */
export function readExe(pid: number): string {
  return readProcLink(pid, "exe");
}

/** Identity of the executable (path without " (deleted)"; stat of the open file). */
export function readExeIdentity(pid: number): FileIdentity {
  const link = readExe(pid);
  const path = link.endsWith(DELETED) ? link.slice(0, -DELETED.length) : link;
  return fileIdentityOf(path, statProc(pid, "exe"), procPath(pid, "exe"));
}

/** Splits NUL-separated bytes into strings (a trailing NUL ends the last one). */
export function splitNul(bytes: Uint8Array): string[] {
  if (bytes.byteLength === 0) return [];
  const text = new TextDecoder().decode(bytes);
  const parts = text.split("\0");
  if (parts[parts.length - 1] === "") parts.pop();
  return parts;
}

/** argv of the process from /proc/<pid>/cmdline ([] for kernel threads). */
export function readCmdline(pid: number): string[] {
  const bytes = readProcBytes(pid, "cmdline");
  if (bytes.byteLength === 0) assertAlive(pid, procPath(pid, "cmdline"));
  return splitNul(bytes);
}

/** The environment strings ("KEY=value") from /proc/<pid>/environ. */
export function readEnviron(pid: number): string[] {
  const bytes = readProcBytes(pid, "environ");
  if (bytes.byteLength === 0) assertAlive(pid, procPath(pid, "environ"));
  return splitNul(bytes);
}

/** comm of the process, or of thread `tid` (trailing newline removed). */
export function readComm(pid: number, tid?: number): string {
  const text = readProcText(pid, "comm", tid);
  return text.endsWith("\n") ? text.slice(0, -1) : text;
}

/** The personality flags (/proc/<pid>/personality is hex). */
export function readPersonality(pid: number): number {
  return parseInt(readProcText(pid, "personality").trim(), 16);
}

/** The timer slack in ns (/proc/<pid>/timerslack_ns). */
export function readTimerslackNs(pid: number): number {
  return Number(readProcText(pid, "timerslack_ns").trim());
}
