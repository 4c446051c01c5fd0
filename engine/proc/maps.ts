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
import { fileIdentityOf, procPath, procRead, readProcBytes, readProcText } from "./io.ts";
import { bytesEqual } from "../../ffi/libc.ts";
import { countByte, findFrom, findIndexBelow } from "../find_from.ts";
import { PERMS_TEXT, permsBitsOfCodes } from "../perms.ts";
import {
  PROCMAP_QUERY_COVERING_OR_NEXT_VMA,
  PROCMAP_QUERY_VMA_EXECUTABLE,
  PROCMAP_QUERY_VMA_READABLE,
  PROCMAP_QUERY_VMA_SHARED,
  PROCMAP_QUERY_VMA_WRITABLE,
  ProcmapQuery,
} from "../../ffi/procmap_query.ts";
import { changeTimeNs } from "../../ffi/statx.ts";

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

/**
 * Parses one maps line with a regular expression; the reference for
 * {@link parseMapsLine} (tests compare both), returns null if it is not one.
 */
export function parseMapsLineRegex(line: string): MapEntry | null {
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

/** Value of a lower-case hex digit's character code, or -1. */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/**
 * Where the scan of a maps line stands: the end of the last field read, and
 * its value (hex fields of more than 13 digits go through a string).
 */
const cursor = { at: 0, value: 0n };

/** Reads the hex field of `line` from `at` up to `stop` (a character code); false if none. */
function hexUntil(line: string, at: number, stop: number): boolean {
  let n = 0;
  let i = at;
  for (; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c === stop) break;
    const d = hexDigit(c);
    if (d < 0) return false;
    n = n * 16 + d;
  }
  if (i === at || i >= line.length) return false;
  cursor.value = i - at <= 13 ? bigOf(n) : BigInt(`0x${line.slice(at, i)}`);
  cursor.at = i + 1;
  return true;
}

/** The last value made by {@link bigOf}, as a number and as a bigint. */
const lastBig = { n: -1, big: 0n };

/**
 * `BigInt(n)`, sharing one value where it can: 0 (most offsets) and the
 * last value made (an area's start is often the end of the one before):
 * 10,000 areas make a third as many bigints (objects) to collect.
 */
function bigOf(n: number): bigint {
  if (n === 0) return 0n;
  if (n === lastBig.n) return lastBig.big;
  lastBig.n = n;
  return lastBig.big = BigInt(n);
}

/**
 * The permission string of the four characters (char codes) of a maps
 * line's permission field, one shared string per set (engine/perms.ts), or
 * undefined when they are not `[r-][w-][x-][ps]`.
 */
function permsOfChars(p0: number, p1: number, p2: number, p3: number): string | undefined {
  const bits = permsBitsOfCodes(p0, p1, p2, p3);
  return bits < 0 ? undefined : PERMS_TEXT[bits];
}
/** Device strings seen, each kept once. */
const DEVS = new Map<string, string>();

/**
 * Parses one maps line by character codes (10,000 mappings make 10,000
 * lines, read several times per dump); returns null if it is not one. Same
 * result as {@link parseMapsLineRegex}.
 */
