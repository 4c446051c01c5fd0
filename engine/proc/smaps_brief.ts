/**
 * A fast reader of /proc/<pid>/smaps for the dump: only the area headers
 * and the Rss, Anonymous, Swap and VmFlags lines, scanned with `indexOf`
 * (no regular expression per line, no object per field). It gives the same
 * values as {@link parseSmaps} for those fields; with 10,000 mappings the
 * smaps text is ~7 MB and the full parse is most of the dump's collect phase.
 *
 * @module
 */

import { assertAlive, ProcFormatError } from "./errors.ts";
import { parseMapsLine } from "./maps.ts";
import { procPath, procRead } from "./io.ts";
import type { SmapsEntry } from "./smaps.ts";

/** The smaps facts the dump uses of one area. */
export type SmapsBrief = Omit<SmapsEntry, "sizes" | "values">;

/**
 * `N kB` after a field name, in bytes: the line starts at `line`; the text
 * from `from` to `end` must be blanks, digits, " kB" and optional blanks
 * (`Key:   N kB`). Scanned by character codes, without a regular expression
 * or a substring: with 10,000 mappings this runs 30,000 times.
 */
function kbField(
  text: string,
  line: number,
  from: number,
  end: number,
  pid: number,
  path: string,
): number {
  let i = from;
  const blank = (c: number) => c === 32 || c === 9;
  while (i < end && blank(text.charCodeAt(i))) i++;
  const digits = i;
  let n = 0;
  while (i < end) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) break;
    n = n * 10 + (c - 48);
    i++;
  }
  let ok = i > digits && digits > from && text.startsWith(" kB", i);
  if (ok) {
    for (i += 3; i < end; i++) {
      if (!blank(text.charCodeAt(i)) && text.charCodeAt(i) !== 13) ok = false;
    }
  }
  if (!ok) throw new ProcFormatError(pid, path, `bad size line: ${text.slice(line, end)}`);
  return n * 1024;
}

/**
 * Shared values: the VmFlags of 10,000 mappings are a few distinct lines,
 * and their paths a few distinct names; one frozen array and one string
 * each instead of one per mapping.
 */
export class Interned {
  readonly #flags = new Map<string, string[]>();
  readonly #paths = new Map<string, string>();
  /** The VmFlags codes of the text after "VmFlags:". */
  flags(line: string): string[] {
    let f = this.#flags.get(line);
    if (!f) {
      f = Object.freeze(line.trim().split(/\s+/).filter((x) => x !== "")) as string[];
      this.#flags.set(line, f);
    }
    return f;
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
 * Scans the complete lines of `text` (it must end with a
 * newline, or be the end of the file) into `out`, the areas so far.
 */
function scanLines(
  text: string,
  out: SmapsBrief[],
  interned: Interned,
  pid: number,
  path: string,
): void {
  let cur = out.at(-1);
  let at = 0;
  while (at < text.length) {
    let nl = text.indexOf("\n", at);
    if (nl < 0) nl = text.length;
    const c = text.charCodeAt(at);
    // Area headers start with a lower-case hex digit; field lines with a capital letter.
    if ((c >= 48 && c <= 57) || (c >= 97 && c <= 102)) {
      const head = parseMapsLine(text.slice(at, nl));
      // Every area must be seen: the dump takes its list of mappings from here.
      if (!head) {
        throw new ProcFormatError(pid, path, `bad area line ${JSON.stringify(text.slice(at, nl))}`);
      }
      head.path = interned.path(head.path);
      cur = { ...head, rss: 0, anonymous: 0, swap: 0, vmFlags: [] };
      out.push(cur);
    } else if (text.startsWith("Rss:", at)) {
      if (!cur) throw new ProcFormatError(pid, path, "Rss before any area");
      cur.rss = kbField(text, at, at + 4, nl, pid, path);
    } else if (text.startsWith("Anonymous:", at)) {
      if (!cur) throw new ProcFormatError(pid, path, "Anonymous before any area");
      cur.anonymous = kbField(text, at, at + 10, nl, pid, path);
    } else if (text.startsWith("Swap:", at)) {
      if (!cur) throw new ProcFormatError(pid, path, "Swap before any area");
      cur.swap = kbField(text, at, at + 5, nl, pid, path);
    } else if (text.startsWith("VmFlags:", at)) {
      if (!cur) throw new ProcFormatError(pid, path, "VmFlags before any area");
      cur.vmFlags = interned.flags(text.slice(at + 8, nl));
    }
    at = nl + 1;
  }
}

/** Parses the text of an smaps file, keeping only what {@link SmapsBrief} holds. */
export function parseSmapsBrief(text: string, pid = 0, path = "smaps"): SmapsBrief[] {
  const out: SmapsBrief[] = [];
  scanLines(text, out, new Interned(), pid, path);
  return out;
}

/** Bytes read from smaps at a time. */
const CHUNK = 256 * 1024;

/**
 * Reads /proc/<pid>/smaps with {@link parseSmapsBrief}, a chunk at a time
 * (10,000 mappings make 7 MB of text: never held whole). Throws
 * ProcessGoneError for a process that is gone or a zombie.
 */
export function readSmapsBrief(pid: number): SmapsBrief[] {
  const path = procPath(pid, "smaps");
  const out: SmapsBrief[] = [];
  const interned = new Interned();
  let seen = 0;
  procRead(pid, path, () => {
    using f = Deno.openSync(path);
    const buf = new Uint8Array(CHUNK);
    const decoder = new TextDecoder();
    let rest = "";
    for (;;) {
      const n = f.readSync(buf);
      if (n === null || n === 0) break;
      seen += n;
      const text = rest + decoder.decode(buf.subarray(0, n), { stream: true });
      const last = text.lastIndexOf("\n");
      scanLines(text.slice(0, last + 1), out, interned, pid, path);
      rest = text.slice(last + 1);
    }
    scanLines(rest + decoder.decode(), out, interned, pid, path);
  });
  if (seen === 0) assertAlive(pid, path);
  return out;
}
