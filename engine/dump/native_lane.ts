/**
 * A second copy lane without a Worker: a pre-copy's segments
 * (engine/dump/precopy_copy.ts) copied by a syscall table
 * (ffi/syscall_table.ts) that one of Deno's blocking-pool threads runs,
 * from the first on (a small starter table first, so that the copy starts
 * while the others are planned). Once free (the collect's rehearsal beside
 * done), cryo's thread takes the last half of the segments the table with
 * the most of them not reached yet back at once ({@link NativeCopy.claimHalf}:
 * each entry of a table has a guard that cryo's thread makes fail) and has
 * another table copy them on another blocking-pool thread while it waits (a
 * table copies a MiB for about half the CPU of `copySegment` on cryo's
 * thread: docs/PERFORMANCE.md, smalldump2), and again until no table has a
 * segment it has not reached (the last one is claimed alone), so that the
 * tables end together. Per MiB a table reads
 * the pages into a page-aligned buffer of its own, each piece of
 * {@link PIN_MIN_BYTES} or more with `process_vm_readv` where the table
 * itself finds, from the piece's pagemap entries read just before, every
 * page present and mapped by the process alone (ffi/pin_check.ts: the pin
 * then cannot unshare a page shared copy-on-write), else with `pread` of
 * /proc/<pid>/mem (which never pins); cryo's thread plans no look-up. It
 * folds the block's CRC and
 * writes it with `pwrite` at its file offset: the same bytes, block CRCs
 * and runs as `copySegment`, with no JavaScript per MiB and no isolate to
 * create (a Worker costs cryo's thread 20 to 40 ms to create: the Worker
 * lanes of copy_lanes.ts are used from 1 GiB only).
 *
 * A segment whose reads or writes fall short (memory unmapped by the
 * running target, a full disk) is copied again by cryo's thread with
 * `copySegment` (which records what cannot be read, or throws). The
 * table's fds and buffers are released only once its thread is done, also
 * when cryo's own lane fails.
 *
 * @module
 */

import {
  type CopyJob,
  type CopyResult,
  type CopySegment,
  copySegment,
  jobBytes,
  mergeSegments,
  newLane,
  segmentJobs,
  type SegmentResult,
} from "./precopy_copy.ts";
import { CRC_BLOCK, pageBufferBytes } from "./memory.ts";
import { pausePoint } from "../pause.ts";
import { crc32AfterFold } from "../image/crc32.ts";
import { pageAlignedBuffer, preallocate } from "../../ffi/page_file.ts";
import { addressOf } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { pinCheckFn } from "../../ffi/pin_check.ts";
import {
  closeRawFd,
  openRawFd,
  SyscallTable,
  type TableRun,
  tablesAvailable,
} from "../../ffi/syscall_table.ts";
import type { CopiedRun } from "./precopy_copy.ts";

/**
 * Below this many resident bytes, one lane (a few ms of copy; the table's
 * set-up is ~1 ms). The pre-copy itself starts at 32 MiB unless forced.
 */
export const NATIVE_LANE_MIN_BYTES = 8 << 20;

/**
 * Segment size of a copy on the native lane and cryo's thread: what cryo's
 * thread may wait for at the end, for the segment the table is copying.
 */
export const NATIVE_SEGMENT_BYTES = 2 << 20;

/**
 * Share of the bytes given to the table's thread at the start (it takes
 * the last segments): all of them. Cryo's thread then takes the table's
 * last segments back while the table has not reached them (for a second
 * table, then one by one: {@link NativeLaneCopy.finish}), so the lanes end
 * together whatever each one's speed: a share fixed in advance (0.6, or 0.88 of 64 MiB with the
 * collect's rehearsal beside) left one lane idle for 10 to 70 ms on a
 * loaded machine (docs/PERFORMANCE.md, sixth pass).
 */
export const NATIVE_SHARE = 1;

/**
 * The first table, up to this many bytes, is planned and started before
 * the others are planned, so that the copy starts at once.
 */
export const NATIVE_STARTER_BYTES = 4 << 20;

