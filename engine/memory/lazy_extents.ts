/**
 * The plan of a lazy restore's server (engine/memory/lazy_serve.ts): the
 * saved pages of one address space not yet in, as extents (address range
 * and image file offset), one per saved run at the start. Its size is the
 * number of runs, never the number of pages: building it, and every
 * operation before the tree runs, costs the same for 64 MiB as for 2 GiB
 * of one contiguous run. Faults split extents; the background pass eats
 * them from the lowest address; the program's munmap, madvise and mremap
 * remove or move ranges.
 *
 * Addresses and offsets are plain numbers (user addresses stay below 2^47).
 *
 * @module
 */

const PAGE = 4096;

/** Saved pages [start, end) not yet in; the page at `start` is at `fileOffset` in the image. */
export interface Extent {
  start: number;
  end: number;
  fileOffset: number;
}

/** A saved run of the image, as the compiler gives it (engine/memory/lazy.ts `LazyRegion`). */
export interface SavedRun {
  /** A number, or the image's hex string ("0x7f..."). */
  addr: string | bigint | number;
  /** Bytes. */
  length: number;
  fileOffset: number;
}

/**
 * Pending saved pages of one address space: sorted, disjoint extents
 * (an emptied extent stays in place, start = end, until compacted).
 */
export class PendingPages {
  #ext: Extent[];
  #pages = 0;
  /** Extents before this index are empty. */
  #head = 0;
  #empty = 0;

  private constructor(ext: Extent[]) {
    this.#ext = ext;
    for (const e of ext) {
      this.#pages += (e.end - e.start) / PAGE;
      if (e.end === e.start) this.#empty++;
    }
  }

  /** The plan of `runs` (any order; they must not overlap). */
  static fromRuns(runs: Iterable<SavedRun>): PendingPages {
    const ext: Extent[] = [];
    for (const r of runs) {
      if (r.length <= 0) continue;
      const start = typeof r.addr === "string" ? parseInt(r.addr.slice(2), 16) : Number(r.addr);
      ext.push({ start, end: start + r.length, fileOffset: r.fileOffset });
    }
    ext.sort((a, b) => a.start - b.start);
    return new PendingPages(ext);
  }

  /** From {@link toFlat}. */
  static fromFlat(flat: readonly number[]): PendingPages {
    const ext: Extent[] = [];
    for (let i = 0; i + 2 < flat.length; i += 3) {
      ext.push({ start: flat[i], end: flat[i + 1], fileOffset: flat[i + 2] });
    }
    return new PendingPages(ext);
  }

  /** The non-empty extents as [start, end, fileOffset, ...] (for a hand-over). */
  toFlat(): number[] {
    const out: number[] = [];
    for (let i = this.#head; i < this.#ext.length; i++) {
      const e = this.#ext[i];
      if (e.end > e.start) out.push(e.start, e.end, e.fileOffset);
    }
    return out;
  }

  /** An independent copy (a forked child's plan). */
  clone(): PendingPages {
    return PendingPages.fromFlat(this.toFlat());
  }

  /** Pages pending. */
  get pages(): number {
    return this.#pages;
  }

  /** Entries held (the plan's size: runs plus the splits made since). */
  get entries(): number {
    return this.#ext.length - this.#empty;
  }

  /** Nothing pending any more. */
  clear(): void {
    this.#ext = [];
    this.#pages = 0;
    this.#head = 0;
    this.#empty = 0;
  }

  /** Index of the first extent (from `from`) whose end is above `addr` (ends are non-decreasing). */
  #firstEndingAfter(addr: number, from = this.#head): number {
    let lo = from, hi = this.#ext.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#ext[mid].end > addr) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /**
   * The pending pages from page `addr` on, up to `maxPages`, contiguous
   * in memory and in the file; undefined when page `addr` is not pending.
   */
  at(addr: number, maxPages: number): { pages: number; fileOffset: number } | undefined {
    const i = this.#firstEndingAfter(addr);
    const e = this.#ext[i];
    if (!e || e.start > addr) return undefined;
    return {
      pages: Math.min(maxPages, (e.end - addr) / PAGE),
      fileOffset: e.fileOffset + (addr - e.start),
    };
  }

  /** The lowest pending page (the background pass's next), or undefined. */
  first(): number | undefined {
    while (this.#head < this.#ext.length) {
      const e = this.#ext[this.#head];
      if (e.end > e.start) return e.start;
      this.#head++;
    }
    return undefined;
  }

  /** The pending pieces within [start, end) (clipped), in address order. */
  within(start: number, end: number): Extent[] {
    const out: Extent[] = [];
    for (let i = this.#firstEndingAfter(start); i < this.#ext.length; i++) {
      const e = this.#ext[i];
      if (e.start >= end) break;
      if (e.end === e.start) continue;
      const s = Math.max(start, e.start);
      out.push({ start: s, end: Math.min(end, e.end), fileOffset: e.fileOffset + (s - e.start) });
    }
    return out;
  }

  /** Removes [start, end) (page aligned) from the plan; returns the pages removed. */
  remove(start: number, end: number): number {
    let removed = 0;
    for (let i = this.#firstEndingAfter(start); i < this.#ext.length; i++) {
      const e = this.#ext[i];
      if (e.start >= end) break;
      if (e.end === e.start) continue;
      const s = Math.max(start, e.start), t = Math.min(end, e.end);
      removed += (t - s) / PAGE;
      if (s === e.start && t === e.end) {
        e.start = e.end; // emptied, stays in place
        this.#empty++;
      } else if (s === e.start) {
        e.fileOffset += t - e.start;
        e.start = t;
      } else if (t === e.end) {
        e.end = s;
      } else {
        // A hole in the middle: split.
        this.#ext.splice(i + 1, 0, {
          start: t,
          end: e.end,
          fileOffset: e.fileOffset + (t - e.start),
        });
        e.end = s;
        i++;
      }
    }
    this.#pages -= removed;
    if (this.#empty > 64 && this.#empty * 2 > this.#ext.length) this.#compact();
    return removed;
  }

  /** Removes [start, end) and returns its pending pieces (a range the program moved). */
  extract(start: number, end: number): Extent[] {
    const pieces = this.within(start, end);
    this.remove(start, end);
    return pieces;
  }

  /** Adds `pieces` (disjoint from every pending extent and from each other). */
  insert(pieces: readonly Extent[]): void {
    // An emptied extent may lie inside a piece's range (pages in already
    // where the program moves memory to): drop them first, or the ends
    // would no longer be ordered (rare: a remap).
    if (this.#empty > 0) this.#compact();
    for (const p of pieces) {
      if (p.end <= p.start) continue;
      const i = this.#firstEndingAfter(p.start, 0);
      this.#ext.splice(i, 0, { ...p });
      this.#head = Math.min(this.#head, i);
      this.#pages += (p.end - p.start) / PAGE;
    }
  }

  #compact(): void {
    this.#ext = this.#ext.filter((e) => e.end > e.start);
    this.#head = 0;
    this.#empty = 0;
  }
}
