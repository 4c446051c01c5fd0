/**
 * Shared pieces of the tests of the VmFlags sources (engine/dump/vm_flags.ts)
 * and of the maps readers: tests/targets/rt_maps.c started, its lone
 * one-page areas, and a run under a forced `CRYO_VMFLAGS` source.
 *
 * @module
 */

import { type MapEntry, readMaps } from "../../engine/proc/maps.ts";
import { startTriggered } from "./roundtrip.ts";

/** The ready line of tests/targets/rt_maps.c (its pid first). */
export const RT_MAPS_READY = /^ready pid=(\d+) base=0x[0-9a-f]+ count=\d+$/m;

/**
 * Runs `fn` with `CRYO_VMFLAGS` set to `mode` ("bpf": the iterator for a
 * process of any size; "smaps": never the iterator), unset again after.
 */
export async function withVmFlagsMode<T>(mode: "bpf" | "smaps", fn: () => Promise<T>): Promise<T> {
  Deno.env.set("CRYO_VMFLAGS", mode);
  try {
    return await fn();
  } finally {
    Deno.env.delete("CRYO_VMFLAGS");
  }
}

/** Starts tests/targets/rt_maps with `count` spaced one-page mappings (`startTriggered`'s result). */
export function startRtMaps(count: number): ReturnType<typeof startTriggered> {
  return startTriggered("rt_maps", RT_MAPS_READY, { passWork: true, extra: [String(count)] });
}

/**
 * The one-page private anonymous read-write areas of `pid` with a gap on
 * each side (none merges with a neighbour when it is changed), in address order.
 */
export function loneRwPages(pid: number): MapEntry[] {
  const all = readMaps(pid);
  return all.filter((m, i) =>
    i > 0 && i + 1 < all.length && m.path === "" && m.perms === "rw-p" &&
    m.end - m.start === 4096n && all[i - 1].end < m.start && all[i + 1].start > m.end
  );
}
