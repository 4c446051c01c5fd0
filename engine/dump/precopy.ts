/**
 * Pre-copy with write tracking, for dumps that leave the tree running: the
 * pages are copied while the tree runs, and only the pages written during
 * that copy are copied again while it is frozen for the dump proper.
 *
 * 1. {@link Precopy.start} freezes the tree, and in each process creates a
 *    userfaultfd by an injected `userfaultfd()` (WP_ASYNC: a write to a
 *    protected page just lifts the protection, nothing ever waits), takes
 *    it into cryo with pidfd_getfd and closes it in the target again;
 *    then thaws. With the tree running, cryo registers the private
 *    mappings in write-protect mode and write-protects their data pages
 *    with PAGEMAP_SCAN (PM_SCAN_WP_MATCHING), which also lists them (a
 *    pre-dump does both while frozen).
 * 2. {@link Precopy.copy} reads those pages into each process's image
 *    file while the tree runs, at the place they will keep.
 * 3. The dump proper (engine/dump/mod.ts) freezes again, and first
 *    {@link Precopy.validate} keeps of the pre-copy only the pages still
 *    write-protected in the current address space (PAGEMAP_SCAN does not
 *    report them PAGE_IS_WRITTEN: not written since), then closes the
 *    userfaultfds: the kernel unregisters the ranges and clears every
 *    protection left (userfaultfd release), so nothing remains in the
 *    target and the dump collects everything as usual.
 *    For each page it saves, {@link PrecopyProcess.split} says whether the
 *    pre-copied content is still the page's (pre-copied from the same
 *    address and valid); anything else is read while frozen.
 *
 * Only private mappings are tracked: a page of shared memory can be written
 * through another process's page tables, which this mm's protection does
 * not see, so shared memory is always copied while frozen. Writes the
 * kernel makes through a page pinned before the protection are not seen
 * either: a process with an AIO context is not pre-copied (io_uring is
 * refused by the dump; other long-term pins, such as RDMA, are not
 * detected). Whatever cannot
 * be set up (a mapping the kernel refuses to register, a process where the
 * injection fails) is simply not pre-copied.
 *
 * @module
 */

import { isAnonHugePath } from "../memory/hugetlb.ts";
import { SYS } from "../../ffi/sysno.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { PAGE_IS, UFFD_FEATURE } from "../../ffi/probe.ts";
import { PM_SCAN_WP_MATCHING } from "../../ffi/pagemap_scan.ts";
import {
  pidfdGetfd,
  UFFD_USER_MODE_ONLY,
  uffdApi,
  UFFDIO_REGISTER_MODE_WP,
  uffdRegister,
} from "../../ffi/uffd.ts";
import { type MapEntry, parseMapsBytes, readMaps, readMapsBytes, sameBytes } from "../proc/maps.ts";
import { treePidsOrRoot } from "../proc/tasks.ts";
import { readStatus } from "../proc/status.ts";
import { getRegs } from "../../ffi/ptrace.ts";
import { signed, type UserRegs } from "../../ffi/regs.ts";
import type { ProcessImage } from "../model.ts";
import { PagemapScanner, type ScanRegion } from "../proc/pagemap_scan.ts";
import { freezeTree, type FrozenTree, thawTree } from "./freeze.ts";
import { withInjection } from "./injected.ts";
import { classifyVma, pagePolicy, refusedMapping, type Vma } from "./vmas.ts";
import { crc32, crc32AfterFold } from "../image/crc32.ts";
import { closeRawFd, openRawFd, SyscallTable, tablesAvailable } from "../../ffi/syscall_table.ts";
import { pageAlignedBuffer } from "../../ffi/page_file.ts";
import { addressOf } from "../../ffi/libc.ts";
import { CRC_BLOCK } from "./memory.ts";
import { crc32Combine } from "../image/checksum.ts";
import { type CopiedRun, type CopyJob, copyPlanned, type CopyResult } from "./precopy_copy.ts";
import { splitAtWritten } from "./written_ranges.ts";
import { dataAndWrittenOffThread, scanSegments } from "./data_scan.ts";
import { BOOTSTRAP_FILE_OFFSET } from "../image/writer.ts";
import { liveness } from "../proc/errors.ts";
import {
  beginLifting,
  clearTracking,
  closeInTarget,
  endLifting,
  setTrackingFd,
  trackingFdBase,
} from "./tracking.ts";
import { pausePoint } from "../pause.ts";
import { releaseChunk, releaseUffd } from "./uffd_release.ts";

const O_CLOEXEC = 0o2000000;
const O_NONBLOCK = 0o4000;
const F_DUPFD_CLOEXEC = 1030;

