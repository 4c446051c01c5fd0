/**
 * Reader of /proc/<pid>/pagemap: one 64-bit entry per virtual page, read in
 * bulk (up to {@link PAGEMAP_CHUNK_ENTRIES} entries per read) into typed
 * arrays, and a run finder that scans entries without allocating per page.
 *
 * Entry layout (Documentation/admin-guide/mm/pagemap.rst):
 * bits 0-54 PFN when present (0 without CAP_SYS_ADMIN), or swap type (0-4)
 * and offset (5-54) when swapped; 55 soft-dirty; 56 exclusively mapped;
 * 57 uffd-wp; 58 guard region; 61 file page or shared anonymous; 62 swapped;
 * 63 present.
 *
 * The hot paths look only at the HIGH 32-bit word of each entry, which holds
 * all flag bits: bit n of the entry is bit n-32 of the high word. The
 * {@link PM} masks are high-word masks as signed 32-bit integers, so
 * `(hi & PM.PRESENT) !== 0` is the present test.
 *
 * @module
 */

import { assertAlive } from "./errors.ts";
import { procPath, procRead } from "./io.ts";

/** Page size of x86-64. */
export const PAGE_SIZE = 4096;

/** Entries read per read() call at most (64 Ki entries = 512 KiB). */
export const PAGEMAP_CHUNK_ENTRIES = 65536;

/** Flag masks on the HIGH 32-bit word of a pagemap entry (signed int32 values). */
export const PM = {
  /** Bit 55: soft-dirty. */
  SOFT_DIRTY: 1 << 23,
  /** Bit 56: page exclusively mapped (anonymous, not shared with a fork). */
  EXCLUSIVE: 1 << 24,
  /** Bit 57: write-protected by userfaultfd. */
  UFFD_WP: 1 << 25,
  /** Bit 58: guard region (MADV_GUARD_INSTALL). */
  GUARD: 1 << 26,
  /** Bit 61: file page or shared anonymous (shmem) page. */
  FILE: 1 << 29,
  /** Bit 62: swapped out. */
  SWAPPED: 1 << 30,
  /** Bit 63: present in RAM. */
  PRESENT: 1 << 31,
} as const;

/**
 * A declarative page test on the high word: every bit of `all` set, at
 * least one bit of `any` set (if given), no bit of `none` set; with
 * `notZeroPage`, not a zero page ({@link ZeroFrames}).
 */
export interface PageMask {
  all?: number;
  any?: number;
  none?: number;
  /**
   * Leave out the zero page (the shared zero page or the huge zero page,
   * mapped by a read fault in private anonymous memory: a hole, as
   * PAGEMAP_SCAN's PAGE_IS_PFNZERO tells engine/proc/pagemap_scan.ts).
   * Known only from frames (CAP_SYS_ADMIN): without them nothing is left out.
   */
  notZeroPage?: boolean;
}

/** A page test: a {@link PageMask} (fast path) or a function of the two 32-bit halves. */
export type PageMatch = PageMask | ((hi: number, lo: number) => boolean);

/**
 * Pages with data in them: present or swapped (any backing), not the zero
 * page. Guard regions read as swapped entries with bit 58 set: they hold no data.
 */
export const PRESENT_OR_SWAPPED: PageMask = {
  any: PM.PRESENT | PM.SWAPPED,
  none: PM.GUARD,
  notZeroPage: true,
};

/**
 * Pages whose content belongs to the process: present or swapped and not a
 * file/shmem page, nor the zero page. In a private file mapping these are the COW'd pages.
 */
export const ANON_PRESENT_OR_SWAPPED: PageMask = {
  any: PM.PRESENT | PM.SWAPPED,
  none: PM.FILE | PM.GUARD,
  notZeroPage: true,
};

/** KPF_ZERO_PAGE: bit 24 of a /proc/kpageflags entry (low word). */
const KPF_ZERO_PAGE = 1 << 24;

