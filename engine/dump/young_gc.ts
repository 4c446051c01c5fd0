/**
 * A young-generation collection made to happen before a freeze: a dump of
 * many mappings allocates objects for each one in the freeze, and V8
 * collects its young generation (a scavenge: every live young object
 * copied) when that space is full, wherever the allocation is. With the
 * space nearly full at the freeze's start (the maps parsed, the drafts made
 * just before it), one scavenge of ~10 ms fell in maps-10000's freeze. V8's
 * flags cannot be set from inside (docs/PERFORMANCE.md), but short-lived
 * objects allocated until a scavenge has run (seen as `heapUsed` falling)
 * make it run now, with the tree still running, and leave the space empty
 * for the freeze's own objects.
 *
 * @module
 */

/**
 * Elements of each short-lived array: its backing store (8 bytes an
 * element) stays below V8's largest regular object (128 KiB), so it is
 * made in the young generation, by one allocation.
 */
const ARRAY_ELEMENTS = 15_000;

/**
 * Most bytes of short-lived arrays allocated waiting for a scavenge: V8's
 * young generation is at most 16 MiB here (a space nearly empty is left so).
 */
export const MAX_GARBAGE_BYTES = 16 << 20;

/**
 * From this many mappings (the estimate's, before the freeze) a dump makes
 * the scavenge happen before it ({@link scavengeBeforeFreeze}): maps-10000
 * allocated enough in its freeze for one (measured), a few hundred do not.
 */
export const YOUNG_GC_MIN_MAPPINGS = 2000;

/** What {@link scavengeNow} did (tests, measurements). */
export const youngGcStats = { runs: 0, collected: 0, arrays: 0 };

/**
 * Allocates short-lived arrays of ~120 KB, one at a time, until the heap's
 * used size falls (a scavenge ran) or `maxBytes` were allocated; returns
 * whether a collection was seen.
 */
export function scavengeNow(maxBytes = MAX_GARBAGE_BYTES): boolean {
  youngGcStats.runs++;
  let last = Deno.memoryUsage().heapUsed;
  let sink = 0;
  for (let done = 0; done < maxBytes; done += ARRAY_ELEMENTS * 8) {
    sink += new Array(ARRAY_ELEMENTS).fill(sink).length;
    youngGcStats.arrays++;
    const now = Deno.memoryUsage().heapUsed;
    if (now < last) {
      youngGcStats.collected++;
      return true;
    }
    last = now;
  }
  return false;
}

/**
 * Before the freeze of a process of at least {@link YOUNG_GC_MIN_MAPPINGS}
 * mappings (`mappings`: the estimate's count): {@link scavengeNow}.
 * Returns whether it ran.
 */
export function scavengeBeforeFreeze(mappings: number | undefined): boolean {
  if ((mappings ?? 0) < YOUNG_GC_MIN_MAPPINGS) return false;
  scavengeNow();
  return true;
}
