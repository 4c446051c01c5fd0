/**
 * The VmFlags lists of a read image, shared and frozen: `JSON.parse` gives
 * each of 10,000 mappings its own list, mostly one of two or three texts
 * (neighbours alternate "rd wr mr mw me ac" and "rd mr mw me ac"). The
 * reader gives every mapping the one frozen list of its items, so the
 * plan's per-mapping tests of a list (engine/memory/flags.ts `quietFlags`,
 * engine/restore/anon_runs.ts `joinable`) answer by identity, as they do
 * for the dump's lists (engine/proc/smaps_flags.ts), instead of comparing
 * items per mapping. A frozen list cannot be changed by any reader, so
 * sharing it between mappings shares nothing that could diverge.
 *
 * @module
 */

/** Every frozen list made, by its items (JSON text: exact for any strings). */
const known = new Map<string, readonly string[]>();
/** Distinct lists remembered at most (a process has a few dozen). */
const KNOWN_MAX = 4096;
/** The two lists last handed out (neighbours alternate two lists). */
let last: readonly string[] | undefined;
let last2: readonly string[] | undefined;

function sameItems(a: readonly unknown[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The shared frozen list with the items of `list` (strings, as the image
 * schema checked). Equal items give the same list; `list` itself is not
 * changed.
 */
export function sharedFlagList(list: readonly string[]): string[] {
  if (last !== undefined && sameItems(list, last)) return last as string[];
  if (last2 !== undefined && sameItems(list, last2)) {
    const l = last2;
    last2 = last;
    last = l;
    return l as string[];
  }
  const key = JSON.stringify(list);
  let got = known.get(key);
  if (got === undefined) {
    if (known.size >= KNOWN_MAX) known.clear(); // (damaged images in a long-lived process)
    got = Object.freeze(list.slice());
    known.set(key, got);
  }
  last2 = last;
  last = got;
  return got as string[];
}