/**
 * Which page frames are a zero page: the shared zero page, or a frame of
 * the huge zero page (KPF_ZERO_PAGE of /proc/kpageflags, root only), one
 * read per frame asked about, cached. A zero page entry is present and not
 * exclusive ({@link ZeroFrames.candidate}; the shared zero page reads as
 * no file page, the huge zero page as a file page, bit 61, on 6.18): only
 * those frames are asked about, so a walk of private anonymous memory
 * reads a handful (the zero page, the huge one's 512 frames at most).
 * Short-lived (one walk, one dump): the huge zero page can be freed once
 * no process maps it and made again at other frames.
 */
export class ZeroFrames implements Disposable {
  readonly #known = new Map<number, boolean>();
  #file: Deno.FsFile | null | undefined;

  /** Whether an entry with high word `hi` can be a zero page (before its frame is looked at). */
  static candidate(hi: number): boolean {
    return (hi & (PM.PRESENT | PM.EXCLUSIVE)) === PM.PRESENT;
  }

  /** Whether frame `pfn` is a zero page (false for frame 0: frames hidden, and when kpageflags cannot be read). */
  is(pfn: number): boolean {
    if (pfn === 0) return false;
    const k = this.#known.get(pfn);
    if (k !== undefined) return k;
    if (this.#file === undefined) {
      try {
        this.#file = Deno.openSync("/proc/kpageflags", { read: true });
      } catch {
        this.#file = null;
      }
    }
    let zero = false;
    if (this.#file) {
      const b = new Uint8Array(8);
      try {
        this.#file.seekSync(pfn * 8, Deno.SeekMode.Start);
        if (this.#file.readSync(b) === 8) {
          zero = (new DataView(b.buffer).getUint32(0, true) & KPF_ZERO_PAGE) !== 0;
        }
      } catch { /* not a frame the kernel knows: not the zero page */ }
    }
    this.#known.set(pfn, zero);
    return zero;
  }

  /** Closes /proc/kpageflags. */
  [Symbol.dispose](): void {
    this.#file?.close();
    this.#file = null;
  }
}

/** A run of consecutive matching pages: [start address, length in bytes]. */
export type PageRunTuple = [addr: bigint, length: number];

/** Pagemap entries of a page range, backed by one buffer (no per-page objects). */
export class PagemapEntries {
  /** Address of entry 0. */
  readonly start: bigint;
  /** Number of entries. */
  readonly length: number;
  /** Low and high 32-bit words interleaved: entry i is words[2i] | words[2i+1] << 32. */
  readonly words: Uint32Array;
  readonly #hi: Int32Array;

  constructor(start: bigint, buffer: ArrayBuffer, length: number) {
    this.start = start;
    this.length = length;
    this.words = new Uint32Array(buffer, 0, length * 2);
    this.#hi = new Int32Array(buffer, 0, length * 2);
  }

