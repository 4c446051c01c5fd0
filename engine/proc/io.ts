/**
 * Synchronous primitives for reading /proc with typed errors: text, bytes,
 * links, numeric directory listings and stat.
 *
 * @module
 */

import type { FileIdentity } from "../model.ts";
import { translateProcError } from "./errors.ts";
import { changeTimeNs } from "../../ffi/statx.ts";
import { cstr, rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";

/** Path of `/proc/<pid>/<rel>`, or `/proc/<pid>/task/<tid>/<rel>` when `tid` is given. */
export function procPath(pid: number, rel: string, tid?: number): string {
  return tid === undefined ? `/proc/${pid}/${rel}` : `/proc/${pid}/task/${tid}/${rel}`;
}

/** Runs `read` and converts any failure into a typed ProcError about `path`. */
export function procRead<T>(pid: number, path: string, read: () => T, tid?: number): T {
  try {
    return read();
  } catch (err) {
    throw translateProcError(err, pid, path, tid);
  }
}

/** Reads `/proc/<pid>/<rel>` (or the thread's) as text. */
export function readProcText(pid: number, rel: string, tid?: number): string {
  const path = procPath(pid, rel, tid);
  return procRead(pid, path, () => Deno.readTextFileSync(path), tid);
}

/** The buffer of {@link readProcTextOnce} (a thread's status is ~1.5 KB). */
const ONCE_BYTES = 16384;
let onceBuf: Uint8Array<ArrayBuffer> | undefined;
const onceDecoder = new TextDecoder();
const O_RDONLY_CLOEXEC = 0o2000000;

/**
 * Reads `/proc/<pid>/<rel>` (or the thread's) as text, as
 * {@link readProcText} does, in four system calls: open, one `read` of up
 * to 16 KiB, a second `read` that returns 0 (the end: nothing was cut) and
 * close. `Deno.readTextFileSync` takes eleven for a /proc file (a stat,
 * whose size reads as 0, then reads of growing size: a threads-64
 * restore's 64 status read-backs were 700 calls). Any failure, or a text
 * that does not end within the buffer, is read again by
 * {@link readProcText} (its typed errors, any length).
 */
export function readProcTextOnce(pid: number, rel: string, tid?: number): string {
  const path = procPath(pid, rel, tid);
  const fd = Number(rawSyscall(SYS.open, cstr(path), O_RDONLY_CLOEXEC, 0));
  if (fd >= 0) {
    try {
      onceBuf ??= new Uint8Array(ONCE_BYTES);
      const n = Number(rawSyscall(SYS.read, fd, onceBuf, ONCE_BYTES));
      if (n >= 0 && n < ONCE_BYTES) {
        const text = onceDecoder.decode(onceBuf.subarray(0, n));
        if (rawSyscall(SYS.read, fd, onceBuf, ONCE_BYTES) === 0n) return text;
      }
    } finally {
      rawSyscall(SYS.close, fd);
    }
  }
  return readProcText(pid, rel, tid);
}

/** Reads `/proc/<pid>/<rel>` as bytes. */
export function readProcBytes(pid: number, rel: string, tid?: number): Uint8Array {
  const path = procPath(pid, rel, tid);
  return procRead(pid, path, () => Deno.readFileSync(path), tid);
}

/** readlink of `/proc/<pid>/<rel>`. */
export function readProcLink(pid: number, rel: string, tid?: number): string {
  const path = procPath(pid, rel, tid);
  return procRead(pid, path, () => Deno.readLinkSync(path), tid);
}

/** stat (following the link) of `/proc/<pid>/<rel>`. */
export function statProc(pid: number, rel: string, tid?: number): Deno.FileInfo {
  const path = procPath(pid, rel, tid);
  return procRead(pid, path, () => Deno.statSync(path), tid);
}

/** Numeric entry names of the directory `/proc/<pid>/<rel>`, ascending. */
export function readProcNumericDir(pid: number, rel: string, tid?: number): number[] {
  const path = procPath(pid, rel, tid);
  return procRead(pid, path, () => {
    const out: number[] = [];
    for (const e of Deno.readDirSync(path)) {
      const n = Number(e.name);
      if (Number.isInteger(n) && n >= 0 && e.name !== "") out.push(n);
    }
    return out.sort((a, b) => a - b);
  }, tid);
}

/**
 * Builds a {@link FileIdentity} from a path and its stat result; with
 * `statPath` (the path that was stat'ed, e.g. a /proc link), also its
 * change time in ns (one statx; left out if the file is gone meanwhile).
 */
export function fileIdentityOf(path: string, info: Deno.FileInfo, statPath?: string): FileIdentity {
  const id: FileIdentity = {
    path,
    dev: info.dev,
    ino: info.ino ?? 0,
    size: info.size,
    mtimeMs: info.mtime?.getTime() ?? 0,
  };
  if (info.isCharDevice || info.isBlockDevice) id.rdev = info.rdev ?? 0;
  if (statPath !== undefined) {
    const ctime = changeTimeNs(statPath);
    if (typeof ctime === "string") id.ctimeNs = ctime;
  }
  return id;
}

/** Parses a hex string (with or without `0x`) into a bigint. */
export function hexToBigInt(text: string): bigint {
  const t = text.trim();
  return BigInt(t.startsWith("0x") ? t : `0x${t}`);
}
