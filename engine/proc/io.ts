/**
 * Synchronous primitives for reading /proc with typed errors: text, bytes,
 * links, numeric directory listings and stat.
 *
 * @module
 */

import type { FileIdentity } from "../model.ts";
import { translateProcError } from "./errors.ts";
import { changeTimeNs } from "../../ffi/statx.ts";

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