  /** High word of entry i (flags; signed int32). */
  hi(i: number): number {
    return this.#hi[2 * i + 1];
  }
  /** Low word of entry i (unsigned). */
  lo(i: number): number {
    return this.words[2 * i];
  }
  /** Entry i as a 64-bit bigint (allocates; prefer the bit helpers in loops). */
  entry(i: number): bigint {
    return (BigInt(this.words[2 * i + 1]) << 32n) | BigInt(this.words[2 * i]);
  }
  /** Virtual address of entry i. */
  address(i: number): bigint {
    return this.start + BigInt(i * PAGE_SIZE);
  }
  /** Bit 63. */
  present(i: number): boolean {
    return (this.#hi[2 * i + 1] & PM.PRESENT) !== 0;
  }
  /** Bit 62. */
  swapped(i: number): boolean {
    return (this.#hi[2 * i + 1] & PM.SWAPPED) !== 0;
  }
  /** Bit 61: file page or shared anonymous. */
  fileOrSharedAnon(i: number): boolean {
    return (this.#hi[2 * i + 1] & PM.FILE) !== 0;
  }
  /** Bit 56. */
  exclusive(i: number): boolean {
    return (this.#hi[2 * i + 1] & PM.EXCLUSIVE) !== 0;
  }
  /** Bit 55. */
  softDirty(i: number): boolean {
    return (this.#hi[2 * i + 1] & PM.SOFT_DIRTY) !== 0;
  }
  /** Bits 0-54 as a number (exact: PFNs stay far below 2^53). */
  pfn(i: number): number {
    return (this.words[2 * i + 1] & 0x7fffff) * 0x100000000 + this.words[2 * i];
  }
  /** Whether entry i maps a zero page (known from frames only: {@link ZeroFrames}). */
  zeroPage(i: number, frames: ZeroFrames): boolean {
    return ZeroFrames.candidate(this.#hi[2 * i + 1]) && frames.is(this.pfn(i));
  }
  /** Swap type (bits 0-4) of a swapped entry. */
  swapType(i: number): number {
    return this.words[2 * i] & 0x1f;
  }
  /** Swap offset (bits 5-54) of a swapped entry. */
  swapOffset(i: number): number {
    return (this.words[2 * i + 1] & 0x7fffff) * 0x8000000 + (this.words[2 * i] >>> 5);
  }
}

function pageIndex(addr: bigint | number): number {
  const a = typeof addr === "bigint" ? Number(addr) : addr;
  return Math.floor(a / PAGE_SIZE);
}

/** Highest user address + 1 on x86-64 with 4-level paging; reads above it hit EOF. */
const USER_TOP_PAGE = 0x7ffffffff;

/**
 * An open /proc/<pid>/pagemap. Keep one per process for a whole dump (it
 * owns a reusable 512 KiB scratch buffer); close it, or use `using`.
 */
export class PagemapReader implements Disposable {
  /** The process. */
  readonly pid: number;
  readonly #path: string;
  readonly #file: Deno.FsFile;
  readonly #scratch = new ArrayBuffer(PAGEMAP_CHUNK_ENTRIES * 8);
  readonly #scratchBytes = new Uint8Array(this.#scratch);
  readonly #scratchHi = new Int32Array(this.#scratch);
  readonly #scratchLo = new Uint32Array(this.#scratch);

  constructor(pid: number) {
    this.pid = pid;
    this.#path = procPath(pid, "pagemap");
    this.#file = procRead(pid, this.#path, () => Deno.openSync(this.#path, { read: true }));
  }

  /**
   * Fills `dest` with entries starting at page index `firstPage` (one seek
   * plus as few reads as the kernel needs). Entries past the end of the
   * address space read as 0.
   */
  #fill(firstPage: number, dest: Uint8Array): void {
    let done = 0;
    procRead(this.pid, this.#path, () => {
      this.#file.seekSync(firstPage * 8, Deno.SeekMode.Start);
      while (done < dest.byteLength) {
        const n = this.#file.readSync(dest.subarray(done));
        if (n === null || n === 0) break;
        done += n;
      }
    });
    if (done < dest.byteLength) {
      // EOF: a gone/zombie process (no mm) or pages past the top of user space.
      if (firstPage + done / 8 < USER_TOP_PAGE) assertAlive(this.pid, this.#path);
      dest.fill(0, done);
    }
  }

  /** Reads the entries of [start, end) (page aligned outward) into a new buffer. */
  read(start: bigint | number, end: bigint | number): PagemapEntries {
    const first = pageIndex(start);
    const count = Math.max(0, Math.ceil(Number(end) / PAGE_SIZE) - first);
    const buffer = new ArrayBuffer(count * 8);
    const bytes = new Uint8Array(buffer);
    for (let i = 0; i < count; i += PAGEMAP_CHUNK_ENTRIES) {
      const n = Math.min(PAGEMAP_CHUNK_ENTRIES, count - i);
      this.#fill(first + i, bytes.subarray(i * 8, (i + n) * 8));
    }
    return new PagemapEntries(BigInt(first) * BigInt(PAGE_SIZE), buffer, count);
  }

  /**
   * Calls `onRun(addr, length)` for every maximal run of consecutive pages
   * of [start, end) that satisfy `match`, in address order. Addresses and
   * lengths are numbers (exact: page-aligned addresses fit a double). No
   * per-page allocation: entries go through a reused buffer.
   */
  forEachRun(
    start: bigint | number,
    end: bigint | number,
    match: PageMatch,
    onRun: (addr: number, length: number) => void,
  ): void {
    const first = pageIndex(start);
    const last = Math.ceil(Number(end) / PAGE_SIZE);
    const hiWords = this.#scratchHi;
    const loWords = this.#scratchLo;
    const fn = typeof match === "function" ? match : undefined;
    const mask = typeof match === "function" ? {} : match;
    const all = (mask.all ?? 0) | 0;
    const any = (mask.any ?? 0) | 0;
    const none = (mask.none ?? 0) | 0;
    using zero = new ZeroFrames();
    const notZero = mask.notZeroPage === true;
    let runStart = -1; // page index of the open run, -1 when none
    for (let base = first; base < last; base += PAGEMAP_CHUNK_ENTRIES) {
      const n = Math.min(PAGEMAP_CHUNK_ENTRIES, last - base);
      this.#fill(base, this.#scratchBytes.subarray(0, n * 8));
      for (let i = 0; i < n; i++) {
        const hi = hiWords[2 * i + 1];
        const ok = fn
          ? fn(hi, loWords[2 * i])
          : (hi & all) === all && (any === 0 || (hi & any) !== 0) && (hi & none) === 0 &&
            !(notZero && ZeroFrames.candidate(hi) &&
              zero.is((hi & 0x7fffff) * 0x100000000 + loWords[2 * i]));
        if (ok) {
          if (runStart < 0) runStart = base + i;
        } else if (runStart >= 0) {
          onRun(runStart * PAGE_SIZE, (base + i - runStart) * PAGE_SIZE);
          runStart = -1;
        }
      }
    }
    if (runStart >= 0) onRun(runStart * PAGE_SIZE, (last - runStart) * PAGE_SIZE);
  }

  /** The runs of {@link forEachRun} as [bigint address, byte length] tuples. */
  runs(start: bigint | number, end: bigint | number, match: PageMatch): PageRunTuple[] {
    const out: PageRunTuple[] = [];
    this.forEachRun(start, end, match, (a, l) => out.push([BigInt(a), l]));
    return out;
  }

  /** Number of pages of [start, end) that satisfy `match`. */
  countPages(start: bigint | number, end: bigint | number, match: PageMatch): number {
    let total = 0;
    this.forEachRun(start, end, match, (_a, l) => total += l / PAGE_SIZE);
    return total;
  }

  /** Closes the pagemap file. */
  close(): void {
    try {
      this.#file.close();
    } catch { /* already closed */ }
  }

  /** Same as {@link close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Opens /proc/<pid>/pagemap (ProcessGoneError if the process is gone). */
export function openPagemap(pid: number): PagemapReader {
  return new PagemapReader(pid);
}

/** Reads the pagemap entries of [start, end) of `pid` in bulk. */
export function readPagemap(
  pid: number,
  start: bigint | number,
  end: bigint | number,
): PagemapEntries {
  using r = new PagemapReader(pid);
  return r.read(start, end);
}

/**
 * Runs [address, length] of consecutive pages of [start, end) of `pid`
 * satisfying `match` (e.g. {@link ANON_PRESENT_OR_SWAPPED}). For many ranges
 * of one process, keep a {@link PagemapReader} open instead.
 */
export function pageRuns(
  pid: number,
  start: bigint | number,
  end: bigint | number,
  match: PageMatch,
): PageRunTuple[] {
  using r = new PagemapReader(pid);
  return r.runs(start, end, match);
}