export function parseMapsLine(line: string): MapEntry | null {
  const SP = 32;
  if (!hexUntil(line, 0, 45 /* - */)) return null;
  const start = cursor.value;
  if (!hexUntil(line, cursor.at, SP)) return null;
  const end = cursor.value;
  let at = cursor.at;
  if (at + 5 > line.length || line.charCodeAt(at + 4) !== SP) return null;
  // One string per permission set and per device (10,000 mappings share a few).
  const perms = permsOfChars(
    line.charCodeAt(at),
    line.charCodeAt(at + 1),
    line.charCodeAt(at + 2),
    line.charCodeAt(at + 3),
  );
  if (perms === undefined) return null;
  if (!hexUntil(line, at + 5, SP)) return null;
  const offset = cursor.value;
  // dev: hex ":" hex
  const devAt = cursor.at;
  at = devAt;
  while (at < line.length && hexDigit(line.charCodeAt(at)) >= 0) at++;
  if (at === devAt || line.charCodeAt(at) !== 58 /* : */) return null;
  const minorAt = ++at;
  while (at < line.length && hexDigit(line.charCodeAt(at)) >= 0) at++;
  if (at === minorAt || line.charCodeAt(at) !== SP) return null;
  const devText = line.slice(devAt, at);
  let dev = DEVS.get(devText);
  if (dev === undefined) {
    if (DEVS.size > 4096) DEVS.clear();
    DEVS.set(devText, devText);
    dev = devText;
  }
  // inode: decimal
  const inodeAt = ++at;
  let inode = 0;
  for (; at < line.length; at++) {
    const c = line.charCodeAt(at);
    if (c < 48 || c > 57) break;
    inode = inode * 10 + (c - 48);
  }
  if (at === inodeAt) return null;
  if (at - inodeAt > 15) inode = Number(line.slice(inodeAt, at));
  while (at < line.length && line.charCodeAt(at) === SP) at++;
  const path = at < line.length ? line.slice(at) : "";
  // `.` of the regular expression stops at line terminators: none may be left.
  if (path !== "" && /[\n\r\u2028\u2029]/.test(path)) return null;
  return { start, end, perms, offset, dev, inode, path, deleted: path.endsWith(DELETED) };
}

