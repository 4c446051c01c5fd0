/**
 * Which pages of a frozen process go into its image, and where each one's
 * content comes from: planned with one PAGEMAP_SCAN of the process
 * (engine/proc/pagemap_scan.ts), split against a pre-copy when there is
 * one (engine/dump/precopy.ts), then saved.
 *
 * @module
 */

import type { Mapping, PageRun } from "../model.ts";
import type { PageSpan } from "../memory/inherit.ts";
import {
  PagemapScanner,
  runsOfRange,
  runsOfRangeFlat,
  type ScanRegion,
} from "../proc/pagemap_scan.ts";
import { inAddressOrder, type PagePolicy, type Vma } from "./vmas.ts";
import { takeScanAhead } from "./scan_ahead.ts";
import type { PrecopyProcess, SplitPiece } from "./precopy.ts";
import type { MemoryStreamer } from "./memory.ts";
import type { ImageWriter } from "../image/writer.ts";
import { findFrom, findIndexBelow } from "../find_from.ts";

/** The pages to save of each mapping of one process. */
export interface PagePlan {
  /**
   * Per mapping (same index as the vmas): pieces in address order. Without
   * a page source they are all in {@link reads} instead, and these empty.
   */
  pieces: SplitPiece[][];
  /**
   * Without a page source: every run to read, as mapping index, address,
   * length (three numbers per run, mappings in address order): no object
   * per run of 10,000 mappings in the freeze. A run of readable mappings
   * may go on into the mappings after its own (index order is address
   * order then): touching readable mappings of one policy are planned as
   * one range, and {@link savePlanned} gives each mapping its part.
   */
  reads?: number[];
  /** Bytes to read from the process now. */
  readBytes: number;
  /** Bytes whose pre-copied content is kept. */
  reusedBytes: number;
  /** Bytes referenced in the parent chain (engine/dump/parent.ts). */
  parentBytes: number;
}

/** Where pages already saved may come from: a pre-copy, or a parent image. */
export type PageSource = Pick<PrecopyProcess, "split" | "scanned">;

/**
 * Plans the pages of `vmas` of stopped process `pid`: per mapping, the
 * runs its policy selects (or the runs `inherited` gives), split against
 * the pre-copy `pre` when given.
 */
export function planPages(
  pid: number,
  vmas: readonly Vma[],
  policies: readonly PagePolicy[],
  inherited: (index: number) => PageSpan[] | undefined,
  pre?: PageSource,
): PagePlan {
  const order = addressOrder(vmas);
  // The first and the last mapping in address order whose pages are wanted.
  const wanted = (k: number) => policies[k] !== "none" && vmas[k].path !== "[vsyscall]";
  let first = 0, last = order.length - 1;
  while (first < order.length && !wanted(order[first])) first++;
  while (last > first && !wanted(order[last])) last--;
  let regions: ScanRegion[] = [];
  if (first < order.length) {
    const lo = Number(vmas[order[first]].start);
    const hi = Number(vmas[order[last]].end);
    const known = pre?.scanned;
    if (known && known.start <= lo && hi <= known.end) {
      regions = known.regions; // walked once already at this freeze, by the pre-copy's validation
    } else {
      // Walked ahead on another thread at the collect (scan_ahead.ts), else here.
      regions = takeScanAhead(pid, lo, hi) ?? scanHere(pid, lo, hi);
    }
  }
  // Mappings without pages (most of 10,000 small ones have one run or none) share one empty list.
  const pieces: SplitPiece[][] = new Array(vmas.length).fill(NO_PIECES);
  let readBytes = 0, reusedBytes = 0, parentBytes = 0;
  let cursor = 0;
  const split = { i: 0 };
  const runs: { addr: number; length: number }[] = [];
  if (!pre) {
    const { reads, bytes } = planReads(vmas, order, policies, inherited, regions);
    return { pieces, reads, readBytes: bytes, reusedBytes, parentBytes };
  }
  // Indexed loops: this runs once per dump, mostly before V8 optimises it (no iterators).
  for (let o = 0; o < order.length; o++) {
    const k = order[o];
    const v = vmas[k];
    runs.length = 0;
    const given = inherited(k);
    if (given) {
      for (const r of given) runs.push({ addr: Number(r.addr), length: r.length });
    } else if (policies[k] !== "none" && v.path !== "[vsyscall]") {
      cursor = runsOfRange(
        regions,
        cursor,
        Number(v.start),
        Number(v.end),
        policies[k] === "anon-present",
        runs,
      );
    }
    if (runs.length === 0) continue;
    const out: SplitPiece[] = pieces[k] = [];
    if (!pre) {
      for (let i = 0; i < runs.length; i++) {
        const r = runs[i];
        out.push({ addr: r.addr, length: r.length, source: "read", fileOffset: 0 });
        readBytes += r.length;
      }
      continue;
    }
    for (const r of runs) {
      // A loop, not push(...): a long dirty history splits one run into 100,000s of pieces.
      for (const p of pre.split(r, split)) out.push(p);
    }
    for (const p of out) {
      if (p.source === "reuse") reusedBytes += p.length;
      else if (p.source === "parent") parentBytes += p.length;
      else readBytes += p.length;
    }
  }
  return { pieces, readBytes, reusedBytes, parentBytes };
}

