/**
 * The copy step of the pre-copy (engine/dump/precopy.ts) for one process:
 * its planned runs are read into its image file while the tree runs,
 * through the page buffer (page_writer.ts), with
 * process_vm_readv where that cannot unshare a page ({@link pinnableRuns})
 * and /proc/<pid>/mem elsewhere.
 *
 * @module
 */

import { openPagemap, type PagemapReader, type PageRunTuple, PM } from "../proc/pagemap.ts";
import { MemoryStreamer, pageBufferBytes } from "./memory.ts";
import { pausePoint } from "../pause.ts";
import { BufferPageWriter } from "./page_writer.ts";
import type { Vma } from "./vmas.ts";

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
}

/** Copies the runs of `job` into its file. */
export async function copyPlanned(job: CopyJob): Promise<CopyResult> {
  const total = job.planned.reduce((n, p) => n + p.runs.reduce((m, r) => m + r.length, 0), 0);
  const file = await Deno.open(job.path, {
    write: true,
    create: true,
    truncate: true,
    mode: 0o700,
  });
  file.close();
  const out = new BufferPageWriter(pageBufferBytes(total), job.path);
  let next = job.pagesStart;
  const streamer = new MemoryStreamer(job.pid, out, (n) => {
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
    using pagemap = openPagemap(job.pid);
    for (const { vma, runs } of job.planned) {
      const pieces = pinnableRuns(pagemap, runs);
      for (const r of streamer.saveRuns(vma, pieces, () => pausePoint("precopy-pages"))) {
        copied.push({ addr: Number(BigInt(r.addr)), length: r.length, fileOffset: r.fileOffset });
      }
    }
    await streamer.finish();
  } catch (e) {
    await streamer.abort();
    throw e;
  }
  return {
    pagesEnd: next,
    bytes: streamer.bytes,
    blockCrcs: streamer.blockCrcs,
    copied: subtract(copied.sort((a, b) => a.addr - b.addr), lost),
  };
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
