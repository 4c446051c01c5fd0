/**
 * The dump's reader of /proc/<pid>/smaps: each area's header (its maps
 * line) and its VmFlags, nothing else. The dump needs VmFlags of every
 * mapping, and smaps is the only file that has them; the ~25 size lines of
 * each area in between are skipped with one native `indexOf` instead of
 * being looked at one by one (10,000 mappings make ~250,000 lines, 7 MB).
 *
 * @module
 */

import { assertAlive, ProcFormatError } from "./errors.ts";
import { type MapEntry, parseMapsLine } from "./maps.ts";
import { procPath, procRead } from "./io.ts";
import { translateProcError } from "./errors.ts";
import { findIndexBelow } from "../find_from.ts";

/**
 * Shared values: the VmFlags of 10,000 mappings are a few distinct lines,
 * and their paths a few distinct names; one frozen array and one string
 * each instead of one per mapping.
 */
export class Interned {
  readonly #flags = new Map<string, string[]>();
  readonly #paths = new Map<string, string>();
  /**
   * The text and codes of the last two VmFlags looked up: neighbours mostly
   * share theirs, or alternate between two (read-write, read-only).
   */
  #last = { line: "\0", codes: [] as string[] };
  #before = { line: "\0", codes: [] as string[] };
  /** The VmFlags codes of the text after "VmFlags:". */
  flags(line: string): string[] {
    let f = this.#flags.get(line);
    if (!f) {
      f = Object.freeze(line.trim().split(/\s+/).filter((x) => x !== "")) as string[];
      this.#flags.set(line, f);
    }
    this.#before = this.#last;
    this.#last = { line, codes: f };
    return f;
  }
  /** {@link flags} of `text` from `from` to `to`, without a string when it is the last one's. */
  flagsIn(text: string, from: number, to: number): string[] {
    const n = to - from;
    const last = this.#last, before = this.#before;
    if (n === last.line.length && text.startsWith(last.line, from)) return last.codes;
    if (n === before.line.length && text.startsWith(before.line, from)) {
      this.#before = last;
      this.#last = before;
      return before.codes;
    }
    return this.flags(text.slice(from, to));
  }
  /** One string per distinct path. */
  path(p: string): string {
    const known = this.#paths.get(p);
    if (known !== undefined) return known;
    this.#paths.set(p, p);
    return p;
  }
}

/**
 * cryo's own VmFlags code for a mapping with a memory protection key other
 * than 0 (smaps shows the key on its ProtectionKey line, the BPF iterator as
 * vm_flags bits 32 to 35): it stands where the key's bits would (after "mg",
 * before "ss"), and no restore re-creates it, so the dump refuses such a
 * mapping (engine/memory/flags.ts).
 */
export const PKEY_CODE = "pk";

/** Codes of vm_flags bits above the protection key's: {@link PKEY_CODE} goes before them. */
const CODES_AFTER_PKEY = new Set(["ss", "ui", "dp", "sl"]);

/** `codes` with {@link PKEY_CODE} in its place, one list per list (interned like them). */
const withPkey = new WeakMap<readonly string[], string[]>();

/** The VmFlags `codes` of an area whose ProtectionKey line is not 0. */
function codesWithPkey(codes: string[]): string[] {
  let out = withPkey.get(codes);
  if (!out) {
    const at = codes.findIndex((c) => CODES_AFTER_PKEY.has(c));
    const i = at < 0 ? codes.length : at;
    out = Object.freeze([...codes.slice(0, i), PKEY_CODE, ...codes.slice(i)]) as string[];
    withPkey.set(codes, out);
  }
  return out;
}

/** The "ProtectionKey:" line smaps prints right before VmFlags on CPUs with PKU. */
const PKEY_LINE = "\nProtectionKey:";

/** Whether the line before `flagsAt` (a "\nVmFlags:") is a ProtectionKey line with a key. */
function hasPkey(text: string, flagsAt: number): boolean {
  const lineAt = text.lastIndexOf("\n", flagsAt - 1);
  if (lineAt < 0 || !text.startsWith(PKEY_LINE, lineAt)) return false;
  return Number(text.slice(lineAt + PKEY_LINE.length, flagsAt)) !== 0;
}

/** One area of smaps: its maps record and VmFlags codes. */
export interface SmapsArea extends MapEntry {
  /** VmFlags two-letter codes, e.g. ["rd","wr","mr","mw","me","ac"]. */
  vmFlags: string[];
}

const VMFLAGS = "\nVmFlags:";
/** The first line of every area after its header. */
const SIZE = "\nSize:";

/**
 * Scans the complete areas at the start of `text` into `out` and returns
 * where the first incomplete one begins (text.length when none is left).
 * `last`: no more text follows, so an incomplete area is an error.
 */
function scanAreas(
  text: string,
  out: SmapsArea[],
  interned: Interned,
  last: boolean,
  pid: number,
  path: string,
): number {
  let at = 0;
  while (at < text.length) {
    const headEnd = text.indexOf("\n", at);
    const flagsAt = headEnd < 0 ? -1 : text.indexOf(VMFLAGS, headEnd);
    const flagsEnd = flagsAt < 0 ? -1 : text.indexOf("\n", flagsAt + VMFLAGS.length);
    if (flagsEnd < 0) {
      if (!last) return at;
      if (text.slice(at).trim() === "") return text.length;
      throw new ProcFormatError(pid, path, `area without VmFlags: ${text.slice(at, headEnd)}`);
    }
    // Every area starts with its Size line and ends with its VmFlags line:
    // another area's Size line before this VmFlags means an area without one.
    const nextSize = text.indexOf(SIZE, headEnd + 1);
    if (!text.startsWith(SIZE, headEnd) || (nextSize >= 0 && nextSize < flagsAt)) {
      throw new ProcFormatError(
        pid,
        path,
        `area without Size or VmFlags: ${text.slice(at, headEnd)}`,
      );
    }
    const head = parseMapsLine(text.slice(at, headEnd));
    if (!head) {
      throw new ProcFormatError(
        pid,
        path,
        `bad area line ${JSON.stringify(text.slice(at, headEnd))}`,
      );
    }
    const area = head as SmapsArea;
    area.path = interned.path(head.path);
    area.vmFlags = interned.flagsIn(text, flagsAt + VMFLAGS.length, flagsEnd);
    if (hasPkey(text, flagsAt)) area.vmFlags = codesWithPkey(area.vmFlags);
    out.push(area);
    at = flagsEnd + 1;
  }
  return at;
}