/**
 * Pieces shorter than this are read from /proc/<pid>/mem without a look;
 * from this size the table reads the piece's pagemap entries and reads it
 * with process_vm_readv when every page is present and mapped by the
 * process alone (pagemap bits 63 and 56: the pin never unshares a page
 * shared copy-on-write), with a pread of /proc/<pid>/mem otherwise
 * (ffi/pin_check.ts decides in the table). Measured in C on sparse-8GiB's
 * pages: per piece of 16 pages the pagemap read costs 1.2 us, the pread 8.8
 * and process_vm_readv 5.8; of 256 pages 8, 143 and 76 us.
 */
export const PIN_MIN_BYTES = 64 << 10;

/** Whether the native lane can run here (x86-64, PCLMULQDQ, an executable page). */
export function nativeLaneAvailable(): boolean {
  return tablesAvailable();
}

/** What one segment's entries must return to count as copied. */
interface Expect {
  /** Table entry. */
  entry: number;
  /** The bytes it must return. */
  bytes: number;
  /**
   * A piece whose read the table chooses: `entry` is its process_vm_readv,
   * this its pread of /proc/<pid>/mem; the one that ran must return `bytes`.
   */
  alt?: number;
}

/** One segment in the table. */
interface PlannedSegment {
  expects: Expect[];
  /** The 16-byte fold remainders of its blocks, in order. */
  folds: Uint8Array[];
  copied: CopiedRun[];
  /**
   * The guard entry before each of its entries ({@link NativeCopy.claim}):
   * `fcntl(fd, F_GETFD)` on one of the table's own fds, which skips the
   * entry after it once its fd is patched to -1 (EBADF). Result 0: not run
   * yet; above 0: it passed and the entry after it ran.
   */
  guards: number[];
}

const F_GETFD = 1;
const PAGE = 4096;

/** A set of segments being copied by a table on another thread. */
export class NativeCopy {
  readonly #table: SyscallTable;
  readonly #run: TableRun;
  readonly #segments: PlannedSegment[];
  readonly #fds: number[];
  #closed = false;
  /** Segments [tail, length) are claimed by cryo's thread ({@link claim}). */
  #tail: number;
  /** Claims leave the guards as they are (tests: {@link NativeLaneOptions.unguardedClaims}). */
  readonly #unguarded: boolean;
  /** Copies started on tables by this process so far (tests check that the lane took part). */
  static started = 0;
  /** Pieces read with process_vm_readv by tables of this process so far (counted by {@link results}; tests). */
  static pinned = 0;
  /** Segments claimed back from tables by this process so far (tests). */
  static claimed = 0;
  /** Claimed segments the table ran entries of anyway, copied again (tests). */
  static conflicts = 0;

  private constructor(
    table: SyscallTable,
    segments: PlannedSegment[],
    fds: number[],
    unguarded: boolean,
  ) {
    this.#unguarded = unguarded;
    this.#table = table;
    this.#segments = segments;
    this.#fds = fds;
    this.#tail = segments.length;
    this.#run = table.run();
  }

