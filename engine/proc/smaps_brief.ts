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
import { procPath, readProcText } from "./io.ts";
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

/** Parses the text of an smaps file, keeping only what {@link SmapsBrief} holds. */
export function parseSmapsBrief(text: string, pid = 0, path = "smaps"): SmapsBrief[] {
  const out: SmapsBrief[] = [];
  let cur: SmapsBrief | undefined;
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
      cur.vmFlags = text.slice(at + 8, nl).trim().split(/\s+/).filter((f) => f !== "");
    }
    at = nl + 1;
  }
  return out;
}

/**
 * Reads /proc/<pid>/smaps with {@link parseSmapsBrief}. Throws
 * ProcessGoneError for a process that is gone or a zombie.
 */
export function readSmapsBrief(pid: number): SmapsBrief[] {
  const text = readProcText(pid, "smaps");
  if (text === "") assertAlive(pid, procPath(pid, "smaps"));
  return parseSmapsBrief(text, pid, procPath(pid, "smaps"));
}
