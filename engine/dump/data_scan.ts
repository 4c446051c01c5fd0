/**
 * The data pages of a frozen process (and, for a pre-copy, which of them
 * were written since they were write-protected) in one PAGEMAP_SCAN walk,
 * made cheaper by asking the kernel for PAGE_IS_FILE only where the answer
 * is not known beforehand.
 *
 * PAGE_IS_FILE makes the kernel look at each present page's `struct page`
 * (vm_normal_page + PageAnon): at 2 GiB of 4 KiB pages that is ~50 of the
 * walk's ~60 ms, the rest ~8 ms (docs/PERFORMANCE.md, "The final freeze at
 * 2 GiB"). In a private mapping without a file (maps path "", [heap],
 * [stack] or [anon:name], no inode) every mapped page is the process's own:
 * an anonymous (or KSM) page, or the zero page, which the kernel never
 * reports as a file page either (and which every walk leaves out: a hole).
 * Those mappings are therefore walked without the test and their pages
 * reported `anon`; every other mapping (files, shared memory, special
 * mappings) is walked with it, as before.
 *
 * @module
 */

import { PAGE_IS } from "../../ffi/probe.ts";
import type { ScanTest } from "../../ffi/pagemap_scan.ts";
import type { MapEntry } from "../proc/maps.ts";
import {
  type DataAndWritten,
  NOT_ZERO_PAGE,
  PagemapScanner,
  type ScanRegion,
} from "../proc/pagemap_scan.ts";

/** A stretch of the address space walked with one test. */
export interface ScanSegment {
  start: number;
  end: number;
  /** Private mappings without a file only: no page of it is a file page. */
  plainAnon: boolean;
}

/** Whether every page mapped in `m` is the process's own (a private mapping without a file). */
export function isPlainAnon(m: Pick<MapEntry, "perms" | "inode" | "path">): boolean {
  if (m.perms[3] !== "p" || m.inode !== 0) return false;
  const p = m.path;
  return p === "" || p === "[heap]" || p === "[stack]" || p.startsWith("[anon:");
}

/**
 * Cuts [first start, last end) of `maps` (address order, [vsyscall] left
 * out) into segments of consecutive plain anonymous mappings and of the
 * others; a gap between mappings (no pages) joins the segment before it.
 */
export function scanSegments(
  maps: readonly Pick<MapEntry, "start" | "end" | "perms" | "inode" | "path">[],
): ScanSegment[] {
  const out: ScanSegment[] = [];
  for (const m of maps) {
    const plainAnon = isPlainAnon(m);
    const start = Number(m.start), end = Number(m.end);
    const last = out[out.length - 1];
    if (last && last.plainAnon === plainAnon) {
      last.end = end;
    } else {
      if (last) last.end = start;
      out.push({ start, end, plainAnon });
    }
  }
  return out.length > MAX_SCAN_SEGMENTS ? fewerSegments(out) : out;
}

/**
 * Most segments walked at once: each has a pagemap fd, a buffer and a walk
 * of its own on another thread. Thousands of file mappings alternating with
 * anonymous ones (zdtm's maps06) made as many and ran out of fds.
 */
export const MAX_SCAN_SEGMENTS = 32;

/**
 * `segments` cut down to at most {@link MAX_SCAN_SEGMENTS}: only the largest
 * plain anonymous segments keep their cheaper walk, the others are walked
 * with the test of PAGE_IS_FILE (always right) and merge with their
 * neighbours.
 */
function fewerSegments(segments: ScanSegment[]): ScanSegment[] {
  const keep = new Set(
    segments.filter((g) => g.plainAnon).sort((a, b) => (b.end - b.start) - (a.end - a.start))
      .slice(0, Math.floor(MAX_SCAN_SEGMENTS / 2) - 1),
  );
  const out: ScanSegment[] = [];
  for (const g of segments) {
    const plainAnon = keep.has(g);
    const last = out[out.length - 1];
    if (last && last.plainAnon === plainAnon) last.end = g.end;
    else out.push({ start: g.start, end: g.end, plainAnon });
  }
  return out;
}

/** Pages with data: present or swapped. */
const DATA = PAGE_IS.PRESENT | PAGE_IS.SWAPPED;

/**
 * The test of a segment: with or without PAGE_IS_FILE; `written` adds
 * PAGE_IS_WRITTEN. The zero page is left out (a hole: engine/proc/pagemap_scan.ts).
 */
function testOf(segment: ScanSegment, written: boolean): ScanTest {
  return {
    ...NOT_ZERO_PAGE,
    anyOf: DATA,
    returnMask: (segment.plainAnon ? 0n : PAGE_IS.FILE) | PAGE_IS.GUARD |
      (written ? PAGE_IS.WRITTEN : 0n),
  };
}

/** Collects regions (and written ranges) from the scans of consecutive segments. */
class Collector {
  readonly regions: ScanRegion[] = [];
  readonly written: [number, number][] = [];

  add(s: number, e: number, c: number, plainAnon: boolean): void {
    if (c & Number(PAGE_IS.GUARD)) return;
    const anon = plainAnon || (c & Number(PAGE_IS.FILE)) === 0;
    const last = this.regions[this.regions.length - 1];
    if (last && last.end === s && last.anon === anon) last.end = e;
    else this.regions.push({ start: s, end: e, anon });
    if (c & Number(PAGE_IS.WRITTEN)) {
      const w = this.written[this.written.length - 1];
      if (w && w[1] === s) w[1] = e;
      else this.written.push([s, e]);
    }
  }
}

/**
 * The data pages of `segments` of process `pid` (as
 * {@link PagemapScanner.dataRegions} finds them) and which were written
 * since write-protected (as {@link PagemapScanner.dataAndWritten}), walked
 * on other threads: all segments at once, each with its own buffer, so that
 * none waits for the main thread to take the previous one's result (it
 * works meanwhile). Throws when a call fails.
 */
export async function dataAndWrittenOffThread(
  pid: number,
  segments: readonly ScanSegment[],
): Promise<DataAndWritten> {
  const found: [number, number, number][][] = segments.map(() => []);
  const scanners = segments.map(() => new PagemapScanner(pid, SEGMENT_REGIONS));
  try {
    const ok = await Promise.all(segments.map((seg, i) =>
      scanners[i].scanOffThread(
        seg.start,
        seg.end,
        testOf(seg, true),
        (s, e, c) => found[i].push([s, e, c]),
      )
    ));
    const c = new Collector();
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i];
      // A failed call: again here, for its errno.
      if (!ok[i]) scanners[i].scan(seg.start, seg.end, testOf(seg, true), () => {});
      if (!ok[i]) throw new Error(`PAGEMAP_SCAN of process ${pid} failed`);
      for (const [s, e, cat] of found[i]) c.add(s, e, cat, seg.plainAnon);
    }
    return { regions: c.regions, written: c.written };
  } finally {
    for (const sc of scanners) sc.close();
  }
}

/** Regions per call of a segment's walk (more need another call, after the main thread's turn). */
const SEGMENT_REGIONS = 1024;

/** The data pages of `segments`, as {@link PagemapScanner.dataRegions} finds them. */
export function dataRegions(
  scanner: PagemapScanner,
  segments: readonly ScanSegment[],
): ScanRegion[] {
  const c = new Collector();
  for (const seg of segments) {
    scanner.scan(
      seg.start,
      seg.end,
      testOf(seg, false),
      (s, e, cat) => c.add(s, e, cat, seg.plainAnon),
    );
  }
  return c.regions;
}
