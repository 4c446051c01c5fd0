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
  UFFDIO_REGISTER_MODE_WP,
  uffdRegister,
  uffdRegisterOffThread,
  uffdUnregister,
  uffdUnregisterOffThread,
  uffdWriteProtect,
  uffdWriteProtectOffThread,
} from "../../ffi/uffd.ts";
import { pausePoint } from "../pause.ts";

/**
 * Bytes lifted and unregistered per ioctl (bounds how long one holds the
 * target's mmap lock); 0: the plain close (benchmarks compare them).
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

/** One ioctl of a release, runnable on this thread or on another one. */
interface ReleaseCall {
  kind: keyof ReleaseStats["longestMs"];
  now(): bigint;
  offThread(): Promise<bigint>;
}

/**
 * The steps of a release (see {@link releaseUffd}): yields each ioctl and
 * takes its result; the caller closes the fd afterwards.
 */
function* releaseSteps(
  uffd: number,
  ranges: readonly [number, number][],
  chunkBytes: number,
  s: ReleaseStats,
): Generator<ReleaseCall, void, bigint> {
  if (chunkBytes <= 0) return;
  for (const [start, end] of adjacentMerged(ranges)) {
    for (let at = start; at < end; at += chunkBytes) {
      const a = BigInt(at), len = BigInt(Math.min(chunkBytes, end - at));
      pausePoint("precopy-release-chunk");
      const registered: bigint = yield {
        kind: "register",
        now: () => uffdRegister(uffd, a, len, UFFDIO_REGISTER_MODE_WP),
        offThread: () => uffdRegisterOffThread(uffd, a, len, UFFDIO_REGISTER_MODE_WP),
      };
      if (registered < 0n) {
        s.leftToClose++;
        continue;
      }
      if (releaseChunk.liftFirst) {
        yield {
          kind: "writeprotect",
          now: () => uffdWriteProtect(uffd, a, len, 0n),
          offThread: () => uffdWriteProtectOffThread(uffd, a, len, 0n),
        };
      }
      const unregistered: bigint = yield {
        kind: "unregister",
        now: () => uffdUnregister(uffd, a, len),
        offThread: () => uffdUnregisterOffThread(uffd, a, len),
      };
      if (unregistered < 0n) s.leftToClose++;
      else s.chunks++;
    }
  }
}

/** Fresh stats of a release starting now. */
function newStats(t0: number): ReleaseStats {
  return {
    startedAtMs: performance.timeOrigin + t0,
    totalMs: 0,
    chunks: 0,
    leftToClose: 0,
    longestIoctlMs: 0,
    longestMs: { register: 0, writeprotect: 0, unregister: 0 },
    closeMs: 0,
  };
}

/** Records one ioctl's time. */
function timed(s: ReleaseStats, kind: ReleaseCall["kind"], ms: number): void {
  s.longestIoctlMs = Math.max(s.longestIoctlMs, ms);
  s.longestMs[kind] = Math.max(s.longestMs[kind], ms);
}

/** Closes the fd and records the stats. */
function closeReleased(uffd: number, s: ReleaseStats, t0: number): void {
  const c = performance.now();
  rawSyscall(SYS.close, uffd);
  s.closeMs = performance.now() - c;
  s.totalMs = performance.now() - t0;
  if (releaseStats.length < 1024) releaseStats.push(s);
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
): void {
  const t0 = performance.now();
  const s = newStats(t0);
  const steps = releaseSteps(uffd, ranges, chunkBytes, s);
  for (let step = steps.next(); !step.done;) {
    const a = performance.now();
    const r = step.value.now();
    timed(s, step.value.kind, performance.now() - a);
    step = steps.next(r);
  }
  closeReleased(uffd, s, t0);
}

/** The chunks of a release: [start, length] of at most `chunkBytes` each, in address order. */
function releaseChunks(
  ranges: readonly [number, number][],
  chunkBytes: number,
): [bigint, bigint][] {
  const out: [bigint, bigint][] = [];
  if (chunkBytes <= 0) return out;
  for (const [start, end] of adjacentMerged(ranges)) {
    for (let at = start; at < end; at += chunkBytes) {
      out.push([BigInt(at), BigInt(Math.min(chunkBytes, end - at))]);
    }
  }
  return out;
}

/** Chunks whose ioctls are in flight at once in {@link releaseUffdOffThread}. */
export const RELEASE_WAVE = 8;

/**
 * {@link releaseUffd} with its ioctls (the page-table walks) on other
 * threads, so that the dump completes its images meanwhile: the chunks go
 * in waves of {@link RELEASE_WAVE}, each chunk's guard (UFFDIO_REGISTER)
 * before its own unregistration as in {@link releaseUffd}; the calls of a
 * wave are issued together, so the main thread needs two turns per wave,
 * not two per chunk (an ioctl's result is taken only when it yields). The
 * chunks are independent: the kernel serialises their walks on the
 * target's mmap lock. Never rejects.
 */
export async function releaseUffdOffThread(
  uffd: number,
  ranges: readonly [number, number][],
  chunkBytes = releaseChunk.bytes,
): Promise<void> {
  const t0 = performance.now();
  const s = newStats(t0);
  const call = async (kind: ReleaseCall["kind"], f: () => Promise<bigint>): Promise<bigint> => {
    const a = performance.now();
    let r: bigint;
    try {
      r = await f();
    } catch {
      r = -22n; // left to the close
    }
    timed(s, kind, performance.now() - a);
    return r;
  };
  const chunks = releaseChunks(ranges, chunkBytes);
  for (let i = 0; i < chunks.length; i += RELEASE_WAVE) {
    const wave = chunks.slice(i, i + RELEASE_WAVE);
    const guards = await Promise.all(wave.map(([a, len]) => {
      pausePoint("precopy-release-chunk");
      return call("register", () => uffdRegisterOffThread(uffd, a, len, UFFDIO_REGISTER_MODE_WP));
    }));
    if (releaseChunk.liftFirst) {
      await Promise.all(
        wave.map(([a, len], j) =>
          guards[j] < 0n
            ? undefined
            : call("writeprotect", () => uffdWriteProtectOffThread(uffd, a, len, 0n))
        ),
      );
    }
    const done = await Promise.all(
      wave.map(([a, len], j) =>
        guards[j] < 0n
          ? Promise.resolve(-1n)
          : call("unregister", () => uffdUnregisterOffThread(uffd, a, len))
      ),
    );
    for (const r of done) {
      if (r < 0n) s.leftToClose++;
      else s.chunks++;
    }
  }
  closeReleased(uffd, s, t0);
}