/**
 * The reads of a plan without a page source ({@link PagePlan.reads}):
 * `order` the indexes of `vmas` in address order, `regions` the data
 * pages of the process (PAGEMAP_SCAN). Exported for tests.
 */
export function planReads(
  vmas: readonly Vma[],
  order: readonly number[],
  policies: readonly PagePolicy[],
  inherited: (index: number) => PageSpan[] | undefined,
  regions: readonly ScanRegion[],
): { reads: number[]; bytes: number } {
  const wanted = (k: number) => policies[k] !== "none" && vmas[k].path !== "[vsyscall]";
  let cursor = 0;
  const reads: number[] = [];
  // Touching readable mappings of one policy, none given its runs, whose indexes follow
  // each other in address order, are one range (10,000 one-page mappings of alternating
  // protections: a few): its runs are theirs, cut where each one ends (savePlanned's
  // records, after the thaw). Through findFrom: no loop of 10,000 rounds for V8 to
  // compile (engine/find_from.ts); `skipTo` is the next position not joined to a range.
  let skipTo = 0;
  findFrom(order, (k, o) => {
    if (o < skipTo) return false;
    skipTo = o + 1;
    const given = inherited(k);
    if (given) {
      for (const r of given) reads.push(k, Number(r.addr), r.length);
    } else if (wanted(k)) {
      const v = vmas[k], policy = policies[k];
      if (v.perms[0] === "r") {
        // Position `p` of `order` holds the mapping after the one before, joined to the range.
        const joins = (kk: number, p: number) =>
          kk === k + (p - o) && policies[kk] === policy && vmas[kk].perms[0] === "r" &&
          Number(vmas[kk].start) === Number(vmas[kk - 1].end) && vmas[kk].path !== "[vsyscall]" &&
          !inherited(kk);
        // (The first one tested here: most ranges are one mapping, no slice for them.)
        if (o + 1 < order.length && joins(order[o + 1], o + 1)) {
          const stop = findFrom(order, (kk, p) => !joins(kk, p), o + 2);
          skipTo = stop < 0 ? order.length : stop;
        }
      }
      const end = Number(vmas[order[skipTo - 1]].end);
      cursor = runsOfRangeFlat(
        regions,
        cursor,
        Number(v.start),
        end,
        policy === "anon-present",
        k,
        reads,
      );
    }
    return false;
  });
  let bytes = 0;
  for (let i = 2; i < reads.length; i += 3) bytes += reads[i];
  return { reads, bytes };
}

/** The data regions of [lo, hi) of `pid`, walked on this thread. */
function scanHere(pid: number, lo: number, hi: number): ScanRegion[] {
  using scanner = new PagemapScanner(pid);
  return scanner.dataRegions(lo, hi);
}

/** A mapping's page runs before any is saved (replaced, never added to). */
const NO_PAGES: PageRun[] = Object.freeze([]) as unknown as PageRun[];

/** The pieces of every mapping without any (never added to). */
const NO_PIECES: SplitPiece[] = Object.freeze([]) as unknown as SplitPiece[];

