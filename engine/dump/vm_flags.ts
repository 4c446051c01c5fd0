/**
 * The mappings' VmFlags of a frozen process, read beside the rest of the
 * collect. /proc/<pid>/smaps is their only source, and it walks every page
 * table entry of every area (~60 ms for 2 GiB resident). The collect takes
 * the areas from maps (no page walk), makes its injected calls, and only
 * then starts the smaps read on another thread: the injection's own areas
 * (scratch, batch and probe pages) are gone by then, and the frozen tree
 * changes no mapping, so smaps lists exactly the areas of maps. That is
 * checked area by area ({@link flagsOfMaps}): a difference fails the dump,
 * never fills in a flag from another area.
 *
 * @module
 */

import type { Mapping, ProcessImage } from "../model.ts";
import type { MemoryProcessFlags } from "../memory/flags.ts";
import { readMaps } from "../proc/maps.ts";
import { flagsOfMaps, type SmapsArea } from "../proc/smaps_flags.ts";
import type { CollectedProcess } from "./process.ts";

/**
 * From which resident set the smaps read overlaps the collect. Below it the
 * walk is short (~2 ms for 64 MiB) and one pass of smaps costs less than
 * maps plus smaps (10,000 mappings make 7 MB of smaps text). Tests set it to
 * 0 to take the overlapped path with small targets.
 */
export const smapsOverlap = { minRssBytes: 256 * 2 ** 20 };

/** Whether a process of `rssPages` resident pages has its smaps read beside the collect. */
export function smapsOverlaps(rssPages: number): boolean {
  return rssPages * 4096 >= smapsOverlap.minRssBytes;
}

/** Flags not known yet: one shared empty list, replaced by {@link completeVmFlags}. */
const UNKNOWN: string[] = Object.freeze([]) as unknown as string[];

/** The areas of /proc/<pid>/maps, their VmFlags not read yet. */
export function mapsWithoutFlags(pid: number): SmapsArea[] {
  const maps = readMaps(pid) as SmapsArea[];
  for (const m of maps) m.vmFlags = UNKNOWN;
  return maps;
}

/**
 * Waits for `smaps`, puts each area's VmFlags in `maps[i]` and
 * `mappings[i]` (built from `maps`, in the same order), then runs
 * `details` (which reads the flags) and settles with its result. The
 * promise never rejects unhandled: a failure is thrown where it is awaited.
 */
export function completeVmFlags(
  pid: number,
  maps: SmapsArea[],
  mappings: Mapping[],
  smaps: Promise<SmapsArea[]>,
  details: () => MemoryProcessFlags,
): Promise<MemoryProcessFlags> {
  const p = smaps.then((areas) => {
    const flags = flagsOfMaps(pid, maps, areas);
    for (let i = 0; i < maps.length; i++) {
      maps[i].vmFlags = flags[i];
      mappings[i].vmFlags = flags[i];
    }
    return details();
  });
  p.catch(() => {}); // awaited later, or not at all when the dump failed first
  return p;
}

/**
 * Completes the VmFlags of every collected process (in order) and sets each
 * image's memory flags. Call it before anything reads the flags.
 */
export async function awaitVmFlags(
  processes: { collected: CollectedProcess; image: Pick<ProcessImage, "memoryFlags"> }[],
): Promise<void> {
  for (const { collected, image } of processes) {
    const pending = collected.vmFlags;
    if (!pending) continue;
    delete collected.vmFlags;
    const memoryFlags = await pending;
    if (Object.keys(memoryFlags).length) image.memoryFlags = memoryFlags;
  }
}
