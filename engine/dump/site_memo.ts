/**
 * The code sequences crash-safe injection needs in a target (ffi/safe_inject.ts
 * `findSafeSites`: `syscall; ret` and an rt_sigreturn restorer) found from
 * where they were in another process on this boot. The search reads and
 * scans up to megabytes of the target's code with cold code, 2 to 10 ms at
 * the start of every dump; the sites lie at fixed offsets of the files
 * mapped (libc, [vdso]), so their places in those files are kept in the
 * per-boot memo (engine/proc/vm_flags_memo.ts) and a later dump of a process
 * mapping the same files reads only their bytes back. A place is only a
 * hint: `findSafeSites` uses it once the bytes there are the sequences and lie
 * in readable executable areas (as for a pair it found itself), else it
 * searches as before.
 *
 * @module
 */

import { findSafeSites, type SafeSites } from "../../ffi/safe_inject.ts";
import { executableMapsLines } from "../../ffi/inject.ts";
import { recallSafeSites, rememberSafeSites, type SitePlace } from "../proc/vm_flags_memo.ts";
import { peekCountedMaps } from "../proc/maps.ts";

/** How old the estimate's count of the maps may be for the search to use its bytes (ms). */
const COUNTED_MAPS_MAX_AGE_MS = 1000;

/** How many maps texts {@link findSafeSitesRemembered} read itself, since the process started (tests). */
export const siteMapsReads = { count: 0 };

/** An executable area as maps shows it. */
interface ExecArea {
  start: bigint;
  end: bigint;
  offset: bigint;
  dev: string;
  inode: string;
  path: string;
}

/** The readable executable areas of a maps text (maps' own fields). */
export function execAreas(mapsText: string): ExecArea[] {
  const out: ExecArea[] = [];
  for (const line of executableMapsLines(mapsText)) {
    const f = line.split(/\s+/);
    if (f.length < 5 || f[1][0] !== "r" || f[1][2] !== "x") continue;
    const [s, e] = f[0].split("-");
    out.push({
      start: BigInt(`0x${s}`),
      end: BigInt(`0x${e}`),
      offset: BigInt(`0x${f[2]}`),
      dev: f[3],
      inode: f[4],
      path: f.slice(5).join(" "),
    });
  }
  return out;
}

/** Where `addr` lies in the file (or [vdso]) of the area holding it, or undefined. */
export function placeOf(areas: readonly ExecArea[], addr: bigint): SitePlace | undefined {
  const a = areas.find((m) => addr >= m.start && addr < m.end);
  if (!a || a.path === "" || a.path === "[vsyscall]") return undefined;
  const offset = addr - a.start + a.offset;
  if (offset > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  return { dev: a.dev, inode: a.inode, path: a.path, offset: Number(offset) };
}

/** The address of `place` in these areas (the same file, an area covering the offset), or undefined. */
export function addressIn(areas: readonly ExecArea[], place: SitePlace): bigint | undefined {
  const off = BigInt(place.offset);
  const a = areas.find((m) =>
    m.dev === place.dev && m.inode === place.inode && m.path === place.path &&
    off >= m.offset && off < m.offset + (m.end - m.start)
  );
  return a ? a.start + (off - a.offset) : undefined;
}

/**
 * `findSafeSites(pid)`, tried first at the places remembered on this boot
 * (the latest pair whose files `pid` maps); a pair found by the search is
 * remembered. Throws what `findSafeSites` throws (a process gone).
 */
export function findSafeSitesRemembered(pid: number): SafeSites | undefined {
  // The maps the dump's estimate counted just now when they are this process's (one read of
  // 10,000 lines fewer before the freeze: ~4 ms of kernel time), else read. A text a little
  // old is no harm: an injection session takes a pair only once it is found again in the
  // areas of its own freeze, its bytes read back (ffi/safe_inject.ts `rememberedSites`).
  const counted = peekCountedMaps(pid, COUNTED_MAPS_MAX_AGE_MS);
  if (!counted) siteMapsReads.count++;
  const text = counted
    ? new TextDecoder().decode(counted)
    : Deno.readTextFileSync(`/proc/${pid}/maps`);
  const areas = execAreas(text);
  let hint: SafeSites | undefined;
  for (const m of recallSafeSites()) {
    const call = addressIn(areas, m.call), restorer = addressIn(areas, m.restorer);
    if (call !== undefined && restorer !== undefined) {
      hint = { call, restorer };
      break;
    }
  }
  const sites = findSafeSites(pid, text, hint);
  if (sites && (sites.call !== hint?.call || sites.restorer !== hint?.restorer)) {
    const call = placeOf(areas, sites.call), restorer = placeOf(areas, sites.restorer);
    if (call && restorer) rememberSafeSites({ call, restorer });
  }
  return sites;
}
