/**
 * The copy step of the pre-copy (engine/dump/precopy.ts) for one process:
 * its planned runs are read into its image file while the tree runs,
 * through the page buffer (page_writer.ts), with
 * process_vm_readv where that cannot unshare a page ({@link pinnableRuns})
 * and /proc/<pid>/mem elsewhere. The copy is cut into segments
 * ({@link segmentJobs}) that any copy lane may take
 * (engine/dump/copy_lanes.ts); the results merge into the same file
 * content and block CRCs as one copy from start to end.
 *
 * @module
 */

import { type PagemapReader, type PageRunTuple, PM } from "../proc/pagemap.ts";
import { CRC_BLOCK, MemoryStreamer, pageBufferBytes } from "./memory.ts";
import { pausePoint } from "../pause.ts";
import { LaneFiles, LanePageWriter, PAGE_BUFFER_BYTES } from "./page_writer.ts";
import { pageAlignedBuffer } from "../../ffi/page_file.ts";
import type { Vma } from "./vmas.ts";
import { ProcessGoneError } from "../proc/errors.ts";

/** A pre-copied run: `length` bytes from `addr` are in the image file at `fileOffset`. */
export interface CopiedRun {
  addr: number;
  length: number;
  fileOffset: number;
  /** Not written since it was protected (set by {@link PrecopyProcess.validate}). */
  valid?: boolean;
}

/** One process's copy: everything it needs. */
export interface CopyJob {
  pid: number;
  /** Its image file (created or truncated). */
  path: string;
  /** File offset of the page region. */
  pagesStart: number;
  /** Data runs to copy, by mapping, in address order. */
  planned: { vma: Vma; runs: { addr: bigint; length: number }[] }[];
}

/** What a {@link CopyJob} copied. */
export interface CopyResult {
  /** End of the page data written. */
  pagesEnd: number;
  /** Bytes copied. */
  bytes: number;
  /** CRC-32 of each block of the page data (memory.ts CRC_BLOCK). */
  blockCrcs: number[];
  /** The copied runs, by address, without what could not be read. */
  copied: CopiedRun[];
  /** Bytes that could not be read (unmapped meanwhile, or the process gone: stored as zeros). */
  lostBytes: number;
}

/**
 * A part of a {@link CopyJob}: the runs whose data goes to
 * [fileOffset, fileOffset + bytes) of the job's file. Segments of a job
 * start at multiples of {@link CRC_BLOCK} past its `pagesStart`, so each
 * one's block CRCs are the job's, and any lane may copy any segment
 * (engine/dump/copy_lanes.ts). Structured-cloneable.
 */
export interface CopySegment {
  /** Index of its job in the list given to {@link segmentJobs}. */
  job: number;
  pid: number;
  path: string;
  fileOffset: number;
  bytes: number;
  planned: CopyJob["planned"];
}

/** What copying a {@link CopySegment} gave. Structured-cloneable. */
export interface SegmentResult {
  /** CRC-32 of each block of the segment (the last may be shorter). */
  blockCrcs: number[];
  /** The runs copied, with their file offsets, in copy order. */
  copied: CopiedRun[];
  /** What could not be read (stored as zeros). */
  lost: { addr: number; length: number }[];
}

/** Bytes of `job`'s planned runs. */
export function jobBytes(job: CopyJob): number {
  return job.planned.reduce((n, p) => n + p.runs.reduce((m, r) => m + r.length, 0), 0);
}

/**
 * The jobs cut into segments of `size` bytes (a multiple of
 * {@link CRC_BLOCK}; the last of a job may be shorter), jobs in order,
 * each job's in file order. A run may be cut in two.
 */
export function segmentJobs(jobs: readonly CopyJob[], size: number): CopySegment[] {
  if (size <= 0 || size % CRC_BLOCK !== 0) throw new Error(`segment size ${size}`);
  const out: CopySegment[] = [];
  jobs.forEach((job, j) => {
    let seg: CopySegment | undefined;
    let at = job.pagesStart;
    for (const { vma, runs } of job.planned) {
      for (const r of runs) {
        for (let done = 0; done < r.length;) {
          if (!seg || seg.bytes === size) {
            seg = { job: j, pid: job.pid, path: job.path, fileOffset: at, bytes: 0, planned: [] };
            out.push(seg);
          }
          const n = Math.min(size - seg.bytes, r.length - done);
          const last = seg.planned[seg.planned.length - 1];
          const piece = { addr: r.addr + BigInt(done), length: n };
          if (last && last.vma === vma) last.runs.push(piece);
          else seg.planned.push({ vma, runs: [piece] });
          seg.bytes += n;
          done += n;
          at += n;
        }
      }
    }
  });
  return out;
}

/** A lane's reusable resources: its page-aligned buffer and its open files. */
export interface Lane {
  buffer: Uint8Array;
  files: LaneFiles;
}

/** A lane with a buffer of `size` bytes; {@link LaneFiles.close} its files when done. */
export function newLane(size = PAGE_BUFFER_BYTES): Lane {
  return { buffer: pageAlignedBuffer(size), files: new LaneFiles() };
}

/**
 * Copies one segment into its (existing) file through `lane`. `onBytes`
 * is called after each piece (the pause point of the main lane).
 */