/** Indexes of `vmas` in address order (smaps lists them so: no sort then). */
function addressOrder(vmas: readonly Vma[]): number[] {
  const order = Array.from(vmas.keys()); // (no loop of 10,000 rounds for V8 to compile)
  if (inAddressOrder(vmas)) return order; // (known for the maps parsed before the freeze)
  return order.sort((a, b) => (vmas[a].start < vmas[b].start ? -1 : 1));
}

/** Bytes read at a time for pages written over their pre-copy. */
const OVERWRITE_CHUNK = 1 << 20;

/**
 * Saves the planned pages of `vmas`, whose records are `mappings` (the same
 * index; each record's `start` the text of its area's start, `0x` and
 * lower-case hex, as engine/dump/mapping_drafts.ts makes it): reads the "read" pieces through `streamer`
 * (packed, appended), keeps the "reuse" ones where they are, reads the
 * "overwrite" ones and writes them over their pre-copy. Sets each mapping's
 * `pages`, except those of mappings whose pieces are all read: their
 * runs are kept as numbers, and their `pages` set by the function returned
 * (called after the thaw: 10,000 records and their address texts are no
 * work for the freeze). Until it is called their `pages` are empty.
 */
export function savePlanned(
  plan: PagePlan,
  vmas: readonly Vma[],
  mappings: Mapping[],
  streamer: MemoryStreamer,
  writer: ImageWriter,
  onBytes: (n: number) => void,
): () => void {
  // Per run of an all-read mapping: its mapping's index, address, length, file offset.
  const later: number[] = [];
  const reads = plan.reads;
  // Runs of readable mappings that touch (one-page mappings of alternating protections)
  // are read as one: their data lies back to back in the image, each run's offset follows.
  const merge = streamer.onUnreadable === undefined;
  /** Saves read `i` (at `reads[i]`) one mapping at a time; returns the offset of its data. */
  const savePieces = (i: number) => {
    let k = reads![i], addr = reads![i + 1], left = reads![i + 2];
    const at = streamer.saveRun(vmas[k], addr, Math.min(left, Number(vmas[k].end) - addr), onBytes);
    for (let n = Number(vmas[k].end) - addr; n < left; n = Number(vmas[k].end) - addr) {
      addr += n;
      left -= n;
      streamer.saveRun(vmas[++k], addr, Math.min(left, Number(vmas[k].end) - addr), onBytes);
    }
    return at;
  };
  // Read by read through findIndex: no loop of 10,000 rounds for V8 to compile
  // (engine/find_from.ts); `next` is the first read not saved yet.
  let next = 0;
  findIndexBelow(reads ? reads.length / 3 : 0, (r) => {
    const i = 3 * r;
    if (!reads || i < next) return false;
    const k = reads[i], addr = reads[i + 1];
    let length = reads[i + 2], j = i + 3;
    if (merge && vmas[k].perms[0] === "r") {
      while (
        j < reads.length && reads[j + 1] === addr + length && vmas[reads[j]].perms[0] === "r"
      ) {
        length += reads[j + 2];
        j += 3;
      }
    }
    // (Not merged, a run planned over a range is read mapping by mapping, each a piece.)
    const at = merge ? streamer.saveRun(vmas[k], addr, length, onBytes) : savePieces(i);
    for (let q = i; q < j; q += 3) {
      later.push(reads[q], reads[q + 1], reads[q + 2], at + reads[q + 1] - addr);
    }
    next = j;
    return false;
  });
  let scratch: Uint8Array | undefined;
  // The batch's entries are reused from mapping to mapping (saveRuns keeps none of them).
  // Addresses stay numbers (exact below 2^53): no bigint per run.
  const batch: { addr: number; length: number }[] = [];
  const pool: { addr: number; length: number }[] = [];
  const entry = (n: number, addr: number, length: number) => {
    const e = pool[n] ??= { addr: 0, length: 0 };
    e.addr = addr;
    e.length = length;
    return e;
  };
  // By forEach: no loop of 10,000 rounds for V8 to compile (engine/find_from.ts).
  plan.pieces.forEach((pieces, k) => {
    if (pieces.length === 0) return;
    const v = vmas[k];
    let allRead = true;
    for (let i = 0; i < pieces.length && allRead; i++) allRead = pieces[i].source === "read";
    if (allRead) {
      for (let i = 0; i < pieces.length; i++) {
        const p = pieces[i];
        later.push(k, p.addr, p.length, streamer.saveRun(v, p.addr, p.length, onBytes));
      }
      return;
    }
    let pages: PageRun[] = NO_PAGES;
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i];
      if (p.source === "read") {
        // Consecutive read pieces go to the streamer together (one batch of reads).
        batch.length = 0;
        batch.push(entry(0, p.addr, p.length));
        while (i + 1 < pieces.length && pieces[i + 1].source === "read") {
          const q = pieces[++i];
          batch.push(entry(batch.length, q.addr, q.length));
        }
        const got = streamer.saveRuns(v, batch, onBytes);
        if (pages.length === 0) pages = got; // the common case: no copy
        else for (const r of got) pages.push(r);
        continue;
      }
      if (pages === NO_PAGES) pages = [];
      if (p.source === "parent") {
        const last = pages[pages.length - 1];
        if (
          last?.parent === p.depth && BigInt(last.addr) + BigInt(last.length) === BigInt(p.addr) &&
          last.fileOffset + last.length === p.fileOffset
        ) {
          last.length += p.length;
        } else {
          pages.push({
            addr: `0x${p.addr.toString(16)}`,
            length: p.length,
            fileOffset: p.fileOffset,
            parent: p.depth,
          });
        }
        continue;
      }
      pages.push({ addr: `0x${p.addr.toString(16)}`, length: p.length, fileOffset: p.fileOffset });
      if (p.source === "reuse") continue;
      scratch ??= new Uint8Array(OVERWRITE_CHUNK);
      for (let done = 0; done < p.length;) {
        const n = Math.min(OVERWRITE_CHUNK, p.length - done);
        const buf = scratch.subarray(0, n);
        streamer.readInto(v, BigInt(p.addr + done), buf);
        writer.writePagesAtSync(p.fileOffset + done, buf);
        done += n;
        onBytes(n);
      }
    }
    mappings[k].pages = pages;
  });
  return function runsToPages() {
    // Each run's part in each mapping it covers: the mapping it is tagged with, or, for a
    // run planned over a range of mappings (planPages; index order is address order
    // then), each mapping of the range it reaches.
    // Consecutive runs of one tag are one mapping's, or one range's in address order.
    // Run by run, and mapping by mapping, through findIndex: no loop of 10,000 rounds
    // for V8 to compile (engine/find_from.ts).
    let tag = -1, k = -1, end = 0;
    let pages: PageRun[] = NO_PAGES;
    /**
     * Adds the part of [addr, addr + length) at file offset `at` in mapping `k`; its length.
     * A part from the mapping's start takes the record's own text of it (the same text:
     * most of 10,000 one-run mappings make none).
     */
    const addPart = (addr: number, length: number, at: number) => {
      const m = mappings[k];
      if (pages === NO_PAGES) m.pages = pages = [];
      const n = Math.min(length, end - addr);
      const text = addr === Number(vmas[k].start) ? m.start : `0x${addr.toString(16)}`;
      pages.push({ addr: text, length: n, fileOffset: at });
      return n;
    };
    findIndexBelow(later.length / 4, (r) => {
      const i = 4 * r;
      let addr = later[i + 1], length = later[i + 2], at = later[i + 3];
      if (later[i] !== tag) {
        tag = k = later[i];
        end = Number(vmas[k].end);
        pages = NO_PAGES;
      }
      if (addr >= end) { // the first mapping after k that the run reaches
        k = findFrom(vmas, (v) => addr < Number(v.end), k + 1);
        if (k < 0) throw new RangeError(`page run 0x${addr.toString(16)} beyond the mappings`);
        end = Number(vmas[k].end);
        pages = NO_PAGES;
      }
      const n = addPart(addr, length, at);
      if (n === length) return false;
      addr += n;
      length -= n;
      at += n;
      // The mappings after k that it covers, up to the one where it ends.
      k = findFrom(vmas, (v, next) => {
        k = next;
        end = Number(v.end);
        pages = NO_PAGES;
        const part = addPart(addr, length, at);
        addr += part;
        length -= part;
        at += part;
        return length === 0;
      }, k + 1);
      if (k < 0) throw new RangeError(`page run 0x${addr.toString(16)} beyond the mappings`);
      return false;
    });
    later.length = 0;
  };
}
