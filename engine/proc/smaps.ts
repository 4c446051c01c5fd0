/**
 * Reader of /proc/<pid>/smaps: the maps records plus per-area sizes and the
 * VmFlags list, and a merge with a separately read maps list.
 *
 * @module
 */

import { assertAlive, ProcFormatError } from "./errors.ts";
import { type MapEntry, parseMapsLine } from "./maps.ts";
import { procPath, readProcText } from "./io.ts";

/** One area of /proc/<pid>/smaps. */
export interface SmapsEntry extends MapEntry {
  /** Every "Key: N kB" line, in bytes (Size, Rss, Pss, Anonymous, Swap, ...). */
  sizes: Record<string, number>;
  /** Every other numeric line as printed (THPeligible, ProtectionKey, ...). */
  values: Record<string, number>;
  /** Resident bytes (Rss). */
  rss: number;
  /** Anonymous bytes (private anonymous and COW'd pages). */
  anonymous: number;
  /** Swapped-out bytes. */
  swap: number;
  /** VmFlags two-letter codes, e.g. ["rd","wr","mr","mw","me","ac"]. */
  vmFlags: string[];
}

/** A maps record completed with the smaps facts cryo uses. */
export interface MappingRecord extends MapEntry {
  /** VmFlags codes. */
  vmFlags: string[];
  /** Resident bytes. */
  rss: number;
  /** Anonymous bytes. */
  anonymous: number;
  /** Swapped-out bytes. */
  swap: number;
}

const FIELD = /^([A-Za-z_][A-Za-z0-9_]*):\s+(\d+)(\s+kB)?\s*$/;

/** Parses the text of an smaps file. */
export function parseSmaps(text: string, pid = 0, path = "smaps"): SmapsEntry[] {
  const out: SmapsEntry[] = [];
  let cur: SmapsEntry | undefined;
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("VmFlags:")) {
      if (!cur) throw new ProcFormatError(pid, path, "VmFlags before any area");
      cur.vmFlags = line.slice(8).trim().split(/\s+/).filter((f) => f !== "");
      continue;
    }
    const f = FIELD.exec(line);
    if (f) {
      if (!cur) throw new ProcFormatError(pid, path, `field before any area: ${line}`);
      if (f[3]) cur.sizes[f[1]] = Number(f[2]) * 1024;
      else cur.values[f[1]] = Number(f[2]);
      continue;
    }
    const head = parseMapsLine(line);
    if (head) {
      cur = { ...head, sizes: {}, values: {}, rss: 0, anonymous: 0, swap: 0, vmFlags: [] };
      out.push(cur);
      continue;
    }
    // Unknown non-numeric lines (future kernels) are ignored.
  }
  for (const e of out) {
    e.rss = e.sizes.Rss ?? 0;
    e.anonymous = e.sizes.Anonymous ?? 0;
    e.swap = e.sizes.Swap ?? 0;
  }
  return out;
}

/**
 * Reads /proc/<pid>/smaps (or a thread's). Throws ProcessGoneError for a
 * process that is gone or a zombie; a kernel thread gives [].
 */
export function readSmaps(pid: number, tid?: number): SmapsEntry[] {
  const path = procPath(pid, "smaps", tid);
  const text = readProcText(pid, "smaps", tid);
  if (text === "") assertAlive(pid, path);
  return parseSmaps(text, pid, path);
}

/**
 * Joins maps records with smaps records of the same process, keeping the
 * order of `maps`. Both must describe the same areas (read while the process
 * was frozen); a mismatch throws ProcFormatError.
 */
export function mergeSmaps(
  maps: MapEntry[],
  smaps: Pick<SmapsEntry, "start" | "end" | "rss" | "anonymous" | "swap" | "vmFlags">[],
  pid = 0,
): MappingRecord[] {
  if (maps.length !== smaps.length) {
    throw new ProcFormatError(
      pid,
      "smaps",
      `maps has ${maps.length} areas but smaps has ${smaps.length} (address space changed?)`,
    );
  }
  return maps.map((m, i) => {
    const s = smaps[i];
    if (s.start !== m.start || s.end !== m.end) {
      throw new ProcFormatError(
        pid,
        "smaps",
        `area ${i} differs: maps ${m.start.toString(16)}-${m.end.toString(16)}, ` +
          `smaps ${s.start.toString(16)}-${s.end.toString(16)}`,
      );
    }
    return { ...m, vmFlags: s.vmFlags, rss: s.rss, anonymous: s.anonymous, swap: s.swap };
  });
}