/** Parses the whole text of a maps file (throws ProcFormatError on a bad line). */
export function parseMaps(text: string, pid = 0, path = "maps"): MapEntry[] {
  const out: MapEntry[] = [];
  const lines = text.split("\n");
  // By findIndex: no loop of 10,000 lines for V8 to compile (engine/find_from.ts).
  const bad = lines.findIndex((line) => {
    if (line === "") return false;
    const e = parseMapsLine(line);
    if (!e) return true;
    out.push(e);
    return false;
  });
  if (bad >= 0) {
    throw new ProcFormatError(pid, path, `bad maps line ${JSON.stringify(lines[bad])}`);
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

/**
 * Reads /proc/<pid>/maps as bytes, not decoded (to compare with an earlier
 * read, {@link sameBytes}). Throws ProcessGoneError for a process that is
 * gone or a zombie.
 */
export function readMapsBytes(pid: number): Uint8Array {
  const bytes = readProcBytes(pid, "maps");
  if (bytes.length === 0) assertAlive(pid, procPath(pid, "maps"));
  return bytes;
}

/**
 * Parses maps bytes read by {@link readMapsBytes}: the areas {@link parseMaps}
 * gives for the text as readMaps decodes it. Read from the bytes, line by
 * line (a text of 10,000 areas is parsed before every dump): no string per
 * line, a table per character instead of a call, the path decoded alone
 * (only its line has one). Anything this scan does not take (a bad line, a
 * byte order mark at the start) is parsed from the decoded text instead,
 * which gives the same areas or throws the same error.
 */
export function parseMapsBytes(bytes: Uint8Array, pid = 0): MapEntry[] {
  const fast = scanMapsBytes(bytes);
  if (fast) return fast;
  return parseMaps(new TextDecoder().decode(bytes), pid, procPath(pid, "maps"));
}

/**
 * Value of each byte as a lower-case hex digit (0 to 15), or -1: `hexDigit`
 * of every byte, filled by two short loops (not a callback run 256 times,
 * cold, at every import).
 */
const HEX_OF = new Int8Array(256).fill(-1);
for (let c = 48; c <= 57; c++) HEX_OF[c] = c - 48;
for (let c = 97; c <= 102; c++) HEX_OF[c] = c - 87;

/** UTF-8 for the paths of maps lines, a leading U+FEFF kept (it is not at the text's start). */
const pathDecoder = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * Where the byte scan of a maps line stands (as {@link cursor} for a line's
 * string): the end of the last field read, and its value.
 */
const byteCursor = { at: 0, value: 0n, num: -1 };

/**
 * Reads the hex field of `bytes` from `at` up to `stop` (a byte) before
 * `end`; false if none (as {@link hexUntil} on the line's string).
 */
function hexBytesUntil(bytes: Uint8Array, at: number, end: number, stop: number): boolean {
  let n = 0;
  let i = at;
  for (; i < end; i++) {
    const c = bytes[i];
    if (c === stop) break;
    const d = HEX_OF[c];
    if (d < 0) return false;
    n = n * 16 + d;
  }
  if (i === at || i >= end) return false;
  if (i - at <= 13) {
    byteCursor.value = bigOf(n);
    byteCursor.num = n;
  } else {
    byteCursor.value = BigInt(`0x${String.fromCharCode(...bytes.subarray(at, i))}`);
    byteCursor.num = -1;
  }
  byteCursor.at = i + 1;
  return true;
}

/**
 * Device strings by a key of their bytes (hex digits and the colon, up to
 * 12 of them: each a number from 1 to 17 in base 18, exact in a double).
 */
const DEVS_BY_KEY = new Map<number, string>();

/**
 * One maps line, `bytes` from `at` to `end` (no newline), as
 * {@link parseMapsLine} parses its string; null where that gives null, or
 * where this scan leaves the line to it.
 */
function parseMapsLineBytes(bytes: Uint8Array, at: number, end: number): MapEntry | null {
  const SP = 32;
  if (!hexBytesUntil(bytes, at, end, 45 /* - */)) return null;
  const start = byteCursor.value;
  lineNumbers.start = byteCursor.num;
  if (!hexBytesUntil(bytes, byteCursor.at, end, SP)) return null;
  const stop = byteCursor.value;
  lineNumbers.end = byteCursor.num;
  at = byteCursor.at;
  if (at + 5 > end || bytes[at + 4] !== SP) return null;
  const perms = permsOfChars(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
  if (perms === undefined) return null;
  if (!hexBytesUntil(bytes, at + 5, end, SP)) return null;
  const offset = byteCursor.value;
  // dev: hex ":" hex, its string kept once per key
  const devAt = byteCursor.at;
  at = devAt;
  let key = 0;
  while (at < end && HEX_OF[bytes[at]] >= 0) key = key * 18 + 1 + HEX_OF[bytes[at++]];
  if (at === devAt || bytes[at] !== 58 /* : */ || at >= end) return null;
  key = key * 18 + 17;
  const minorAt = ++at;
  while (at < end && HEX_OF[bytes[at]] >= 0) key = key * 18 + 1 + HEX_OF[bytes[at++]];
  if (at === minorAt || at >= end || bytes[at] !== SP) return null;
  if (at - devAt > 12) return null; // a key too long to be exact: the string's parse
  let dev = DEVS_BY_KEY.get(key);
  if (dev === undefined) {
    if (DEVS_BY_KEY.size > 4096) DEVS_BY_KEY.clear();
    dev = String.fromCharCode(...bytes.subarray(devAt, at));
    DEVS_BY_KEY.set(key, dev);
  }
  // inode: decimal
  const inodeAt = ++at;
  let inode = 0;
  for (; at < end; at++) {
    const c = bytes[at];
    if (c < 48 || c > 57) break;
    inode = inode * 10 + (c - 48);
  }
  if (at === inodeAt) return null;
  if (at - inodeAt > 15) return null; // (the string's parse: Number of its digits)
  while (at < end && bytes[at] === SP) at++;
  if (at === end) {
    return { start, end: stop, perms, offset, dev, inode, path: "", deleted: false };
  }
  const path = pathDecoder.decode(bytes.subarray(at, end));
  // `.` of the regular expression stops at line terminators: none may be left.
  if (/[\n\r\u2028\u2029]/.test(path)) return null;
  return { start, end: stop, perms, offset, dev, inode, path, deleted: path.endsWith(DELETED) };
}

/**
 * The areas of a maps text's bytes by {@link parseMapsLineBytes}, line by
 * line through {@link findIndexBelow} (no loop of 10,000 rounds for V8 to
 * compile); undefined at the first line it does not take, or for a text
 * that starts with a byte order mark (the decoder drops it from the text).
 * {@link parseMapsBytes} parses those from the text. Exported for tests.
 */
export function scanMapsBytes(bytes: Uint8Array): MapEntry[] | undefined {
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) return undefined;
  const out: MapEntry[] = [];
  let at = 0;
  const lines = countLines(bytes) + 1;
  const starts = new Float64Array(lines), ends = new Float64Array(lines);
  const bad = findIndexBelow(lines, () => {
    let end = bytes.indexOf(10, at);
    if (end < 0) end = bytes.length;
    const from = at;
    at = end + 1;
    if (end === from) return false; // an empty line, as the text's split gives it
    const e = parseMapsLineBytes(bytes, from, end);
    if (!e) return true;
    starts[out.length] = lineNumbers.start;
    ends[out.length] = lineNumbers.end;
    out.push(e);
    return false;
  });
  if (bad >= 0) return undefined;
  numbersByList.set(out, { start: starts, end: ends });
  return out;
}

/** The start and end of the line {@link parseMapsLineBytes} read last, as numbers (-1: 2^52 or more). */
const lineNumbers = { start: -1, end: -1 };

/** Each area's start and end as numbers (-1 where 2^52 or more), by the list {@link scanMapsBytes} made. */
const numbersByList = new WeakMap<
  readonly MapEntry[],
  { start: Float64Array; end: Float64Array }
>();

/**
 * The start and end of each area of `areas` as numbers, read with the
 * bigints when {@link parseMapsBytes} scanned the bytes (index for index;
 * -1 where 2^52 or more), else undefined. The list is the parse's own
 * array: the caller must not have reordered it (the dump's collect keeps
 * it as read, engine/dump/process.ts).
 */
export function areaNumbers(
  areas: readonly MapEntry[],
): { start: Float64Array; end: Float64Array } | undefined {
  return numbersByList.get(areas);
}

/**
 * Whether two byte strings are equal: by `memcmp` from 1 KiB (ffi/libc.ts
 * `bytesEqual`), else 4 bytes at a time where both are aligned for it.
 */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  if (a.length >= 1024) return bytesEqual(a, b); // one memcmp, not a cold loop
  let i = 0;
  if (a.byteOffset % 4 === 0 && b.byteOffset % 4 === 0) {
    const n = a.length >> 2;
    const wa = new Int32Array(a.buffer, a.byteOffset, n);
    const wb = new Int32Array(b.buffer, b.byteOffset, n);
    for (let k = 0; k < n; k++) if (wa[k] !== wb[k]) return false;
    i = n << 2;
  }
  for (; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
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
export function readMapFileIdentity(
  pid: number,
  entry: MapEntry,
  /** Change times found so far in this collect, by "dev:ino" (a file mapped many times: one statx). */
  ctimes?: Map<string, string | undefined>,
): FileIdentity | null {
  if (!isFileBacked(entry)) return null;
  const path = procPath(pid, `map_files/${entry.start.toString(16)}-${entry.end.toString(16)}`);
  try {
    const info = procRead(pid, path, () => Deno.statSync(path));
    if (!ctimes) return fileIdentityOf(mappingFilePath(entry), info, path);
    const key = `${info.dev}:${info.ino}`;
    let ctime = ctimes.get(key);
    if (ctime === undefined && !ctimes.has(key)) {
      const found = changeTimeNs(path);
      ctime = typeof found === "string" ? found : undefined;
      ctimes.set(key, ctime);
    }
    const id = fileIdentityOf(mappingFilePath(entry), info);
    if (ctime !== undefined) id.ctimeNs = ctime;
    return id;
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
  return fileIdentityOf(path, info, path);
}

/** An area's range and permissions, as a PROCMAP_QUERY lookup gives them. */
export type MapArea = Pick<MapEntry, "start" | "end" | "perms">;

/** Addresses from here up are not user areas ([vsyscall] is listed in maps only). */
const USER_TOP = 0x800000000000n;

/** Permissions in the maps form ("rw-p") of PROCMAP_QUERY vma_flags. */
function permsOf(flags: number): string {
  return (flags & PROCMAP_QUERY_VMA_READABLE ? "r" : "-") +
    (flags & PROCMAP_QUERY_VMA_WRITABLE ? "w" : "-") +
    (flags & PROCMAP_QUERY_VMA_EXECUTABLE ? "x" : "-") +
    (flags & PROCMAP_QUERY_VMA_SHARED ? "s" : "p");
}

/**
 * The areas of `pid` (or its thread `tid`) covering each of `addrs`
 * (null where none does), by one PROCMAP_QUERY each instead of reading
 * and parsing the whole maps text (thousands of lines); the maps text
 * where the ioctl is missing (before Linux 6.11).
 */
export function mappingsAt(
  pid: number,
  addrs: readonly bigint[],
  tid?: number,
): (MapArea | null)[] {
  let q: ProcmapQuery | undefined;
  try {
    q = new ProcmapQuery(tid ?? pid);
  } catch {
    q = undefined;
  }
  let maps: MapEntry[] | undefined;
  let usable = true;
  try {
    return addrs.map((addr) => {
      // [vsyscall] is no area of the mm for the ioctl: the text says it is mapped.
      const r = q && usable && addr < USER_TOP ? q.query(addr) : -1;
      if (typeof r !== "number") {
        return r && { start: r.start, end: r.end, perms: permsOf(r.flags) };
      }
      if (r !== -1) usable = false; // no PROCMAP_QUERY here: the text for the rest
      const m = (maps ??= readMaps(pid, tid)).find((m) => m.start <= addr && addr < m.end);
      return m ? { start: m.start, end: m.end, perms: m.perms } : null;
    });
  } finally {
    q?.close();
  }
}

/**
 * Whether `bytes` at `addr` lie in one readable executable area of `pid`
 * (ffi/safe_inject.ts's sites; [vsyscall], no area of the mm, never does),
 * asked by PROCMAP_QUERY of each address instead of a maps text of
 * thousands of lines; undefined when the ioctl is missing (before Linux
 * 6.11) or the file cannot be opened. `use` gets the question while the
 * file is open.
 */
export function withExecAreaQuery<T>(
  pid: number,
  use: (inExec: (addr: bigint, bytes: number) => boolean) => T,
): T | undefined {
  let q: ProcmapQuery;
  try {
    q = new ProcmapQuery(pid);
  } catch {
    return undefined;
  }
  try {
    const probe = q.query(0n, PROCMAP_QUERY_COVERING_OR_NEXT_VMA);
    if (typeof probe === "number") return undefined; // no PROCMAP_QUERY here
    const rx = PROCMAP_QUERY_VMA_READABLE | PROCMAP_QUERY_VMA_EXECUTABLE;
    return use((addr, bytes) => {
      const r = q.query(addr);
      return typeof r === "object" && r !== null && (r.flags & rx) === rx &&
        addr + BigInt(bytes) <= r.end;
    });
  } finally {
    q.close();
  }
}

/** The area of `pid` (or its thread `tid`) covering `addr`, or null ({@link mappingsAt}). */
export function mappingAt(pid: number, addr: bigint, tid?: number): MapArea | null {
  return mappingsAt(pid, [addr], tid)[0];
}

/** Hex digits of `text` from `at` to `end` as a number (addresses below 2^53). */
function hexNumber(text: string, at: number, end: number): number {
  let n = 0;
  for (let i = at; i < end; i++) n = n * 16 + hexDigit(text.charCodeAt(i));
  return n;
}

/**
 * The largest gap between two consecutive areas of `pid` below the
 * [vsyscall] page (the first of equal ones): its start and size in bytes,
 * size 0 when there is none. Only the range of each maps line is read.
 */
export function largestGap(
  pid: number,
  /**
   * The areas of `pid` read earlier at this freeze (in address order): their
   * largest gap is the answer if it is still wholly free (one PROCMAP_QUERY);
   * areas added since (cryo's own pages) can only have split gaps.
   */
  known?: readonly MapArea[],
): { start: bigint; size: bigint } {
  if (known) {
    const g = knownGap(known);
    if (g.size > 0n) {
      let q: ProcmapQuery | undefined;
      try {
        q = new ProcmapQuery(pid);
        const next = q.query(g.start, PROCMAP_QUERY_COVERING_OR_NEXT_VMA);
        if (next === null || (typeof next !== "number" && next.start >= g.start + g.size)) return g;
      } catch {
        /* no PROCMAP_QUERY: the text below */
      } finally {
        q?.close();
      }
    }
  }
  const text = readProcText(pid, "maps");
  if (text === "") assertAlive(pid, procPath(pid, "maps"));
  const TOP = 0x800000000000;
  let best = 0, bestAt = 0, prevEnd = -1;
  for (let at = 0; at < text.length;) {
    let nl = text.indexOf("\n", at);
    if (nl < 0) nl = text.length;
    const dash = text.indexOf("-", at);
    const sp = dash < 0 ? -1 : text.indexOf(" ", dash);
    if (dash > at && sp > dash && sp < nl) {
      const start = hexNumber(text, at, dash);
      if (start >= TOP) break; // [vsyscall]
      if (prevEnd >= 0 && start - prevEnd > best) {
        best = start - prevEnd;
        bestAt = prevEnd;
      }
      prevEnd = hexNumber(text, dash + 1, sp);
    }
    at = nl + 1;
  }
  return { start: BigInt(bestAt), size: BigInt(best) };
}

/**
 * Answers computed once per area list ({@link knownGap}, {@link executableMapsText}):
 * an area list read from /proc is never changed afterwards (the length is
 * checked too). The dump computes them before the freeze for the list the
 * freeze then reuses (engine/dump/vm_flags.ts), and the freeze asks twice.
 */
const perList = new WeakMap<readonly MapArea[], {
  length: number;
  gap?: { start: bigint; size: bigint };
  exec?: string;
}>();

function memoOf(areas: readonly MapArea[]) {
  let m = perList.get(areas);
  if (!m || m.length !== areas.length) perList.set(areas, m = { length: areas.length });
  return m;
}

/**
 * Computes, for `areas` (a list read from /proc, never changed afterwards),
 * what the injection asks of it at the freeze (the largest gap, the
 * executable lines), so that a list parsed before the freeze costs nothing then.
 */
export function prepareAreaAnswers(areas: readonly MapEntry[]): void {
  knownGap(areas);
  executableMapsText(areas);
}

/** The largest gap between consecutive `areas` below [vsyscall] (the first of equal ones). */
function knownGap(areas: readonly MapArea[]): { start: bigint; size: bigint } {
  const memo = memoOf(areas);
  return memo.gap ??= gapOf(areas);
}

/**
 * The largest gap between consecutive `areas` below USER_TOP (the first of
 * equal ones); exported for tests.
 */
export function gapOf(areas: readonly MapArea[]): { start: bigint; size: bigint } {
  // Compared as numbers (exact below USER_TOP, 2^47): no bigint per area of 10,000.
  let best = 0, bestI = 0;
  // Through findFrom: no loop of 10,000 rounds for V8 to compile (engine/find_from.ts).
  findFrom(areas, (a, i) => {
    if (i === 0) return false;
    if (a.start >= USER_TOP) return true;
    const size = Number(a.start) - Number(areas[i - 1].end);
    if (size > best) {
      best = size;
      bestI = i;
    }
    return false;
  });
  if (bestI === 0) return { start: 0n, size: 0n };
  return { start: areas[bestI - 1].end, size: areas[bestI].start - areas[bestI - 1].end };
}

/**
 * The maps records of `pid` whose line contains `needle` (e.g. "/[aio]"),
 * parsing only those lines.
 */
export function readMapsMatching(pid: number, needle: string): MapEntry[] {
  const text = readProcText(pid, "maps");
  if (text === "") assertAlive(pid, procPath(pid, "maps"));
  const out: MapEntry[] = [];
  for (let i = text.indexOf(needle); i >= 0; i = text.indexOf(needle, i + 1)) {
    const from = text.lastIndexOf("\n", i) + 1;
    let nl = text.indexOf("\n", i);
    if (nl < 0) nl = text.length;
    const line = text.slice(from, nl);
    const e = parseMapsLine(line);
    if (!e) {
      throw new ProcFormatError(
        pid,
        procPath(pid, "maps"),
        `bad maps line ${JSON.stringify(line)}`,
      );
    }
    out.push(e);
    i = nl;
  }
  return out;
}

/**
 * The maps lines of the readable and executable ones of `areas` (maps or
 * smaps records read at this freeze), in the maps format: what
 * `findSafeSites` looks for, without reading and splitting the text of
 * 10,000 mappings again.
 */
export function executableMapsText(areas: readonly MapEntry[]): string {
  const memo = memoOf(areas);
  return memo.exec ??= executableText(areas);
}

/**
 * The maps lines of the readable and executable ones of `areas` (by
 * filter and map: no loop of 10,000 rounds for V8 to compile); exported
 * for tests.
 */
export function executableText(areas: readonly MapEntry[]): string {
  return areas.filter((a) => a.perms[0] === "r" && a.perms[2] === "x").map(mapsLineOf).join("");
}

/** The maps line of `a`, with its newline. */
function mapsLineOf(a: MapEntry): string {
  return `${a.start.toString(16)}-${a.end.toString(16)} ${a.perms} ` +
    `${a.offset.toString(16).padStart(8, "0")} ${a.dev} ${a.inode} ${a.path}\n`;
}

/**
 * How many mappings process `pid` has: the lines of its maps, counted
 * without decoding them. Throws like {@link readProcBytes}.
 */
export function countMappings(pid: number): number {
  const bytes = readProcBytes(pid, "maps");
  const n = countLines(bytes);
  if (n) lastCounted = { pid, bytes, at: performance.now() };
  return n;
}

/** The newlines of each maps text counted by {@link countLines}. */
const linesOf = new WeakMap<Uint8Array, number>();

/**
 * The newlines in maps bytes `bytes`, counted once per read: the dump's
 * policies count the same read (engine/dump/precopy_policy.ts,
 * engine/dump/vm_flags.ts) that the parse then scans. The bytes of a read
 * are never written.
 */
export function countLines(bytes: Uint8Array): number {
  let n = linesOf.get(bytes);
  if (n === undefined) linesOf.set(bytes, n = countByte(bytes, 10));
  return n;
}

/** The maps bytes {@link countMappings} read last, and when. */
let lastCounted: { pid: number; bytes: Uint8Array; at: number } | undefined;

/**
 * The maps bytes of `pid` that {@link countMappings} read within the last
 * `maxAgeMs` (once: cleared), else undefined. For a caller that compares
 * them with a later read anyway (engine/dump/vm_flags.ts parses them before
 * the freeze, which takes the parse only for the same bytes): one read of
 * 10,000 lines fewer.
 */
export function takeCountedMaps(pid: number, maxAgeMs: number): Uint8Array | undefined {
  const c = peekCountedMaps(pid, maxAgeMs);
  lastCounted = undefined;
  return c;
}

/**
 * {@link takeCountedMaps} without clearing them: for a reader that only
 * looks (the dump's search for its injection sites before the freeze,
 * engine/dump/site_memo.ts, whose finds are checked again at the freeze).
 */
export function peekCountedMaps(pid: number, maxAgeMs: number): Uint8Array | undefined {
  const c = lastCounted;
  return c && c.pid === pid && performance.now() - c.at <= maxAgeMs ? c.bytes : undefined;
}
