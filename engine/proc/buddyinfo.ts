/**
 * Free memory in blocks large enough for a transparent huge page, from
 * /proc/buddyinfo: a buffer advised `MADV_HUGEPAGE` is only worth it when
 * its huge pages come off the free lists. With none free, the kernel (THP
 * `defrag` "madvise", the default) reclaims and compacts in the faulting
 * thread: 16 MiB of buffers then cost 45 to 50 ms of CPU here, against
 * ~4 ms from the free lists and ~12 ms in 4 KiB pages.
 *
 * @module
 */

/** Order of a 2 MiB block (4 KiB pages). */
const HUGE_ORDER = 9;

/**
 * Free 2 MiB blocks (counting a free block of a higher order as the 2 MiB
 * blocks it holds) of the zones anonymous memory comes from (all but
 * `DMA`); 0 when the file cannot be read. `text` is the file's content
 * (tests).
 */
export function freeHugeBlocks(text?: string): number {
  try {
    text ??= Deno.readTextFileSync("/proc/buddyinfo");
  } catch {
    return 0;
  }
  let blocks = 0;
  for (const line of text.split("\n")) {
    const m = line.match(/zone\s+(\S+)\s+(.*)$/);
    if (!m || m[1] === "DMA") continue;
    const counts = m[2].trim().split(/\s+/).map(Number);
    for (let order = HUGE_ORDER; order < counts.length; order++) {
      blocks += (counts[order] || 0) * 2 ** (order - HUGE_ORDER);
    }
  }
  return blocks;
}

/**
 * Whether free 2 MiB blocks for twice `bytes` are there, and 16 more (a
 * buffer of `bytes` advised `MADV_HUGEPAGE` then takes them off the free
 * lists, not from compaction in the faulting thread).
 */
export function hugePagesFree(bytes: number, text?: string): boolean {
  return freeHugeBlocks(text) >= 2 * Math.ceil(bytes / (2 << 20)) + 16;
}