export async function copySegment(
  seg: CopySegment,
  lane: Lane,
  onBytes?: (n: number) => void,
): Promise<SegmentResult> {
  const buffer = lane.buffer.length > seg.bytes
    ? lane.buffer.subarray(0, pageBufferBytes(seg.bytes))
    : lane.buffer;
  const out = new LanePageWriter(lane.files.get(seg.path), buffer);
  let next = seg.fileOffset;
  const streamer = new MemoryStreamer(seg.pid, out, (n) => {
    const at = next;
    next += n;
    return at;
  });
  const lost: { addr: number; length: number }[] = [];
  streamer.onUnreadable = (addr, length) => lost.push({ addr: Number(addr), length });
  streamer.viaMemFile = true;
  streamer.blockCrcs = [];
  const copied: CopiedRun[] = [];
  try {
    // The lane's, kept for its next segments; none for a process gone meanwhile (its
    // pages are then lost: the pre-copy drops it, engine/dump/precopy_lanes.ts).
    const pagemap = lanePagemap(lane, seg.pid);
    for (const { vma, runs } of seg.planned) {
      const pieces = pagemap
        ? pinnableRuns(pagemap, runs)
        : runs.map((r) => ({ ...r, pin: false }));
      for (const r of streamer.saveRuns(vma, pieces, onBytes)) {
        copied.push({ addr: Number(BigInt(r.addr)), length: r.length, fileOffset: r.fileOffset });
      }
    }
    await streamer.finish();
  } catch (e) {
    await streamer.abort();
    throw e;
  }
  return { blockCrcs: streamer.blockCrcs, copied, lost };
}

/** The lane's pagemap of `pid`, or undefined when the process is gone (a zombie, or reaped). */
function lanePagemap(lane: Lane, pid: number): PagemapReader | undefined {
  try {
    return lane.files.pagemap(pid);
  } catch (e) {
    if (e instanceof ProcessGoneError) return undefined;
    throw e;
  }
}

/** Creates (or truncates) the file of each job with something to copy. */
export async function createJobFiles(jobs: readonly CopyJob[]): Promise<void> {
  for (const job of jobs) {
    const file = await Deno.open(job.path, {
      write: true,
      create: true,
      truncate: true,
      mode: 0o700,
    });
    file.close();
  }
}

/**
 * The {@link CopyResult} of each job from the results of its segments
 * (`results[i]` is segment `i`'s).
 */
export function mergeSegments(
  jobs: readonly CopyJob[],
  segments: readonly CopySegment[],
  results: readonly SegmentResult[],
): CopyResult[] {
  const out: CopyResult[] = jobs.map((job) => ({
    pagesEnd: job.pagesStart,
    bytes: 0,
    blockCrcs: [],
    copied: [],
    lostBytes: 0,
  }));
  const lost: { addr: number; length: number }[][] = jobs.map(() => []);
  segments.forEach((seg, i) => {
    const r = out[seg.job];
    if (seg.fileOffset !== r.pagesEnd) throw new Error(`segment at ${seg.fileOffset} out of order`);
    r.pagesEnd += seg.bytes;
    r.bytes += seg.bytes;
    r.blockCrcs.push(...results[i].blockCrcs);
    r.copied.push(...results[i].copied);
    lost[seg.job].push(...results[i].lost);
    for (const l of results[i].lost) r.lostBytes += l.length;
  });
  out.forEach((r, j) => r.copied = subtract(r.copied.sort((a, b) => a.addr - b.addr), lost[j]));
  return out;
}

/** Copies the runs of `job` into its file, in this thread (one segment). */
export async function copyPlanned(job: CopyJob): Promise<CopyResult> {
  await createJobFiles([job]);
  const total = jobBytes(job);
  const segments = segmentJobs(
    [job],
    Math.max(CRC_BLOCK, Math.ceil(total / CRC_BLOCK) * CRC_BLOCK),
  );
  const lane = newLane(pageBufferBytes(total));
  try {
    const results: SegmentResult[] = [];
    for (const seg of segments) {
      results.push(await copySegment(seg, lane, () => pausePoint("precopy-pages")));
    }
    return mergeSegments([job], segments, results)[0];
  } finally {
    lane.files.close();
  }
}

/**
 * `runs` split into pieces that may be read with process_vm_readv
 * (`pin`: present pages mapped by this process only, pagemap bit 56: its
 * pin cannot unshare a page shared copy-on-write with another process) and
 * the rest (read through /proc/<pid>/mem). A page shared by a fork after
 * this look-up may still be unshared by the read: that costs the target one
 * page of memory, never correctness (the dump records the sharing it finds).
 */
export function pinnableRuns(
  pagemap: PagemapReader,
  runs: { addr: bigint; length: number }[],
): { addr: bigint; length: number; pin: boolean }[] {
  const out: { addr: bigint; length: number; pin: boolean }[] = [];
  for (const r of runs) {
    let at = r.addr;
    const end = r.addr + BigInt(r.length);
    let exclusive: PageRunTuple[];
    try {
      exclusive = pagemap.runs(r.addr, end, { all: PM.PRESENT | PM.EXCLUSIVE });
    } catch {
      exclusive = [];
    }
    for (const [a, l] of exclusive) {
      if (a > at) out.push({ addr: at, length: Number(a - at), pin: false });
      out.push({ addr: a, length: l, pin: true });
      at = a + BigInt(l);
    }
    if (at < end) out.push({ addr: at, length: Number(end - at), pin: false });
  }
  return out;
}

/** `runs` (sorted) without the byte ranges of `lost`. */
function subtract(runs: CopiedRun[], lost: { addr: number; length: number }[]): CopiedRun[] {
  if (lost.length === 0) return runs;
  let out = runs;
  for (const l of lost) {
    const next: CopiedRun[] = [];
    for (const r of out) {
      const s = Math.max(r.addr, l.addr), e = Math.min(r.addr + r.length, l.addr + l.length);
      if (s >= e) {
        next.push(r);
        continue;
      }
      if (r.addr < s) next.push({ addr: r.addr, length: s - r.addr, fileOffset: r.fileOffset });
      const tail = r.addr + r.length - e;
      if (tail > 0) next.push({ addr: e, length: tail, fileOffset: r.fileOffset + (e - r.addr) });
    }
    out = next;
  }
  return out;
}