/** Parses the text of an smaps file into its areas' headers and VmFlags. */
export function parseSmapsFlags(text: string, pid = 0, path = "smaps"): SmapsArea[] {
  const out: SmapsArea[] = [];
  scanAreas(text, out, new Interned(), true, pid, path);
  return out;
}

/**
 * Bytes of smaps gathered before they are decoded and scanned: few decodes,
 * and strings small enough for V8's young generation (a larger one goes to
 * the large-object space and brings a full collection into the frozen time).
 */
const CHUNK = 64 * 1024;

/**
 * Reads /proc/<pid>/smaps with {@link parseSmapsFlags}, a chunk at a time
 * (never held whole). Throws ProcessGoneError for a process that is gone or
 * a zombie.
 */
export function readSmapsFlags(pid: number): SmapsArea[] {
  const path = procPath(pid, "smaps");
  const out: SmapsArea[] = [];
  const interned = new Interned();
  let seen = 0;
  procRead(pid, path, () => {
    using f = Deno.openSync(path);
    const buf = new Uint8Array(CHUNK);
    const decoder = new TextDecoder();
    let rest = "";
    for (let eof = false; !eof;) {
      // A read of smaps returns one page of text at most: gather many before decoding.
      let n = 0;
      while (n < CHUNK - 8192) {
        const got = f.readSync(buf.subarray(n));
        if (got === null || got === 0) {
          eof = true;
          break;
        }
        n += got;
      }
      if (n === 0) break;
      seen += n;
      const text = rest + decoder.decode(buf.subarray(0, n), { stream: true });
      rest = text.slice(scanAreas(text, out, interned, false, pid, path));
    }
    scanAreas(rest + decoder.decode(), out, interned, true, pid, path);
  });
  if (seen === 0) assertAlive(pid, path);
  return out;
}

/**
 * {@link readSmapsFlags} with the file read on another thread (Deno's
 * blocking pool): the kernel's walk of every page table entry (~60 ms for
 * 2 GiB resident) runs while the caller's thread does other work; only the
 * scan of the text runs on the caller's thread, when the promise settles.
 * The promise never rejects unhandled: a failure is thrown where it is awaited.
 */
export function readSmapsFlagsOffThread(pid: number): Promise<SmapsArea[]> {
  const path = procPath(pid, "smaps");
  const p = Deno.readFile(path).then(
    (bytes) => {
      if (bytes.length === 0) assertAlive(pid, path);
      const out: SmapsArea[] = [];
      const interned = new Interned();
      const decoder = new TextDecoder();
      let rest = "";
      // Decoded a chunk at a time: strings small enough for V8's young generation.
      for (let at = 0; at < bytes.length; at += CHUNK) {
        const text = rest +
          decoder.decode(bytes.subarray(at, Math.min(at + CHUNK, bytes.length)), { stream: true });
        rest = text.slice(scanAreas(text, out, interned, false, pid, path));
      }
      scanAreas(rest + decoder.decode(), out, interned, true, pid, path);
      return out;
    },
    (err) => {
      throw translateProcError(err, pid, path);
    },
  );
  p.catch(() => {}); // awaited later, or not at all when the caller failed first
  return p;
}

/**
 * Whether two areas have the same maps line (addresses, permissions,
 * offset, device, inode, path).
 */
export function sameArea(a: MapEntry, b: MapEntry): boolean {
  return a.start === b.start && a.end === b.end && a.perms === b.perms &&
    a.offset === b.offset && a.dev === b.dev && a.inode === b.inode && a.path === b.path;
}

/**
 * The VmFlags of each of `maps` (read while the process was frozen), taken
 * from `smaps` read later in the same freeze: exact only if smaps lists the
 * very same areas, so any difference (an area of cryo's own injected
 * syscalls, a merge with one, an area gone) is an error, never a guess.
 */
export function flagsOfMaps(
  pid: number,
  maps: readonly MapEntry[],
  smaps: readonly SmapsArea[],
): string[][] {
  const hexOf = (m: MapEntry) => `${m.start.toString(16)}-${m.end.toString(16)} ${m.path}`;
  // The first area that differs, by findIndex: no loop of 10,000 rounds for V8 to compile.
  const i = findIndexBelow(
    Math.max(maps.length, smaps.length),
    (i) => !(i < maps.length && i < smaps.length && sameArea(maps[i], smaps[i])),
  );
  if (i >= 0) {
    const was = i < maps.length ? hexOf(maps[i]) : "nothing";
    const now = i < smaps.length ? hexOf(smaps[i]) : "nothing";
    throw new ProcFormatError(
      pid,
      procPath(pid, "smaps"),
      `the mappings changed while frozen: area ${i} was ${was}, smaps has ${now}`,
    );
  }
  return smaps.map((a) => a.vmFlags);
}
