/**
 * Releasing a pre-copy's tracking userfaultfd without stalling the running
 * program.
 *
 * Closing the last reference to a userfaultfd makes the kernel unregister
 * every range and lift every write protection in one walk of the page
 * tables, holding the target's mmap lock for writing all along (75 to 190
 * ms at 2 GiB): any thread of the target that page-faults, mmaps or reads
 * its /proc maps meanwhile waits. Instead, cryo's copy (ioctls act on the
 * mm that created the userfaultfd) lifts the protections and unregisters
 * the mappings chunk by chunk, each ioctl taking and dropping the lock, and
 * only then closes the fd, which has nothing left to walk:
 *
 * 1. UFFDIO_REGISTER (write-protect mode, as registered) of the chunk: it
 *    succeeds only if every mapping there is registered with cryo's
 *    userfaultfd or with none (a mapping the program registered with its
 *    own is refused with EBUSY, a file mapping put there since with
 *    EINVAL: the chunk is then left to the close, which only touches
 *    cryo's); a mapping of cryo's is left as it is. This kernel (6.18)
 *    refuses UFFDIO_UNREGISTER of a mapping another userfaultfd registered
 *    (EINVAL, the mapping keeps its registration: probed with two
 *    userfaultfds in one process); older kernels do not check, hence this
 *    guard first (between it and the unregister, a mapping the program
 *    registers in microseconds is safe only where the kernel checks).
 * 2. UFFDIO_UNREGISTER of the chunk (mmap lock for writing): lifts its
 *    protections and unregisters it; the mappings merge back as they were.
 *
 * Lifting the chunk's protections first with UFFDIO_WRITEPROTECT mode 0
 * (mmap lock for reading only) was measured: the unregistration that
 * follows walks the page tables as long, so it only adds CPU
 * ({@link releaseChunk}.liftFirst, docs/PERFORMANCE.md).
 *
 * Each step is best effort: whatever fails is left to the close, which
 * does it all as before. A cryo killed in the middle closes its copies
 * with its death: the kernel finishes the job the same way.
 *
 * @module
 */

import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import {
  tableRelease,
  UFFDIO_REGISTER_MODE_WP,
  uffdRegister,
  uffdUnregister,
  uffdWriteProtect,
} from "../../ffi/uffd.ts";
import { SyscallTable, tablesAvailable } from "../../ffi/syscall_table.ts";
import { pausePoint, pauseWanted } from "../pause.ts";

/**
 * Bytes lifted and unregistered per ioctl (bounds how long one holds the
 * target's mmap lock): of address space, or of the pages present where
 * they are known ({@link releaseChunks}); 0: the plain close (benchmarks
 * compare them).
 */
export const releaseChunk = {
  bytes: 16 * 1024 * 1024,
  /** Lift the chunk's protections (mmap lock for reading) before its unregistration. */
  liftFirst: false,
};

/** How a release went, for measurements (scripts/bench/uffd_release.ts). */
export interface ReleaseStats {
  /** When it started, epoch milliseconds. */
  startedAtMs: number;
  /** Milliseconds of the whole release (chunks and close). */
  totalMs: number;
  /** Chunks lifted and unregistered by ioctls. */
  chunks: number;
  /** Chunks left to the close (an ioctl refused them). */
  leftToClose: number;
  /** The longest single ioctl, in milliseconds. */
  longestIoctlMs: number;
  /** The longest of each kind of ioctl (register, writeprotect, unregister), in milliseconds. */
  longestMs: { register: number; writeprotect: number; unregister: number };
  /** The final close, in milliseconds. */
  closeMs: number;
}

/** The stats of every release of this run, in order (bounded; for benchmarks). */
export const releaseStats: ReleaseStats[] = [];