/**
 * Splits `run` (a range to save) against `covered` (sorted ranges whose
 * content is already somewhere in a file): the uncovered parts are "read",
 * each covered part gets `sourceOf` its covering range, with the file
 * offset of its first byte. `cursor` keeps the position in `covered` across
 * calls made in address order.
 */
export function splitRun<T extends { addr: number; length: number; fileOffset: number }>(
  run: { addr: number; length: number },
  cursor: { i: number },
  covered: readonly T[],
  sourceOf: (r: T) => Pick<SplitPiece, "source" | "depth">,
): SplitPiece[] {
  const out: SplitPiece[] = [];
  let at = run.addr;
  const end = run.addr + run.length;
  while (cursor.i < covered.length && covered[cursor.i].addr + covered[cursor.i].length <= at) {
    cursor.i++;
  }
  for (let i = cursor.i; at < end; i++) {
    const r = covered[i];
    if (!r || r.addr >= end) {
      out.push({ addr: at, length: end - at, source: "read", fileOffset: 0 });
      break;
    }
    if (r.addr > at) {
      out.push({ addr: at, length: r.addr - at, source: "read", fileOffset: 0 });
      at = r.addr;
    }
    const e = Math.min(end, r.addr + r.length);
    const src = sourceOf(r);
    const piece: SplitPiece = {
      addr: at,
      length: e - at,
      source: src.source,
      fileOffset: r.fileOffset + (at - r.addr),
    };
    if (src.depth !== undefined) piece.depth = src.depth;
    out.push(piece); // no spread: one object per piece (10,000 per dump of 10,000 mappings)
    at = e;
  }
  return out;
}

/** A piece of a page run to save, and where its content comes from. */
export interface SplitPiece {
  addr: number;
  length: number;
  /**
   * "reuse": the pre-copied content at `fileOffset` is the page's;
   * "overwrite": read the page now and write it at `fileOffset`;
   * "read": read the page now into new space;
   * "parent": the content is in the parent chain (engine/dump/parent.ts).
   */
  source: "reuse" | "overwrite" | "read" | "parent";
  fileOffset: number;
  /** With "parent": steps up the chain to the image holding it. */
  depth?: number;
}

/**
 * File room left for the bootstrap blob before a pre-copy's page data. The
 * blob of a dump's image is the stub and its standalone message program
 * (the process's pid and name and the image's path: a few KiB whatever the
 * process), not the restore program; a blob that outgrows the room drops
 * the pre-copy (engine/dump/mod.ts). It is read back for the checksum at
 * every dump (engine/image/checksum.ts `checksumAround`): a room sized like
 * the bootstrap's memory (1 MiB and more, a hole) cost ~5 ms of reading.
 */
export const PRECOPY_BLOB_ROOM = 64 * 1024;

/** The source of a piece still valid in the pre-copy, and of one written since (shared). */
const REUSE = { source: "reuse" } as const, OVERWRITE = { source: "overwrite" } as const;

/** The pre-copy of one process. */
export class PrecopyProcess {
  /** The process. */
  readonly pid: number;
  /** Its image file, holding the pre-copied pages. */
  readonly path: string;
  /** File offset of the page region (after room for the bootstrap blob). */
  readonly pagesStart: number;
  /** End of the pre-copied page data. */
  pagesEnd: number;
  /** Bytes pre-copied. */
  bytes = 0;
  /** cryo's copy of the target's userfaultfd (-1 once closed). */
  uffd: number;
  /** Ranges registered and the data runs found (and protected) in them at the first freeze. */
  readonly #planned: { vma: Vma; runs: { addr: bigint; length: number }[] }[] = [];
  /** Pre-copied runs, by address. */
  #copied: CopiedRun[] = [];
  /** CRC-32 of each {@link CRC_BLOCK} of the pre-copied data from {@link pagesStart}. */
  #blockCrcs: number[] = [];
  /** The block CRCs behind the last {@link pagesCrc} (blocks written over read again). */
  pagesBlockCrcs: number[] = [];
  /** The mappings registered with the userfaultfd, [start, end) in address order. */
  readonly registered: [number, number][] = [];

  constructor(pid: number, path: string, pagesStart: number, uffd: number) {
    this.pid = pid;
    this.path = path;
    this.pagesStart = pagesStart;
    this.pagesEnd = pagesStart;
    this.uffd = uffd;
  }

  /** Adds the protected data runs of one mapping (first freeze). */
  plan(vma: Vma, runs: { addr: bigint; length: number }[]): void {
    if (runs.length) this.#planned.push({ vma, runs });
  }

  /** Bytes to pre-copy. */
  get plannedBytes(): number {
    return this.#planned.reduce((n, p) => n + p.runs.reduce((m, r) => m + r.length, 0), 0);
  }