  /**
   * Takes the table's last unclaimed segment away from it while it runs:
   * its index (cryo's thread must copy it, see {@link touched}), or
   * undefined when the table is done or has reached it (the first segment
   * is never claimed). Its guards are patched to fail once the table is
   * seen not to have run the first one: a table that got there meanwhile
   * runs some of its entries, which shows in {@link touched}.
   */
  claim(): number | undefined {
    const next = this.#tail - 1;
    if (next < 1 || this.#run.done()) return undefined;
    const segs = this.#segments;
    if (this.#table.result(segs[next].guards[0]) !== 0n) return undefined; // reached
    if (!this.#unguarded) { for (const g of segs[next].guards) this.#table.patch(g, [-1]); }
    this.#tail = next;
    NativeCopy.claimed++;
    return next;
  }

  /**
   * Takes the last half of the segments the table has not reached away
   * from it at once (each as {@link claim} does; the last one alone when
   * `minLeft` is 1): the first of them (they run to the old {@link tail}),
   * or undefined when fewer than `minLeft` are left to it.
   */
  claimHalf(minLeft = 2): number | undefined {
    if (this.#run.done()) return undefined;
    const left = this.unreached();
    if (left < minLeft) return undefined;
    const from = this.#tail - Math.max(1, Math.floor(left / 2));
    for (let i = this.#tail - 1; i >= from; i--) {
      if (!this.#unguarded) {
        for (const g of this.#segments[i].guards) this.#table.patch(g, [-1]);
      }
      NativeCopy.claimed++;
    }
    this.#tail = from;
    return from;
  }

  /**
   * How many of the segments left to the table it has not reached yet (its
   * first segment is never counted): what {@link claimHalf} may take.
   */
  unreached(): number {
    if (this.#run.done()) return 0;
    const segs = this.#segments;
    let first = this.#tail; // the table's first unreached segment, looked for from the end
    while (first > 1 && this.#table.result(segs[first - 1].guards[0]) === 0n) first--;
    return this.#tail - first;
  }

  /** Segments [tail, length) are claimed ({@link claim}, {@link claimHalf}). */
  get tail(): number {
    return this.#tail;
  }

  /** Whether the table ran any entry of segment `i` (only once it is done). */
  touched(i: number): boolean {
    return this.#segments[i].guards.some((g) => this.#table.result(g) > 0n);
  }

  /** True once the table's thread is done (no event loop turn needed). */
  done(): boolean {
    return this.#run.done();
  }

  /** Resolves once the table's thread is done (never rejects). */
  get finished(): Promise<void> {
    return this.#run.finished.catch(() => {});
  }

  /**
   * Plans `segments` (whose files exist) into a table and starts it.
   * Throws before anything runs when a file cannot be opened. Pieces of
   * `pinMinBytes` or more are read with process_vm_readv where the table
   * finds all their pages mapped by the process alone (ffi/pin_check.ts),
   * the others with a pread of /proc/<pid>/mem. With `unguarded` (tests)
   * the claims leave the table's guards as they are.
   */
  static start(
    segments: readonly CopySegment[],
    pinMinBytes = Infinity,
    unguarded = false,
  ): NativeCopy {
    const fds: number[] = [];
    const check = pinMinBytes < Infinity ? pinCheckFn() : null;
    const files = new Map<string, number>();
    const mems = new Map<number, number>();
    const pagemaps = new Map<number, number>();
    const fdOf = <K>(map: Map<K, number>, key: K, path: string, write: boolean) => {
      let fd = map.get(key);
      if (fd === undefined) {
        fd = openRawFd(path, write);
        fds.push(fd);
        map.set(key, fd);
      }
      return fd;
    };
    // A pagemap that cannot be opened (it never fails where /proc/<pid>/mem opens) is -1: its
    // reads fail, the entries stay zero, every piece is read from /proc/<pid>/mem.
    const pagemapOf = (pid: number) => {
      try {
        return fdOf(pagemaps, pid, `/proc/${pid}/pagemap`, false);
      } catch {
        pagemaps.set(pid, -1);
        return -1;
      }
    };
    // A process reaped meanwhile has no /proc/<pid>/mem: -1 as well, its reads fail and
    // cryo's thread copies its segments again (`copySegment` records them lost).
    const memOf = (pid: number) => {
      try {
        return fdOf(mems, pid, `/proc/${pid}/mem`, false);
      } catch {
        mems.set(pid, -1);
        return -1;
      }
    };
    const table = new SyscallTable(32 * segments.length + 8);
    const buffer = pageAlignedBuffer(CRC_BLOCK); // one block at a time
    table.keep(buffer);
    const base = addressOf(buffer);
    const planned: PlannedSegment[] = [];
    try {
      // The blocks first, then the iovecs and pagemap entries of the checked pieces as one
      // array each, then the entries.
      const blocks: {
        p: PlannedSegment;
        chunk: Piece[];
        fill: number;
        fds: BlockFds;
        at: number;
      }[] = [];
      let checked = 0, pages = 0;
      for (const seg of segments) {
        const fd = fdOf(files, seg.path, seg.path, true);
        const p: PlannedSegment = { expects: [], folds: [], copied: [], guards: [] };
        planned.push(p);
        let fileAt = seg.fileOffset;
        let chunk: Piece[] = [];
        let fill = 0;
        const flush = () => {
          if (fill === 0) return;
          const mem = memOf(seg.pid);
          const pm = check ? pagemapOf(seg.pid) : -1;
          blocks.push({ p, chunk, fill, fds: { mem, pm, file: fd, pid: seg.pid }, at: fileAt });
          fileAt += fill;
          chunk = [];
          fill = 0;
        };
        for (const { runs } of seg.planned) {
          for (const r of runs) {
            p.copied.push({ addr: Number(r.addr), length: r.length, fileOffset: fileAt + fill });
            const addr = Number(r.addr);
            for (let done = 0; done < r.length;) {
              const n = Math.min(CRC_BLOCK - fill, r.length - done);
              const pin = check !== null && n >= pinMinBytes;
              chunk.push({ addr: addr + done, length: n, at: fill, pin });
              if (pin) [checked, pages] = [checked + 1, pages + n / PAGE];
              fill += n;
              done += n;
              if (fill === CRC_BLOCK) flush();
            }
          }
        }
        flush();
      }
      // [local address, length, remote address, length] per checked piece, and its pagemap
      // entries (zeros until read: a short read leaves pages that are not exclusive).
      const iovs = new BigUint64Array(4 * checked);
      const entries = new BigUint64Array(pages);
      if (checked) table.keep(iovs), table.keep(entries);
      const iov = {
        words: iovs,
        at: checked ? addressOf(iovs) : 0n,
        next: 0,
        entries: checked ? addressOf(entries) : 0n,
        page: 0,
        check: check ?? 0n,
      };
      for (const b of blocks) emitChunk(table, b.p, b.chunk, base, b.fill, b.fds, iov, b.at);
      return new NativeCopy(table, planned, fds, unguarded);
    } catch (e) {
      for (const fd of fds) closeRawFd(fd); // nothing runs: the table did not start
      throw e;
    }
  }

  /**
   * Once {@link finished}: each segment's result, or undefined where a
   * read or a write fell short (copy it again). Closes the table's fds.
   */
  results(): (SegmentResult | undefined)[] {
    if (!this.#run.done()) throw new Error("native copy not finished");
    this.close();
    const t = this.#table;
    return this.#segments.map((s) => {
      for (const x of s.expects) {
        if (x.alt !== undefined && t.result(x.entry) > 0n) NativeCopy.pinned++;
        if (t.resultNumber(x.entry) === x.bytes) continue;
        if (x.alt === undefined || t.resultNumber(x.alt) !== x.bytes) return undefined;
      }
      return {
        blockCrcs: s.folds.map((f) => crc32AfterFold(f, new Uint8Array(0))),
        copied: s.copied,
        lost: [],
      };
    });
  }

  /** Closes the fds; only once the table's thread is done. */
  close(): void {
    if (this.#closed || !this.#run.done()) return;
    this.#closed = true;
    for (const fd of this.#fds) closeRawFd(fd);
  }
}

/** The fds (and pid) the entries of a block name. */
interface BlockFds {
  mem: number;
  /** /proc/<pid>/pagemap (-1 without checked pieces). */
  pm: number;
  file: number;
  pid: number;
}

/** A piece of a block: `length` bytes from `addr` into the buffer at `at`. */
interface Piece {
  addr: number;
  length: number;
  at: number;
  /**
   * The table reads its pagemap entries and reads it with process_vm_readv
   * when all its pages are mapped by the process alone, else /proc/<pid>/mem.
   */
  pin: boolean;
}

/**
 * The entries of one block of a segment: a `pread` of /proc/<pid>/mem into
 * the buffer per piece (a piece to check: a `pread` of its pagemap entries,
 * then its process_vm_readv or its pread, whichever the check lets run), its
 * CRC fold, its `pwrite`.
 */
function emitChunk(
  table: SyscallTable,
  seg: PlannedSegment,
  pieces: Piece[],
  base: bigint,
  fill: number,
  fds: BlockFds,
  /** The iovec array and the pagemap entries of the checked pieces, the next ones free, the check. */
  iov: {
    words: BigUint64Array;
    at: bigint;
    next: number;
    entries: bigint;
    page: number;
    check: bigint;
  },
  fileAt: number,
): void {
  const guard = () => seg.guards.push(table.syscallOrSkipNext(SYS.fcntl, fds.mem, F_GETFD));
  for (const piece of pieces) {
    guard();
    const into = base + BigInt(piece.at);
    if (piece.pin) {
      const i = 4 * iov.next++, len = BigInt(piece.length), n = piece.length / PAGE;
      iov.words.set([into, len, BigInt(piece.addr), len], i);
      const local = iov.at + BigInt(8 * i), ents = iov.entries + BigInt(8 * iov.page);
      iov.page += n;
      // (Skipped with the guard: the entries stay zero, the checks fail on the patched fd.)
      table.syscall(SYS.pread64, fds.pm, ents, 8 * n, (piece.addr / PAGE) * 8);
      // Each check has the guard's fd as its first argument: patched by a claim too.
      seg.guards.push(table.callOrSkipNext(iov.check, fds.mem, ents, n, 1));
      const e = table.syscall(SYS.process_vm_readv, fds.pid, local, 1, local + 16n, 1, 0);
      seg.guards.push(table.callOrSkipNext(iov.check, fds.mem, ents, n, 0));
      const alt = table.syscall(SYS.pread64, fds.mem, into, piece.length, piece.addr);
      seg.expects.push({ entry: e, bytes: piece.length, alt });
    } else {
      const e = table.syscall(SYS.pread64, fds.mem, into, piece.length, piece.addr);
      seg.expects.push({ entry: e, bytes: piece.length });
    }
  }
  const out = new Uint8Array(16);
  guard();
  table.fold(base, fill, 0xffffffff, out);
  seg.folds.push(out);
  guard();
  const w = table.syscall(SYS.pwrite64, fds.file, base, fill, fileAt);
  seg.expects.push({ entry: w, bytes: fill });
}

/** Options of {@link copyOnNativeLane} (tests). */
export interface NativeLaneOptions {
  /** Segment size (default {@link NATIVE_SEGMENT_BYTES}; a multiple of 1 MiB). */
  segmentBytes?: number;
  /** Share of the bytes for the table's thread (default {@link NATIVE_SHARE}; 1: all). */
  share?: number;
  /**
   * Allocate each file's page region first (ffi/page_file.ts
   * `preallocate`): the copy is ~10% shorter, but a later fdatasync converts
   * the unwritten extents (~10 ms more at 64 MiB), so only for an image
   * that is not synced.
   */
  preallocate?: boolean;
  /**
   * The jobs' files exist and hold data before `pagesStart` (an image
   * writer's header: engine/dump/snapshot_lanes.ts): not created or
   * truncated.
   */
  existingFiles?: boolean;
  /**
   * false: every piece read from /proc/<pid>/mem, no pagemap read (default:
   * the tables check pieces of {@link PIN_MIN_BYTES} or more and read those
   * mapped by the process alone with process_vm_readv).
   */
  pin?: boolean;
  /** Bytes of the starter table (default {@link NATIVE_STARTER_BYTES}; tests). */
  starterBytes?: number;
  /** Shortest piece the tables check for process_vm_readv (default {@link PIN_MIN_BYTES}; tests). */
  pinMinBytes?: number;
  /**
   * Run on cryo's thread once the table's thread copies, before this
   * thread's own share (work that needs no copy: the collect's rehearsal on
   * a helper, engine/dump/rehearsal.ts). Must not throw.
   */
  beside?: () => unknown;
  /**
   * Test hook: cryo's thread claims segments without patching the table's
   * guards, so the table copies every claimed segment too: each claim is a
   * conflict ({@link NativeCopy.conflicts}), the segment copied again here
   * once the table is done, as when the table reaches a segment between
   * the claim's look and its patch.
   */
  unguardedClaims?: boolean;
  /**
   * Cryo's thread copies the segments it claims from the last table itself,
   * one by one (with `copySegment`), instead of claiming the last half of
   * what a table has not reached for another table (tests; the default is
   * the other tables).
   */
  claimsHere?: boolean;
}

/**
 * A copy of jobs on two lanes: the last {@link NATIVE_SHARE} of their
 * segments on a syscall table's thread ({@link NativeCopy}), started by
 * {@link start} (synchronous: it may run in a freeze), the rest on this
 * thread by {@link finish} (`copySegment`, with the `precopy-pages` pause
 * point), then, again and again, the last half of the segments the table
 * with the most of them not reached yet has not reached, on another table,
 * then any segment a table could not copy whole (or both lanes wrote), here too.
 */
export class NativeLaneCopy {
  readonly #jobs: readonly CopyJob[];
  readonly #segments: CopySegment[];
  /** Segments [0, mine) are this thread's. */
  readonly #mine: number;
  /**
   * The tables started at once, in segment order, each with the index of its
   * first segment: the starter ({@link NATIVE_STARTER_BYTES}), then the rest.
   */
  readonly #tables: { copy: NativeCopy; at: number }[] = [];
  /** A table after the first could not start (a file or fd could not be opened). */
  #startError: { error: unknown } | undefined;
  /** The shortest piece the tables check for process_vm_readv (Infinity: none). */
  readonly #pinMin: number;
  /** The tables of the segments cryo's thread claimed back from the others. */
  readonly #claimed: NativeCopy[] = [];
  readonly #size: number;
  readonly #beside: (() => unknown) | undefined;
  readonly #unguarded: boolean;
  readonly #claimsHere: boolean;

  private constructor(jobs: readonly CopyJob[], opts: NativeLaneOptions) {
    this.#jobs = jobs;
    this.#beside = opts.beside;
    this.#unguarded = opts.unguardedClaims === true;
    this.#claimsHere = opts.claimsHere === true;
    this.#size = opts.segmentBytes ?? NATIVE_SEGMENT_BYTES;
    const share = opts.share ?? NATIVE_SHARE;
    for (const job of jobs) {
      if (!opts.existingFiles) {
        Deno.openSync(job.path, { write: true, create: true, truncate: true, mode: 0o700 })
          .close();
      }
      // Both lanes' pwrites then hold the inode's lock for less (docs/PERFORMANCE.md).
      if (opts.preallocate) preallocate(job.path, job.pagesStart, jobBytes(job));
    }
    const segments = segmentJobs(jobs, this.#size);
    const total = jobs.reduce((n, j) => n + jobBytes(j), 0);
    let k = segments.length, theirs = 0;
    while (k > 0 && theirs + segments[k - 1].bytes <= total * share) {
      theirs += segments[--k].bytes;
    }
    this.#segments = segments;
    this.#mine = k;
    const upTo = (from: number, limit: number) => {
      let end = from, bytes = 0;
      while (end < segments.length && bytes < limit) bytes += segments[end++].bytes;
      return end;
    };
    // Every table checks its pieces' pages itself (no look-up on this thread to wait for).
    this.#pinMin = opts.pin === false ? Infinity : opts.pinMinBytes ?? PIN_MIN_BYTES;
    // The starter is planned first and copies while the rest is planned (a table of
    // 32 MiB of a fragmented heap took 2 to 4 ms of cryo's thread to plan).
    const starter = upTo(k, opts.starterBytes ?? NATIVE_STARTER_BYTES);
    const bounds = [k];
    for (const b of [starter, segments.length]) {
      if (b > bounds[bounds.length - 1]) bounds.push(b);
    }
    for (let t = 0; t + 1 < bounds.length; t++) {
      try {
        const segs = segments.slice(bounds[t], bounds[t + 1]);
        this.#tables.push({
          copy: NativeCopy.start(segs, this.#pinMin, this.#unguarded),
          at: bounds[t],
        });
      } catch (e) {
        // Thrown by finish() once the tables started are done (nothing may be writing then).
        this.#startError = { error: e };
        break;
      }
    }
    if (this.#tables.length) NativeCopy.started++;
  }

  /** Creates (or truncates) the jobs' files and starts the table's share. */
  static start(jobs: readonly CopyJob[], opts: NativeLaneOptions = {}): NativeLaneCopy {
    return new NativeLaneCopy(jobs, opts);
  }

  /** Copies this thread's share, waits for the tables', and returns each job's result. */
  async finish(): Promise<CopyResult[]> {
    const segments = this.#segments;
    if (this.#startError) {
      await this.abandon();
      throw this.#startError.error;
    }
    const total = this.#jobs.reduce((n, j) => n + jobBytes(j), 0);
    const lane = newLane(pageBufferBytes(Math.min(total, this.#size)));
    try {
      const results: (SegmentResult | undefined)[] = [];
      const pause = () => pausePoint("precopy-pages");
      await this.#beside?.();
      const mine = this.#mine;
      for (let i = 0; i < mine; i++) results.push(await copySegment(segments[i], lane, pause));
      if (mine === 0) pause(); // the table's thread copies everything (its pages may be in flight)
      // Then, while a table has segments it has not reached, the last half of the most of
      // them (the last one alone at the end) on another table, this thread waiting (a table
      // copies a MiB for about half the CPU of `copySegment`): the tables end together.
      const tables = this.#tables.map((t) => ({
        ...t,
        claimed: new Map<number, SegmentResult | undefined>(),
      }));
      while (!this.#claimsHere) {
        let pick: (typeof tables)[number] | undefined, most = 0;
        for (const t of tables) {
          const n = t.copy.unreached();
          if (n > most) [pick, most] = [t, n];
        }
        if (!pick) break;
        const to = pick.copy.tail, from = pick.copy.claimHalf(1);
        if (from === undefined) continue; // reached meanwhile: look again
        const copy = NativeCopy.start(
          segments.slice(pick.at + from, pick.at + to),
          this.#pinMin,
          this.#unguarded,
        );
        this.#claimed.push(copy);
        await copy.finished;
        const claimed = pick.claimed;
        copy.results().forEach((r, j) => claimed.set(from + j, r));
      }
      // ...or (tests) the last table's last segments, one by one, here.
      const last = tables[tables.length - 1];
      for (let c = last?.copy.claim(); c !== undefined; c = last.copy.claim()) {
        last.claimed.set(c, await copySegment(segments[last.at + c], lane, pause));
      }
      for (const t of tables) {
        await t.copy.finished;
        t.copy.results().forEach((r, j) => {
          // A claimed segment the table wrote into too (it got there first) is copied again,
          // as is one a table could not copy whole.
          const conflict = t.claimed.has(j) && t.copy.touched(j);
          if (conflict) NativeCopy.conflicts++;
          results[t.at + j] = t.claimed.has(j) ? (conflict ? undefined : t.claimed.get(j)) : r;
        });
      }
      for (let i = mine; i < segments.length; i++) {
        results[i] ??= await copySegment(segments[i], lane, pause);
      }
      return mergeSegments(this.#jobs, segments, results as SegmentResult[]);
    } finally {
      await this.abandon(); // the tables' threads must be done before their fds close
      lane.files.close();
    }
  }

  /** Waits until the tables' threads are done and closes their fds (a copy given up). */
  async abandon(): Promise<void> {
    for (const t of [...this.#tables.map((t) => t.copy), ...this.#claimed]) {
      await t.finished;
      t.close();
    }
  }
}

/** {@link NativeLaneCopy.start} then {@link NativeLaneCopy.finish}: the same results as `copyPlanned` of each job. */
export async function copyOnNativeLane(
  jobs: readonly CopyJob[],
  opts: NativeLaneOptions = {},
): Promise<CopyResult[]> {
  return await NativeLaneCopy.start(jobs, opts).finish();
}
