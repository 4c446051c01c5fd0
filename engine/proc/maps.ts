/**
 * Reader of /proc/<pid>/maps: one record per virtual memory area, in
 * address order.
 *
 * @module
 */

import type { FileIdentity } from "../model.ts";
import {
  assertAlive,
  ProcEntryNotFoundError,
  ProcError,
  ProcFormatError,
  ProcPermissionError,
} from "./errors.ts";
import { fileIdentityOf, procPath, procRead, readProcText } from "./io.ts";

/** One line of /proc/<pid>/maps. */
export interface MapEntry {
  /** First address of the area. */
  start: bigint;
  /** Address just past the area. */
  end: bigint;
  /** Four characters: r/-, w/-, x/-, p (private) or s (shared). */
  perms: string;
  /** File offset of `start` (0 for anonymous areas). */
  offset: bigint;
  /** Device of the backing file as "major:minor" in hex, e.g. "fe:00". */
  dev: string;
  /** Inode of the backing file, 0 if none. */
  inode: number;
  /**
   * Pathname column as printed: "/usr/lib/...", "[heap]", "[stack]",
   * "[vdso]", "[anon:name]", "" for anonymous memory. A deleted file keeps
   * its " (deleted)" suffix here; see {@link MapEntry.deleted}. The kernel
   * escapes a newline in a name as "\012" and nothing else.
   */
  path: string;
  /** True when the path ends in " (deleted)" (the backing file was unlinked). */
  deleted: boolean;
}

const MAPS_LINE =
  /^([0-9a-f]+)-([0-9a-f]+) ([r-][w-][x-][ps]) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) (\d+) *(.*)$/;
const DELETED = " (deleted)";

/** A hex field as a bigint; up to 13 digits (all user addresses) without a temporary string. */
function hexField(h: string): bigint {
  return h.length <= 13 ? BigInt(parseInt(h, 16)) : BigInt(`0x${h}`);
}

/** Parses one maps line; returns null if it is not one. */
export function parseMapsLine(line: string): MapEntry | null {
  const m = MAPS_LINE.exec(line);
  if (!m) return null;
  const path = m[7];
  return {
    start: hexField(m[1]),
    end: hexField(m[2]),
    perms: m[3],
    offset: hexField(m[4]),
    dev: m[5],
    inode: Number(m[6]),
    path,
    deleted: path.endsWith(DELETED),
  };
}

/** Parses the whole text of a maps file (throws ProcFormatError on a bad line). */
export function parseMaps(text: string, pid = 0, path = "maps"): MapEntry[] {
  const out: MapEntry[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const e = parseMapsLine(line);
    if (!e) throw new ProcFormatError(pid, path, `bad maps line ${JSON.stringify(line)}`);
    out.push(e);
  }
  return out;
}

/**
 * Reads /proc/<pid>/maps (or a thread's). Throws ProcessGoneError for a
 * process that is gone or a zombie; a kernel thread gives [].
 */
export function readMaps(pid: number, tid?: number): MapEntry[] {
  const text = readProcText(pid, "maps", tid);
  if (text === "") assertAlive(pid, procPath(pid, "maps", tid));
  return parseMaps(text, pid, procPath(pid, "maps", tid));
}

/** The path of a mapping without its " (deleted)" suffix. */
export function mappingFilePath(entry: MapEntry): string {
  return entry.deleted ? entry.path.slice(0, -DELETED.length) : entry.path;
}

/** True for areas backed by a file (a path starting with "/" and an inode). */
export function isFileBacked(entry: MapEntry): boolean {
  return entry.inode !== 0 && entry.path.startsWith("/");
}

/**
 * Identity (dev, ino, size, mtime) of the file behind a mapping, from
 * /proc/<pid>/map_files/<start>-<end> (works for deleted files too).
 * Returns null for anonymous areas or when the kernel has no map_files
 * entry for it.
 */
export function readMapFileIdentity(pid: number, entry: MapEntry): FileIdentity | null {
  if (!isFileBacked(entry)) return null;
  const path = procPath(pid, `map_files/${entry.start.toString(16)}-${entry.end.toString(16)}`);
  try {
    const info = procRead(pid, path, () => Deno.statSync(path));
    return fileIdentityOf(mappingFilePath(entry), info);
  } catch (err) {
    if (err instanceof ProcEntryNotFoundError) return null;
    if (err instanceof ProcPermissionError) return identityByPath(pid, entry);
    throw err;
  }
}

/** Major and minor of a glibc st_dev. */
function devParts(dev: number): [number, number] {
  const d = BigInt(dev);
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn);
  const minor = (d & 0xffn) | ((d >> 12n) & ~0xffn);
  return [Number(major), Number(minor)];
}

/**
 * Without CAP_CHECKPOINT_RESTORE in the host's user namespace (a rootless
 * dump, engine/pidns/userns.ts) map_files links cannot be followed: the
 * mapping's path is stat'ed instead and must be the very file the maps line
 * names (device and inode). A deleted file has no path left: refused.
 */
function identityByPath(pid: number, entry: MapEntry): FileIdentity {
  const path = mappingFilePath(entry);
  const where = `mapping ${entry.start.toString(16)}-${entry.end.toString(16)} of process ${pid}`;
  if (entry.deleted) {
    throw new ProcError(
      pid,
      path,
      `${where}: its file was deleted and map_files cannot be opened without CAP_CHECKPOINT_RESTORE on the host (rootless dump)`,
    );
  }
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch {
    throw new ProcError(pid, path, `${where}: ${path} cannot be stat'ed (rootless dump)`);
  }
  const [major, minor] = entry.dev.split(":").map((x) => parseInt(x, 16));
  const [haveMajor, haveMinor] = devParts(info.dev);
  if (info.ino !== entry.inode || major !== haveMajor || minor !== haveMinor) {
    throw new ProcError(
      pid,
      path,
      `${where}: ${path} is no longer the mapped file and map_files cannot be opened without CAP_CHECKPOINT_RESTORE on the host (rootless dump)`,
    );
  }
  return fileIdentityOf(path, info);
}