  /** What {@link copy} needs, for copying in another thread (engine/dump/precopy_copy.ts). */
  get job(): CopyJob {
    return { pid: this.pid, path: this.path, pagesStart: this.pagesStart, planned: this.#planned };
  }

  /** Bytes the copy could not read (unmapped meanwhile, or the process gone). */
  lostBytes = 0;

  /** Takes the result of copying {@link job}. */
  copied(r: CopyResult): void {
    this.pagesEnd = r.pagesEnd;
    this.bytes = r.bytes;
    this.lostBytes = r.lostBytes;
    this.#blockCrcs = r.blockCrcs;
    this.#copied = r.copied;
  }

  /** Copies the planned runs into the image file (the tree runs meanwhile). */
  async copy(): Promise<void> {
    if (this.plannedBytes === 0) return;
    this.copied(await copyPlanned(this.job));
  }

  /**
   * With the tree frozen again, before the collect: from now on the
   * registration's "uw" flags are cryo's (the collect reads the VmFlags
   * while the tracking is still in place). {@link validate} follows.
   */
  beginValidation(): void {
    if (this.uffd >= 0 && !this.keep) beginLifting(this.pid, this.registered);
  }

  /**
   * With the tree frozen again: keeps as valid only the pre-copied pages
   * not written since they were protected (the walk runs on another
   * thread: the dump collects meanwhile, and waits for it before planning).
   * Started once the collect's injected calls are done: the walk holds the
   * process's mmap lock for reading all along (~8 ms at 2 GiB), and an
   * injected `brk` waits for it to take the lock for writing.
   * A pre-dump then protects everything again and closes cryo's copy;
   * otherwise the userfaultfd stays open until {@link close}, after the thaw.
   */
  async validate(
    /** The frozen process's maps when known already (engine/dump/vm_flags.ts `peekFrozenMaps`). */
    mapsNow?: readonly MapEntry[],
  ): Promise<void> {
    if (this.uffd < 0) return;
    this.beginValidation();
    const c = this.#copied;
    let written: [number, number][];
    try {
      // One walk of the whole address space: what was written, and the data
      // pages the dump plans from (nothing changes while the tree is frozen).
      const maps = (mapsNow ?? readMaps(this.pid)).filter((m) => m.path !== "[vsyscall]");
      const start = Number(maps[0].start), end = Number(maps[maps.length - 1].end);
      const scan = await dataAndWrittenOffThread(this.pid, scanSegments(maps));
      written = scan.written;
      this.scanned = { start, end, regions: scan.regions };
    } catch {
      written = [[0, Number.MAX_SAFE_INTEGER]]; // gone or changed: nothing is valid
    }
    this.#copied = markValid(c, written);
    if (this.keep && this.uffd >= 0) {
      // A pre-dump: everything is protected again for the next round (new mappings too).
      rearm(this.pid, this.uffd);
      this.close(); // the tracking stays through the fd kept in the target
    }
    // Otherwise closing cryo's copy, the last reference, makes the kernel walk
    // every page table to lift the protections: left to {@link close} after the thaw.
  }

  /** The tracking stays armed after the dump (a pre-dump): see engine/dump/tracking.ts. */
  keep = false;

  /**
   * Set by {@link Precopy.validate}: the validation's walk will also find
   * the data pages the dump plans from ({@link scanned}), so the collect
   * starts no walk of its own (engine/dump/scan_ahead.ts).
   */
  scans = false;

  /**
   * The data pages of the process found by {@link validate} (at the dump's
   * freeze) over [start, end), for engine/dump/plan.ts.
   */
  scanned?: { start: number; end: number; regions: ScanRegion[] };

  /**
   * Splits a run to save (address order) into pieces by where their
   * content comes from. `cursor` keeps the position in the copied runs
   * across calls made in address order.
   */
  split(run: { addr: number; length: number }, cursor: { i: number }): SplitPiece[] {
    return splitRun(run, cursor, this.#copied, (r) => r.valid ? REUSE : OVERWRITE);
  }

  /**
   * CRC-32 of the pre-copied data [pagesStart, pagesEnd) of the image file
   * `path` as it is now: the blocks `overwritten` touches are read again,
   * by a syscall table on another thread where one can run
   * (ffi/syscall_table.ts: a `pread` and a CRC fold per block, while
   * cryo's thread goes on), else here.
   */
  async pagesCrc(
    path: string,
    overwritten: { fileOffset: number; length: number }[],
  ): Promise<number> {
    const dirty = new Set<number>();
    for (const o of overwritten) {
      const first = Math.floor((o.fileOffset - this.pagesStart) / CRC_BLOCK);
      const last = Math.floor((o.fileOffset + o.length - 1 - this.pagesStart) / CRC_BLOCK);
      for (let b = first; b <= last; b++) dirty.add(b);
    }
    const crcs = [...this.#blockCrcs];
    const blocks = [...dirty].map((b) => {
      const at = this.pagesStart + b * CRC_BLOCK;
      return { b, at, len: Math.min(CRC_BLOCK, this.pagesEnd - at) };
    });
    const reread = blocks.length && tablesAvailable()
      ? await blockCrcsOnTable(path, blocks)
      : undefined;
    if (reread) blocks.forEach(({ b }, i) => crcs[b] = reread[i]);
    else if (blocks.length) {
      // Synchronous reads: a few blocks at most, cheaper than async ops in a fresh Deno.
      using f = Deno.openSync(path, { read: true });
      const buf = new Uint8Array(CRC_BLOCK);
      for (const { b, at, len } of blocks) {
        f.seekSync(at, Deno.SeekMode.Start);
        for (let d = 0; d < len;) {
          const n = f.readSync(buf.subarray(d, len));
          if (n === null) throw new Error(`${path}: short read at ${at + d}`);
          d += n;
        }
        crcs[b] = crc32(buf.subarray(0, len));
      }
    }
    this.pagesBlockCrcs = crcs;
    let crc = 0;
    for (let b = 0; b < crcs.length; b++) {
      const len = Math.min(CRC_BLOCK, this.pagesEnd - this.pagesStart - b * CRC_BLOCK);
      crc = b === 0 ? crcs[0] : crc32Combine(crc, crcs[b], len);
    }
    return crc >>> 0;
  }

  /**
   * Closes the userfaultfd: unregisters everything and lifts every
   * protection, a chunk at a time (engine/dump/uffd_release.ts), unless the
   * tracking stays (a pre-dump: the target's fd keeps it).
   */
  close(): void {
    if (this.uffd >= 0 && this.keep) rawSyscall(SYS.close, this.uffd);
    else if (this.uffd >= 0) {
      releaseUffd(this.uffd, this.registered, releaseChunk.bytes, this.scanned?.regions);
    }
    this.uffd = -1;
    endLifting(this.pid);
  }

  /**
   * {@link close} with the release (chunks lifted, then the fd closed) done
   * by `release` (engine/dump/precopy_lanes.ts: on the copy lane's thread).
   */
  async closeWith(
    release: (
      uffd: number,
      ranges: [number, number][],
      chunkBytes: number,
      /** The pages present at the dump's freeze, when scanned (uffd_release.ts `releaseChunks`). */
      data?: readonly ScanRegion[],
    ) => Promise<void>,
  ): Promise<void> {
    if (this.uffd < 0 || this.keep) return this.close();
    const uffd = this.uffd;
    this.uffd = -1; // a close() meanwhile has nothing left to do
    try {
      await release(uffd, this.registered, releaseChunk.bytes, this.scanned?.regions);
    } finally {
      endLifting(this.pid);
    }
  }
}

/**
 * The CRC of each block [at, at + len) of the file `path` (len a multiple
 * of 16 and at least 64: whole pages), read and folded by a syscall table
 * on another thread; undefined when a read falls short (then read here).
 */
async function blockCrcsOnTable(
  path: string,
  blocks: { at: number; len: number }[],
): Promise<number[] | undefined> {
  if (blocks.some((x) => x.len < 64 || x.len % 16 !== 0)) return undefined;
  const fd = openRawFd(path, false);
  try {
    const table = new SyscallTable(2 * blocks.length);
    const buf = pageAlignedBuffer(CRC_BLOCK);
    table.keep(buf);
    const base = addressOf(buf);
    const outs = blocks.map(() => new Uint8Array(16));
    const reads = blocks.map(({ at, len }, i) => {
      const r = table.syscall(SYS.pread64, fd, buf, len, at);
      table.fold(base, len, 0xffffffff, outs[i]);
      return r;
    });
    await table.run().finished;
    if (reads.some((r, i) => table.result(r) !== BigInt(blocks[i].len))) return undefined;
    return outs.map((o) => crc32AfterFold(o, new Uint8Array(0)));
  } finally {
    closeRawFd(fd); // the table is done (awaited), or never started
  }
}

/**
 * `runs` (sorted) split at the `written` ranges (sorted): pieces outside
 * them are valid, pieces inside are not.
 */
function markValid(runs: CopiedRun[], written: [number, number][]): CopiedRun[] {
  return splitAtWritten(runs, written).map((p) => ({ ...p.piece, valid: !p.written }));
}

/** Whether a mapping's pages can be tracked and pre-copied. */
export function trackable(v: Vma): boolean {
  // (hugetlb memory is not tracked: its pages are saved whole by every dump of a chain.)
  return v.perms[0] === "r" && pagePolicy(classifyVma(v)) === "anon-present" &&
    refusedMapping(v) === null && !isAnonHugePath(v.path);
}

/** The lowest fd number free in process `pid` (what the next open there returns). */
function lowestFreeFd(pid: number): number {
  const used = new Set([...Deno.readDirSync(`/proc/${pid}/fd`)].map((e) => Number(e.name)));
  let fd = 0;
  while (used.has(fd)) fd++;
  return fd;
}

/**
 * Creates a WP_ASYNC userfaultfd in stopped process `pid` and returns
 * cryo's copy of it (the target's own fd is closed again, also by the
 * target itself if cryo dies meanwhile), or -1.
 */
function takeUffd(pid: number, keep?: { targetFd: number }): number {
  const expected = lowestFreeFd(pid);
  const base = keep ? trackingFdBase(pid) : 0;
  const copy = withInjection(pid, (s) =>
    s.withUndo(pid, [SYS.close, expected], () => {
      const fd = s.call(pid, SYS.userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
      if (fd < 0n) return -1n;
      if (fd !== BigInt(expected)) {
        s.call(pid, SYS.close, fd); // not where the undo closes it: never keep it
        return -1n;
      }
      if (keep) {
        // A copy stays in the target, high up, so the tracking outlives cryo (engine/dump/tracking.ts).
        const high = s.call(pid, SYS.fcntl, fd, F_DUPFD_CLOEXEC, base);
        if (high < 0n) return -1n;
        keep.targetFd = Number(high);
      }
      const pidfd = rawSyscall(SYS.pidfd_open, pid, 0);
      if (pidfd < 0n) return -1n;
      try {
        return pidfdGetfd(Number(pidfd), Number(fd));
      } finally {
        rawSyscall(SYS.close, pidfd);
      }
    }));
  if (copy < 0n || uffdApi(Number(copy), UFFD_FEATURE.WP_ASYNC) < 0n) {
    if (copy >= 0n) rawSyscall(SYS.close, copy);
    if (keep && keep.targetFd >= 0) closeInTarget(pid, keep.targetFd);
    if (keep) keep.targetFd = -1;
    return -1;
  }
  return Number(copy);
}

/**
 * Registers the trackable mappings of `vmas` (address order) in WP mode,
 * in as few ranges as possible; returns the registered ones.
 */
export function register(uffd: number, vmas: Vma[]): Vma[][] {
  const ranges: Vma[][] = [];
  // Consecutive trackable mappings make one range (holes between them are allowed).
  let cur: Vma[] = [];
  for (const v of vmas) {
    if (trackable(v)) {
      cur.push(v);
    } else if (cur.length) {
      ranges.push(cur);
      cur = [];
    }
  }
  if (cur.length) ranges.push(cur);
  const done: Vma[][] = [];
  for (const range of ranges) {
    const start = range[0].start, end = range[range.length - 1].end;
    if (uffdRegister(uffd, start, end - start, UFFDIO_REGISTER_MODE_WP) >= 0n) {
      done.push(range);
      continue;
    }
    // One mapping refused (another userfaultfd, VM_DROPPABLE...): one by one.
    for (const v of range) {
      if (uffdRegister(uffd, v.start, v.end - v.start, UFFDIO_REGISTER_MODE_WP) >= 0n) {
        done.push([v]);
      }
    }
  }
  return done;
}

/**
 * Regions per PAGEMAP_SCAN call of a write-protecting scan: the kernel's own
 * region buffer holds 512, and with more room it resumes its walk inside
 * the call. A second protecting round made that way (the tree running)
 * lost writes to pages it had passed, and none with at most 512 regions per
 * call, where cryo resumes from `walk_end` with a new call
 * (docs/PERFORMANCE.md, "The write tracking under stress").
 */
export const PROTECT_SCAN_REGIONS = 512;

/**
 * Write-protects the process's own data pages of registered [start, end),
 * reporting them. The zero page is neither protected nor reported (a hole,
 * not copied): a page written since (a new page, never protected: it reads
 * PAGE_IS_WRITTEN) lies in no pre-copied run, so the dump's freeze reads it,
 * and one still the zero page is left out of the plan by the freeze's own
 * walk. A chain's parent has no data there to reference either.
 */
export function protectData(
  scanner: PagemapScanner,
  start: number,
  end: number,
  onRun: (s: number, e: number) => void = () => {},
): void {
  scanner.scan(start, end, {
    flags: PM_SCAN_WP_MATCHING,
    inverted: PAGE_IS.FILE | PAGE_IS.GUARD | PAGE_IS.PFNZERO,
    mask: PAGE_IS.FILE | PAGE_IS.GUARD | PAGE_IS.PFNZERO,
    anyOf: PAGE_IS.PRESENT | PAGE_IS.SWAPPED,
    returnMask: PAGE_IS.PRESENT,
  }, onRun);
}

/**
 * With the process frozen: registers its trackable mappings again (new ones
 * since the last round) and write-protects all their data pages.
 */
export function rearm(pid: number, uffd: number): void {
  const vmas: Vma[] = readMaps(pid).map((m) => ({ ...m, vmFlags: [] }));
  using scanner = new PagemapScanner(pid, PROTECT_SCAN_REGIONS);
  for (const range of register(uffd, vmas)) {
    protectData(scanner, Number(range[0].start), Number(range[range.length - 1].end));
  }
}

/**
 * With process `pid` frozen: arms tracking that stays in it (a kept
 * userfaultfd, engine/dump/tracking.ts) over all its trackable memory.
 * Returns the fd kept in the target, or -1 when the process is not tracked
 * (AIO context, seccomp filter, or the set-up failed).
 */
export function armTracking(pid: number): number {
  try {
    if (readMaps(pid).some((m) => m.path.startsWith("/[aio]"))) return -1;
    if (readStatus(pid).seccomp !== 0) return -1;
  } catch {
    return -1;
  }
  const kept = { targetFd: -1 };
  const uffd = takeUffd(pid, kept);
  if (uffd < 0) return -1;
  try {
    rearm(pid, uffd);
  } finally {
    rawSyscall(SYS.close, uffd);
  }
  setTrackingFd(pid, kept.targetFd);
  return kept.targetFd;
}

/**
 * Registers the trackable mappings of `vmas` with `proc`'s userfaultfd,
 * write-protects their data pages and plans them for the copy.
 */
function armProcess(proc: PrecopyProcess, vmas: Vma[]): void {
  using scanner = new PagemapScanner(proc.pid, PROTECT_SCAN_REGIONS);
  for (const range of register(proc.uffd, vmas)) {
    const start = Number(range[0].start), end = Number(range[range.length - 1].end);
    for (const v of range) proc.registered.push([Number(v.start), Number(v.end)]);
    const runs: { addr: number; length: number }[] = [];
    // Protects exactly the pages it reports: the process's own data pages.
    protectData(scanner, start, end, (s, e) => {
      const last = runs[runs.length - 1];
      if (last && last.addr + last.length === s) last.length += e - s;
      else runs.push({ addr: s, length: e - s });
    });
    // Split by mapping (a run never spans two: each lies in one mapping's pages).
    let k = 0;
    for (const v of range) {
      const mine: { addr: bigint; length: number }[] = [];
      const vs = Number(v.start), ve = Number(v.end);
      while (k < runs.length && runs[k].addr + runs[k].length <= vs) k++;
      for (let j = k; j < runs.length && runs[j].addr < ve; j++) {
        const s = Math.max(runs[j].addr, vs), e = Math.min(runs[j].addr + runs[j].length, ve);
        if (e > s) mine.push({ addr: BigInt(s), length: e - s });
      }
      proc.plan(v, mine);
    }
  }
}

/**
 * The maps of every process of the tree of `root`, read as bytes and
 * parsed, with the tree running (by pid; a process that cannot be read is
 * left out).
 */
function mapsBeforeFreeze(root: number): Map<number, { bytes: Uint8Array; maps: MapEntry[] }> {
  const out = new Map<number, { bytes: Uint8Array; maps: MapEntry[] }>();
  const pids = treePidsOrRoot(root);
  for (const pid of pids) {
    try {
      const bytes = readMapsBytes(pid);
      out.set(pid, { bytes, maps: parseMapsBytes(bytes, pid) });
    } catch { /* gone, or read again at the freeze */ }
  }
  return out;
}

/**
 * The maps of frozen process `pid`: `before`'s parse when its bytes are
 * the same now (the same text gives the same areas), else a parse of what
 * is read now. Throws for a process gone.
 */
function frozenMapsOf(
  pid: number,
  before: { bytes: Uint8Array; maps: MapEntry[] } | undefined,
): MapEntry[] {
  const bytes = readMapsBytes(pid);
  return before && sameBytes(bytes, before.bytes) ? before.maps : parseMapsBytes(bytes, pid);
}

/** Registers that identify a syscall call site and its arguments. */
const CALL_REGS = ["rip", "rdi", "rsi", "rdx", "r10", "r8", "r9"] as const;

/** Pre-copies of the processes of a tree. */
export class Precopy {
  /** By pid. */
  readonly processes = new Map<number, PrecopyProcess>();
  /** Registers at the first freeze of the threads stopped inside a syscall, by tid. */
  readonly #calls = new Map<number, UserRegs>();
  /** Seconds the tree was frozen to set the pre-copy up. */
  frozenSeconds = 0;

  /**
   * Freezes the tree of `root`, sets up write tracking in each process
   * (its image file is `${dir}/${pid}.elf.partial`), and thaws it. A
   * process where that fails is not pre-copied. With `keep` (a pre-dump)
   * each process also keeps a copy of its userfaultfd (engine/dump/tracking.ts).
   */
  static start(
    root: number,
    dir: string,
    keep = false,
    /** Run in the pin barrier's freeze, after the arming (engine/dump/rehearsal.ts). */
    inBarrier?: (tree: FrozenTree) => void,
    /**
     * Run right after the pin barrier's thaw, with the tree the barrier froze
     * (what needs its processes' list but not the processes stopped).
     */
    afterBarrier?: (tree: FrozenTree) => void,
  ): Precopy {
    const pc = new Precopy();
    const toArm: { proc: PrecopyProcess; vmas: Vma[] }[] = [];
    // Each process's maps read and parsed with the tree running: the freeze
    // only reads the bytes again and parses them only if they changed.
    const before = mapsBeforeFreeze(root);
    const tree = freezeTree(root);
    try {
      for (const p of tree.processes) {
        try {
          pc.#setUp(p, before.get(p.pid), dir, keep, toArm);
        } catch (e) {
          // A process exiting while frozen (it was on its way out when seized) has no
          // memory left to track: it is not pre-copied, and the dump will not find it.
          if (liveness(p.pid) === "alive") throw e;
          pc.drop(p.pid);
          clearTracking(p.pid);
        }
      }
    } catch (e) {
      pc.close();
      thawTree(tree);
      throw e;
    }
    thawTree(tree);
    pc.frozenSeconds = (performance.now() - tree.frozenAt) / 1000;
    // Only creating the userfaultfd needs the process stopped: registering and
    // write-protecting act on its mm through cryo's copy, with the tree running.
    // A page written before its protection is copied after it (the copy follows),
    // one written after is reported written at the dump's freeze: either way the
    // image gets its content of the final freeze. A mapping changed meanwhile is
    // matched by address at the dump (an unprotected page is never reused).
    for (const { proc, vmas } of toArm) {
      pausePoint("precopy-arm");
      try {
        armProcess(proc, vmas);
      } catch {
        pc.drop(proc.pid); // gone, or changed under us: copied frozen by the dump
      }
    }
    if (toArm.length) pc.#settlePins(root, inBarrier, afterBarrier);
    return pc;
  }

  /**
   * With the tree frozen: sets up the tracking of process `p` (see
   * {@link start}), or leaves it out of the pre-copy.
   */
  #setUp(
    p: FrozenTree["processes"][number],
    before: { bytes: Uint8Array; maps: MapEntry[] } | undefined,
    dir: string,
    keep: boolean,
    toArm: { proc: PrecopyProcess; vmas: Vma[] }[],
  ): void {
    for (const tid of p.threads) {
      try {
        const regs = getRegs(tid);
        if (signed(regs.orig_rax) >= 0n) this.#calls.set(tid, regs);
      } catch { /* gone: the dump will tell */ }
    }
    let maps;
    try {
      maps = frozenMapsOf(p.pid, before);
    } catch {
      return;
    }
    // The kernel writes into pages pinned before the protection (an AIO read in
    // flight) without a fault that the tracking would see: such a process is copied frozen.
    if (maps.some((m) => m.path.startsWith("/[aio]"))) return;
    // A seccomp filter (or strict mode) may kill the process for the injected
    // userfaultfd(): only processes without one are pre-copied.
    if (readStatus(p.pid).seccomp !== 0) return;
    const vmas: Vma[] = maps.map((m) => ({ ...m, vmFlags: [] }));
    if (!vmas.some(trackable)) return;
    const kept = { targetFd: -1 };
    const uffd = takeUffd(p.pid, keep ? kept : undefined);
    if (uffd < 0) return;
    if (keep) setTrackingFd(p.pid, kept.targetFd);
    // Room for the bootstrap blob; a larger blob at the dump drops the pre-copy.
    const proc = new PrecopyProcess(
      p.pid,
      `${dir}/${p.pid}.elf.partial`,
      BOOTSTRAP_FILE_OFFSET + PRECOPY_BLOB_ROOM,
      uffd,
    );
    proc.keep = keep;
    this.processes.set(p.pid, proc);
    // A pre-dump's tracking outlives cryo: it is armed whole before anyone sees it.
    if (keep) armProcess(proc, vmas);
    else toArm.push({ proc, vmas });
  }

  /**
   * A barrier between arming (with the tree running) and the copy: the
   * kernel writes an O_DIRECT read into pages it pinned when the read
   * began, without a fault, so a page write-protected while such a read
   * was in flight changes without being reported written
   * (docs/PERFORMANCE.md, "The write tracking under stress"). Freezing the
   * tree waits for every thread to leave its syscall, so every read that
   * pinned pages before the protection has landed before the copy reads
   * them; a read begun after it faults on the protection (reported
   * written). If the tree cannot be frozen, nothing is pre-copied. The
   * freeze also runs `inBarrier` (the collect's rehearsal, engine/dump/rehearsal.ts),
   * and `afterBarrier` runs once the tree is thawed.
   */
  #settlePins(
    root: number,
    inBarrier?: (tree: FrozenTree) => void,
    afterBarrier?: (tree: FrozenTree) => void,
  ): void {
    try {
      const tree = freezeTree(root);
      pausePoint("precopy-settle");
      try {
        inBarrier?.(tree);
      } catch { /* only a warm-up */ }
      thawTree(tree);
      this.frozenSeconds += (performance.now() - tree.frozenAt) / 1000;
      afterBarrier?.(tree);
    } catch {
      for (const pid of [...this.processes.keys()]) this.drop(pid);
    }
  }

  /**
   * A thread stopped at the first freeze inside a syscall that the kernel
   * restarts through its restart block (nanosleep, poll, futex with a
   * timeout...) runs it on as `restart_syscall`, and is found there by the
   * dump's freeze. A restored thread has no restart block: record the
   * original syscall instead, when the thread is still at the same call
   * (same instruction, same arguments), as a dump with one freeze would.
   */
  fixRestarts(image: Pick<ProcessImage, "threads">): void {
    for (const t of image.threads) {
      const first = this.#calls.get(t.tid);
      if (!first || t.syscall.restart !== "restart") continue;
      if (Number(signed(BigInt(t.regs.orig_rax))) !== SYS.restart_syscall) continue;
      const nr = Number(signed(first.orig_rax));
      if (nr === SYS.restart_syscall) continue;
      if (!CALL_REGS.every((r) => BigInt(t.regs[r]) === first[r])) continue;
      t.regs.orig_rax = `0x${nr.toString(16)}`;
      t.syscall = { ...t.syscall, nr };
    }
  }

  /**
   * With the tree frozen again, before the collect: each process's
   * {@link PrecopyProcess.beginValidation}; its walk
   * ({@link PrecopyProcess.validate}) starts at {@link startValidation} (the
   * collect's injected calls done) or at {@link validated}. The tree must
   * stay frozen until {@link validated} resolves.
   */
  validate(mapsOf?: (pid: number) => readonly MapEntry[] | undefined): void {
    this.#mapsOf = mapsOf;
    for (const p of this.processes.values()) {
      p.beginValidation();
      p.scans = p.uffd >= 0;
    }
  }

  /** Starts the validation walk of `pid` (once; nothing for a process not pre-copied). */
  startValidation(pid: number): void {
    const p = this.processes.get(pid);
    if (!p || this.#walks.has(pid)) return;
    const walk = p.validate(this.#mapsOf?.(pid));
    walk.catch(() => {}); // settled by {@link validated}, or dropped with a failed dump
    this.#walks.set(pid, walk);
  }

  #mapsOf?: (pid: number) => readonly MapEntry[] | undefined;
  #walks = new Map<number, Promise<void>>();

  /** Waits for every validation walk (starting those not started yet). */
  async validated(): Promise<void> {
    for (const pid of this.processes.keys()) this.startValidation(pid);
    await Promise.all(this.#walks.values());
  }

  /**
   * Copies every process's pages while the tree runs, one process after the
   * other (two at a time, one in a worker thread, was measured: no gain in
   * CPU or wall time on 2 vCPUs, 26 MiB more peak RSS; docs/PERFORMANCE.md).
   */
  async copy(): Promise<void> {
    for (const p of this.processes.values()) await p.copy();
  }

  /** Bytes pre-copied. */
  get bytes(): number {
    let n = 0;
    for (const p of this.processes.values()) n += p.bytes;
    return n;
  }

  /** Closes every userfaultfd (no protection or registration stays in the tree). */
  close(): void {
    for (const p of this.processes.values()) p.close();
  }

  /** Forgets the pre-copy of `pid` (its file is rewritten by the dump). */
  drop(pid: number): void {
    this.processes.get(pid)?.close();
    this.processes.delete(pid);
  }

  /**
   * Drops the processes that exited during the copy (a tree that forks and
   * reaps all the time): their partial files are removed and their
   * tracking forgotten. Only a process whose copy lost bytes is looked at
   * (a process gone loses everything not read yet); one that exits after
   * its copy is dropped by the dump, which no longer finds it in the tree.
   */
  async dropGone(): Promise<number[]> {
    const gone: number[] = [];
    for (const p of [...this.processes.values()]) {
      if (p.lostBytes === 0 || liveness(p.pid) === "alive") continue;
      this.drop(p.pid);
      clearTracking(p.pid);
      await Deno.remove(p.path).catch(() => {});
      gone.push(p.pid);
    }
    return gone;
  }
}
