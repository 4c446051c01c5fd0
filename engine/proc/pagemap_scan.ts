/**
 * Planning page runs with the PAGEMAP_SCAN ioctl (Linux 6.7+): one call
 * per process (more only when the region buffer fills) returns the runs of
 * pages that hold data (present or swapped), each with its categories,
 * instead of one 8-byte pagemap entry per page and one read per mapping.
 *
 * The selection is the one of engine/proc/pagemap.ts: a page holds data
 * when it is present or swapped, not a guard region and not the shared
 * zero page ({@link PRESENT_OR_SWAPPED}); it belongs to the process when,
 * besides, it is not a file or shmem page ({@link ANON_PRESENT_OR_SWAPPED}).
 * tests/pagemap_scan_test.ts checks both agree on every mapping kind.
 *
 * The zero page (PAGE_IS_PFNZERO: the shared zero page, or the huge zero
 * page, that a read fault maps in private anonymous memory, or KSM with
 * use_zero_pages) is a hole: it holds zeros and is not counted in Rss, and
 * an area restored without it maps it again at its first read. Every walk
 * that decides which pages to save leaves it out in the kernel's test
 * ({@link NOT_ZERO_PAGE}): no region is returned for it.
 *
 * @module
 */

import { cstr, rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { PAGE_IS } from "../../ffi/probe.ts";
import { ScanBuffer, type ScanInTable, type ScanTest } from "../../ffi/pagemap_scan.ts";
import { assertAlive } from "./errors.ts";

/** A run of data pages with its categories. */
export interface ScanRegion {
  /** First address. */
  start: number;
  /** Address just past the run. */
  end: number;
  /** Not a file or shmem page (it belongs to the process). */
  anon: boolean;
}

/** Pages with data: present or swapped. */
const DATA = PAGE_IS.PRESENT | PAGE_IS.SWAPPED;

/**
 * The part of a {@link ScanTest} that leaves out the zero page: PAGE_IS_PFNZERO
 * inverted and required (spread into every test of pages to save; a test
 * with other inverted or required categories ORs its own in).
 */
export const NOT_ZERO_PAGE = { inverted: PAGE_IS.PFNZERO, mask: PAGE_IS.PFNZERO } as const;

/** The test of {@link PagemapScanner.dataRegions}. */
const DATA_REGIONS: ScanTest = {
  ...NOT_ZERO_PAGE,
  anyOf: DATA,
  returnMask: PAGE_IS.FILE | PAGE_IS.GUARD,
};

/** An open /proc/<pid>/pagemap for PAGEMAP_SCAN. Close it, or use `using`. */
export class PagemapScanner implements Disposable {
  /** The process. */
  readonly pid: number;
  readonly #fd: number;
  readonly #buf: ScanBuffer;

  /**
   * Opens the pagemap of `pid`; `capacity` regions are returned per ioctl
   * (an off-thread walk wants one call: each further one waits for the main thread).
   */
  constructor(pid: number, capacity = 4096) {
    this.pid = pid;
    this.#buf = new ScanBuffer(capacity);
    const O_RDONLY_CLOEXEC = 0o2000000;
    const fd = rawSyscall(SYS.open, cstr(`/proc/${pid}/pagemap`), O_RDONLY_CLOEXEC);
    if (fd < 0n) {
      assertAlive(pid, `/proc/${pid}/pagemap`);
      throw new Error(`open /proc/${pid}/pagemap: errno ${-fd}`);
    }
    this.#fd = Number(fd);
  }

  /**
   * Calls `onRegion(start, end, categories)` for each maximal run of pages
   * of [start, end) that pass `test`, in address order (several calls when
   * the buffer fills; a region reported again by the next call, when the
   * walk stopped inside it, is reported once). Throws on an ioctl error.
   * `first` is the result of the first call when it was made already, on
   * [start, end) with `test` (its regions in the buffer: {@link startDataRegions}).
   */
  scan(
    start: number,
    end: number,
    test: ScanTest,
    onRegion: (start: number, end: number, categories: number) => void,
    first?: { n: number; walkEnd: bigint },
  ): void {
    let at = BigInt(start);
    const stop = BigInt(end);
    // The regions read as 32-bit halves: no bigint per field (10,000 mappings: 30,000 of them).
    const vec = this.#buf.vec;
    const w = new Uint32Array(vec.buffer, vec.byteOffset, vec.length * 2);
    const u64 = (k: number) => w[2 * k] + w[2 * k + 1] * 0x100000000; // below 2^53: addresses, bits
    let floor = 0; // end of the last region reported
    while (at < stop) {
      const { n, walkEnd } = first ?? this.#buf.scan(this.#fd, at, stop, test);
      first = undefined;
      if (n < 0) {
        assertAlive(this.pid, `/proc/${this.pid}/pagemap`);
        throw new Error(`PAGEMAP_SCAN of process ${this.pid}: errno ${-n}`);
      }
      for (let i = 0; i < n; i++) {
        const s = Math.max(u64(3 * i), floor), e = u64(3 * i + 1);
        if (s >= e) continue;
        onRegion(s, e, u64(3 * i + 2));
        floor = e;
      }
      if (walkEnd <= at) break; // no progress: nothing more to report
      at = walkEnd;
    }
  }

  /**
   * {@link scan} with each ioctl on another thread, so that the main
   * thread works while the kernel walks the page tables. Resolves false
   * when a call failed (nothing more is reported: call {@link scan} for the error).
   */
  async scanOffThread(
    start: number,
    end: number,
    test: ScanTest,
    onRegion: (start: number, end: number, categories: number) => void,
  ): Promise<boolean> {
    let at = BigInt(start);
    const stop = BigInt(end);
    const vec = this.#buf.vec;
    let floor = 0;
    while (at < stop) {
      const { n, walkEnd } = await this.#buf.scanOffThread(this.#fd, at, stop, test);
      if (n < 0) return false;
      for (let i = 0; i < n; i++) {
        const s = Math.max(Number(vec[3 * i]), floor), e = Number(vec[3 * i + 1]);
        if (s >= e) continue;
        onRegion(s, e, Number(vec[3 * i + 2]));
        floor = e;
      }
      if (walkEnd <= at) break;
      at = walkEnd;
    }
    return true;
  }

  /**
   * The data pages of [start, end) (present or swapped, not guard regions,
   * not the zero page) as regions in address order, split where `anon` changes.
   */
  dataRegions(start: number, end: number, first?: { n: number; walkEnd: bigint }): ScanRegion[] {
    const out: ScanRegion[] = [];
    const FILE = Number(PAGE_IS.FILE), GUARD = Number(PAGE_IS.GUARD);
    this.scan(start, end, DATA_REGIONS, (s, e, c) => {
      if (c & GUARD) return;
      const anon = (c & FILE) === 0;
      const last = out[out.length - 1];
      if (last && last.end === s && last.anon === anon) last.end = e;
      else out.push({ start: s, end: e, anon });
    }, first);
    return out;
  }

  /**
   * The first PAGEMAP_SCAN call of {@link dataRegions} on [start, end),
   * started on another thread (ffi/syscall_table.ts): pass its result to
   * `dataRegions(start, end, result)` once it is done. The scanner must
   * not be used (nor closed) until then.
   */
  startDataRegions(start: number, end: number): ScanInTable {
    return this.#buf.scanInTable(this.#fd, BigInt(start), BigInt(end), DATA_REGIONS);
  }

  /**
   * {@link dataRegions} and, in the same walk, which data pages were written
   * since they were write-protected, as [start, end) pairs.
   */
  dataAndWritten(start: number, end: number): DataAndWritten {
    const d = dataAndWrittenCollector();
    this.scan(start, end, DATA_AND_WRITTEN, d.onRegion);
    return d.result;
  }

  /**
   * {@link dataAndWritten} walked on another thread: the caller's thread
   * works meanwhile (the process must stay stopped until it settles).
   */
  async dataAndWrittenOffThread(start: number, end: number): Promise<DataAndWritten> {
    const d = dataAndWrittenCollector();
    if (await this.scanOffThread(start, end, DATA_AND_WRITTEN, d.onRegion)) return d.result;
    return this.dataAndWritten(start, end); // a failed call: again here, for its errno
  }

  /** The pages of [start, end) written since they were write-protected, as [start, end) pairs. */
  writtenRanges(start: number, end: number): [number, number][] {
    const out: [number, number][] = [];
    this.scan(start, end, { anyOf: PAGE_IS.WRITTEN, returnMask: PAGE_IS.WRITTEN }, (s, e) => {
      const last = out[out.length - 1];
      if (last && last[1] === s) last[1] = e;
      else out.push([s, e]);
    });
    return out;
  }

  /** Closes the pagemap file. */
  close(): void {
    rawSyscall(SYS.close, this.#fd);
  }

  /** Same as {@link close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Maximal page runs of one mapping from the regions of its process
 * (sorted): with `anonOnly` only the process's own pages. `from` is a
 * cursor into `regions` (mappings are visited in address order); returns
 * the new cursor.
 */
export function runsOfRange(
  regions: readonly ScanRegion[],
  from: number,
  start: number,
  end: number,
  anonOnly: boolean,
  out: { addr: number; length: number }[],
): number {
  let i = from;
  while (i < regions.length && regions[i].end <= start) i++;
  for (let j = i; j < regions.length && regions[j].start < end; j++) {
    const r = regions[j];
    if (anonOnly && !r.anon) continue;
    const s = Math.max(r.start, start), e = Math.min(r.end, end);
    const last = out[out.length - 1];
    if (last && last.addr + last.length === s) last.length += e - s;
    else out.push({ addr: s, length: e - s });
  }
  return i;
}

/**
 * {@link runsOfRange} into a flat list: appends `tag`, address, length for
 * each run (adjacent pieces joined), no object per run. Returns the new
 * cursor.
 */
export function runsOfRangeFlat(
  regions: readonly ScanRegion[],
  from: number,
  start: number,
  end: number,
  anonOnly: boolean,
  tag: number,
  out: number[],
): number {
  let i = from;
  while (i < regions.length && regions[i].end <= start) i++;
  const first = out.length;
  for (let j = i; j < regions.length && regions[j].start < end; j++) {
    const r = regions[j];
    if (anonOnly && !r.anon) continue;
    const s = r.start > start ? r.start : start, e = r.end < end ? r.end : end;
    const n = out.length;
    if (n > first && out[n - 2] + out[n - 1] === s) out[n - 1] += e - s;
    else out.push(tag, s, e - s);
  }
  return i;
}

/** The data pages of a range and which of them were written since write-protected. */
export interface DataAndWritten {
  /** Data pages in address order, split where `anon` changes. */
  regions: ScanRegion[];
  /** The written pages, as [start, end) pairs. */
  written: [number, number][];
}

/** The test of {@link PagemapScanner.dataAndWritten}. */
const DATA_AND_WRITTEN: ScanTest = {
  ...NOT_ZERO_PAGE,
  anyOf: DATA,
  returnMask: PAGE_IS.FILE | PAGE_IS.GUARD | PAGE_IS.WRITTEN,
};

/** The region callback of {@link PagemapScanner.dataAndWritten} and what it fills. */
function dataAndWrittenCollector(): {
  onRegion: (s: number, e: number, c: number) => void;
  result: DataAndWritten;
} {
  const regions: ScanRegion[] = [];
  const written: [number, number][] = [];
  const FILE = Number(PAGE_IS.FILE), GUARD = Number(PAGE_IS.GUARD);
  const WRITTEN = Number(PAGE_IS.WRITTEN);
  const onRegion = (s: number, e: number, c: number) => {
    if (c & GUARD) return;
    const anon = (c & FILE) === 0;
    const last = regions[regions.length - 1];
    if (last && last.end === s && last.anon === anon) last.end = e;
    else regions.push({ start: s, end: e, anon });
    if (c & WRITTEN) {
      const w = written[written.length - 1];
      if (w && w[1] === s) w[1] = e;
      else written.push([s, e]);
    }
  };
  return { onRegion, result: { regions, written } };
}