/** `ranges` (address order) with touching neighbours merged: one chunk may span mappings. */
function adjacentMerged(ranges: readonly [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  for (const [s, e] of ranges) {
    const last = out[out.length - 1];
    if (last && last[1] === s) last[1] = e;
    else out.push([s, e]);
  }
  return out;
}

/**
 * Address space one release chunk may span at most, in chunks' bytes: where
 * the pages present are known, a chunk runs on past empty address space
 * (a huge mapping with few pages: sparse-8GiB's 8 GiB had 512 chunks of 16
 * MiB, two ioctls each, for 256 MiB of pages), up to this bound for pages
 * populated since they were listed.
 */
export const RELEASE_SPAN_CHUNKS = 64;

/** Chunk ends are rounded up to this (a chunk edge inside a huge page would split it). */
const HUGE_PAGE = 2 << 20;

/**
 * The [start, end) chunks a release lifts and unregisters one ioctl pair
 * each: `ranges` (address order, touching ones merged) cut every
 * `chunkBytes`, or, given `data` (the sorted [start, end) runs of pages
 * present when last listed: a pre-copy's scan at the dump's freeze), once
 * each chunk holds `chunkBytes` of them (its end rounded up to a 2 MiB
 * boundary) or spans {@link RELEASE_SPAN_CHUNKS} chunks' bytes. Either way
 * the chunks cover `ranges` exactly: only how long one ioctl holds the
 * target's mmap lock depends on `data` (the pages it walks).
 */
export function releaseChunks(
  ranges: readonly [number, number][],
  chunkBytes: number,
  data?: readonly { start: number; end: number }[],
): [number, number][] {
  const out: [number, number][] = [];
  let k = 0; // the first data run that may end past `at`
  for (const [start, end] of adjacentMerged(ranges)) {
    for (let at = start; at < end;) {
      let e = Math.min(end, at + chunkBytes);
      if (data) {
        const limit = Math.min(end, at + RELEASE_SPAN_CHUNKS * chunkBytes);
        while (k < data.length && data[k].end <= at) k++;
        let need = chunkBytes;
        e = limit;
        for (let j = k; j < data.length && data[j].start < limit; j++) {
          const s = Math.max(data[j].start, at), de = Math.min(data[j].end, limit);
          if (de - s >= need) {
            e = Math.min(limit, Math.ceil((s + need) / HUGE_PAGE) * HUGE_PAGE);
            break;
          }
          need -= Math.max(0, de - s);
        }
      }
      out.push([at, e]);
      at = e;
    }
  }
  return out;
}

/**
 * Releases cryo's userfaultfd `uffd` (a copy whose creator's mm registered
 * the mappings `ranges`, [start, end) in address order, in write-protect
 * mode): lifts and unregisters them `chunkBytes` at a time, then closes it.
 * `chunkBytes` 0 closes at once (the kernel's one-walk release).
 */
export function releaseUffd(
  uffd: number,
  ranges: readonly [number, number][],
  chunkBytes = releaseChunk.bytes,
  /** The pages present, when known ({@link releaseChunks}). */
  data?: readonly { start: number; end: number }[],
): void {
  const t0 = performance.now();
  const s: ReleaseStats = {
    startedAtMs: performance.timeOrigin + t0,
    totalMs: 0,
    chunks: 0,
    leftToClose: 0,
    longestIoctlMs: 0,
    longestMs: { register: 0, writeprotect: 0, unregister: 0 },
    closeMs: 0,
  };
  const timed = (kind: keyof ReleaseStats["longestMs"], f: () => bigint): bigint => {
    const a = performance.now();
    const r = f();
    const ms = performance.now() - a;
    s.longestIoctlMs = Math.max(s.longestIoctlMs, ms);
    s.longestMs[kind] = Math.max(s.longestMs[kind], ms);
    return r;
  };
  if (chunkBytes > 0) {
    for (const [at, e] of releaseChunks(ranges, chunkBytes, data)) {
      const a = BigInt(at), len = BigInt(e - at);
      pausePoint("precopy-release-chunk");
      if (timed("register", () => uffdRegister(uffd, a, len, UFFDIO_REGISTER_MODE_WP)) < 0n) {
        s.leftToClose++;
        continue;
      }
      if (releaseChunk.liftFirst) timed("writeprotect", () => uffdWriteProtect(uffd, a, len, 0n));
      if (timed("unregister", () => uffdUnregister(uffd, a, len)) < 0n) s.leftToClose++;
      else s.chunks++;
    }
  }
  const c = performance.now();
  rawSyscall(SYS.close, uffd);
  s.closeMs = performance.now() - c;
  s.totalMs = performance.now() - t0;
  if (releaseStats.length < 1024) releaseStats.push(s);
}

/**
 * {@link releaseUffd} by a syscall table on one of Deno's blocking-pool
 * threads (ffi/syscall_table.ts): the same ioctls per chunk (the
 * unregistration only where the guard's registration succeeded), then the
 * close, while cryo's thread goes on (the dump completes its images
 * meanwhile); resolves once the fd is closed. Synchronous, as
 * {@link releaseUffd}, where tables cannot run, with `chunkBytes` 0, or
 * when a test pauses between chunks (`precopy-release-chunk`). A cryo
 * killed meanwhile closes the fd with its death: the kernel finishes.
 */
export async function releaseUffdOnTable(
  uffd: number,
  ranges: readonly [number, number][],
  chunkBytes = releaseChunk.bytes,
  /** The pages present, when known ({@link releaseChunks}). */
  data?: readonly { start: number; end: number }[],
): Promise<void> {
  if (
    chunkBytes <= 0 || releaseChunk.liftFirst || pauseWanted("precopy-release-chunk") ||
    !tablesAvailable()
  ) {
    return releaseUffd(uffd, ranges, chunkBytes, data);
  }
  const t0 = performance.now();
  const table = new SyscallTable(64);
  const pairs: [number, number][] = [];
  for (const [at, e] of releaseChunks(ranges, chunkBytes, data)) {
    pairs.push(tableRelease(table, uffd, BigInt(at), BigInt(e - at)));
  }
  const close = table.syscall(SYS.close, uffd);
  const run = table.run();
  pausePoint("precopy-release-table");
  await run.finished;
  const s: ReleaseStats = {
    startedAtMs: performance.timeOrigin + t0,
    totalMs: performance.now() - t0,
    chunks: pairs.filter(([r, u]) => table.result(r) >= 0n && table.result(u) >= 0n).length,
    leftToClose: pairs.filter(([r, u]) => table.result(r) < 0n || table.result(u) < 0n).length,
    longestIoctlMs: 0, // not timed one by one on the table's thread
    longestMs: { register: 0, writeprotect: 0, unregister: 0 },
    closeMs: 0,
  };
  if (table.result(close) < 0n) {
    throw new Error(`close of userfaultfd ${uffd}: ${table.result(close)}`);
  }
  if (releaseStats.length < 1024) releaseStats.push(s);
}
