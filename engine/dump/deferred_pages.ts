/**
 * A {@link PageWriter} whose `pwrite`s run after the buffer is handed
 * back, on another thread, so that a copy made in a freeze only reads the
 * pages (and sums them) on cryo's thread: the writes into fresh page-cache
 * pages (~1.5 ms per MiB on this VM) go on on another CPU, and may end
 * after the thaw. When the dump's size is known, one thread serves every
 * write in order (ffi/write_queue.ts: a futex wake per write); otherwise
 * each write is a one-entry syscall table of its own
 * (ffi/syscall_table.ts). A buffer whose write is done is reused first (it
 * is still in the CPU's cache), then one made ready before the freeze
 * ({@link prepareDeferredBuffers}); at most {@link DEFERRED_MAX_BYTES} of
 * buffers, past that the oldest write is waited for. {@link settled} waits
 * for every write and checks it: a short write (or one the queue's thread
 * ran before it was posted) is completed on cryo's thread, a failed one
 * throws. The bytes written are the bytes read in the freeze.
 *
 * @module
 */

import { pageAlignedBuffer, PageFile } from "../../ffi/page_file.ts";
import {
  closeRawFd,
  openRawFd,
  SyscallTable,
  type TableRun,
  tablesAvailable,
} from "../../ffi/syscall_table.ts";
import { SYS } from "../../ffi/sysno.ts";
import { PAGE_BUFFER_BYTES, type PageWriter, takeAcquired } from "./page_writer.ts";
import { lanesAvailable } from "./copy_lanes.ts";
import { lanesOverride } from "./precopy_lanes.ts";
import { sleepSync } from "../sleep_sync.ts";
import { EBADF, WriteQueue } from "../../ffi/write_queue.ts";
import { crc32, crc32AfterFold } from "../image/crc32.ts";

/** Bytes of buffers whose writes may be in flight at once. */
export const DEFERRED_MAX_BYTES = 32 << 20;

/**
 * Most resident bytes a dump frozen once defers the writes of: past
 * {@link DEFERRED_MAX_BYTES} a buffer whose write is done is reused (the
 * writes run beside the freeze's reads, at about their pace).
 */
export const DEFERRED_DUMP_MAX_BYTES = 64 << 20;

/**
 * Most bytes of buffers made ready before the freeze: past them the
 * buffers whose writes are done are reused (a CPU to spare keeps the
 * writes at the reads' pace), and cryo's peak RSS stays ~16 MiB above a
 * dump that writes in the freeze.
 */
export const DEFERRED_READY_BYTES = 16 << 20;

/** Writes handed to other threads so far, in this process (tests). */
export const deferredStats = { writes: 0 };

const MADV_POPULATE_WRITE = 23;

/** Buffers made ready before the freeze ({@link prepareDeferredBuffers}). */
const ready: Uint8Array<ArrayBuffer>[] = [];

/**
 * Whether a dump frozen once of about `bytes` of resident memory defers
 * its page writes: syscall tables run here, at most
 * {@link DEFERRED_DUMP_MAX_BYTES}, and a CPU to spare (copy_lanes.ts
 * `lanesAvailable`: with none the writes only wait for the freeze's own
 * CPU); `CRYO_COPY_LANES=1` never, another value always. If so, buffers
 * for them are prepared ({@link prepareDeferredBuffers}).
 */
export function prepareDeferredWrites(bytes: number): boolean {
  const force = lanesOverride();
  if (force === 1 || bytes > DEFERRED_DUMP_MAX_BYTES || !tablesAvailable()) return false;
  if (force === undefined && !lanesAvailable()) return false;
  prepareDeferredBuffers(bytes, PAGE_BUFFER_BYTES);
  return true;
}

/**
 * Allocates buffers for `bytes` of page data (at most
 * {@link DEFERRED_READY_BYTES}) and has another thread fault them in
 * (MADV_POPULATE_WRITE): first touches of fresh memory cost as much as the
 * page cache's, and must not fall in the freeze.
 */
export function prepareDeferredBuffers(bytes: number, size: number): void {
  const n = Math.min(Math.ceil(bytes / size), DEFERRED_READY_BYTES / size) - ready.length;
  if (n <= 0) return;
  const all = pageAlignedBuffer(n * size);
  const table = new SyscallTable(1);
  table.syscall(SYS.madvise, all, n * size, MADV_POPULATE_WRITE);
  table.run();
  for (let i = 0; i < n; i++) ready.push(all.subarray(i * size, (i + 1) * size));
}

/**
 * Up to `n` of the buffers made ready before the freeze, of `size` bytes
 * each (none when they are of another size), taken out of the pool: for a
 * copy made ahead into them (engine/dump/copy_ahead.ts), which hands them
 * to a writer ({@link DeferredPageWriter.acquireFilled}) or gives them back
 * ({@link giveBackReady}).
 */
export function takeReadyBuffers(n: number, size: number): Uint8Array<ArrayBuffer>[] {
  const out: Uint8Array<ArrayBuffer>[] = [];
  while (out.length < n && ready.length && ready[ready.length - 1].length === size) {
    out.push(ready.pop()!);
  }
  return out;
}

/** Puts buffers taken with {@link takeReadyBuffers} and not used back into the pool. */
export function giveBackReady(buffers: readonly Uint8Array<ArrayBuffer>[]): void {
  for (const b of buffers) ready.push(b);
}

interface Pending {
  buffer: Uint8Array<ArrayBuffer>;
  /** Its own table (no queue), or its index in the queue. */
  table?: SyscallTable;
  run?: TableRun;
  index: number;
  length: number;
  offset: number;
  /** Its place among the buffers submitted. */
  seq: number;
}

const NO_TAIL = new Uint8Array(0);

/** Page data written by other threads into the existing file `path`. */
export class DeferredPageWriter implements PageWriter {
  readonly size: number;
  readonly #file: PageFile;
  readonly #fd: number;
  readonly #free: Uint8Array<ArrayBuffer>[] = [];
  readonly #pending: Pending[] = [];
  #current: { buffer: Uint8Array<ArrayBuffer>; offset: number } | undefined;
  #buffers = 0;
  #error: Error | undefined;
  #closed = false;

  /** One thread serving every write, when the count is known. */
  readonly #queue: WriteQueue | undefined;

  /** CRC-32 of each buffer submitted (with {@link sumsSubmits}). */
  readonly #crcs: number[] = [];
  #submitted = 0;

  /**
   * Writes into the existing file `path` through buffers of `size` bytes;
   * with `total` (the bytes to be written), one thread serves them all
   * (ffi/write_queue.ts), and with `sums` too it sums each buffer before
   * writing it ({@link sumsSubmits}); otherwise each write is a table run
   * of its own.
   */
  constructor(size: number, path: string, total?: number, sums = false) {
    this.size = size;
    this.#file = PageFile.open(path);
    this.#fd = openRawFd(path, true);
    if (total !== undefined) {
      try {
        const foldBytes = sums && size % 16 === 0 && size >= 64 ? size : undefined;
        this.#queue = new WriteQueue(Math.ceil(total / size) + 1, foldBytes);
      } catch (e) {
        this.#file.close();
        closeRawFd(this.#fd);
        throw e;
      }
    }
  }

  /** Whether each buffer submitted is summed here (its CRC: {@link submittedCrcs}). */
  get sumsSubmits(): boolean {
    return this.#queue?.folds ?? false;
  }

  /** CRC-32 of each buffer submitted, in order; once {@link settled}. */
  submittedCrcs(): readonly number[] {
    if (!this.#closed || this.#pending.length) throw new Error("page writes not settled");
    return this.#crcs;
  }

  /** Whether `p`'s write has run. */
  #ran(p: Pending): boolean {
    return p.run ? p.run.done() : this.#queue!.result(p.index) !== undefined;
  }

  acquire(offset: number): Uint8Array {
    let buffer = this.#free.pop() ??
      (this.#pending.length && this.#ran(this.#pending[0])
        ? this.#retire(this.#pending.shift()!, false)
        : undefined) ??
      (ready.length && ready[ready.length - 1].length >= this.size ? ready.pop() : undefined);
    if (!buffer && (this.#buffers + 1) * this.size > DEFERRED_MAX_BYTES && this.#pending.length) {
      buffer = this.#retire(this.#pending.shift()!, true);
    }
    if (!buffer) {
      buffer = pageAlignedBuffer(this.size);
      this.#buffers++;
    }
    this.#current = { buffer, offset };
    return buffer;
  }

  /**
   * {@link acquire} of `buffer`, already filled (a copy made ahead, its
   * bytes read: engine/dump/copy_ahead.ts): it is written and then reused
   * as one of this writer's.
   */
  acquireFilled(offset: number, buffer: Uint8Array<ArrayBuffer>): Uint8Array {
    if (buffer.length !== this.size) throw new RangeError("a filled buffer of another size");
    this.#current = { buffer, offset };
    return buffer;
  }

  submit(length: number, offset: number): void {
    const c = takeAcquired(this.#current, offset);
    this.#current = undefined;
    const seq = this.#submitted++;
    const index = this.#queue?.post(this.#fd, c.buffer, length, offset) ?? -1;
    if (index >= 0) {
      this.#pending.push({ buffer: c.buffer, index, length, offset, seq });
    } else {
      // Not queued (not one the queue can sum): summed here.
      if (this.sumsSubmits) this.#crcs[seq] = crc32(c.buffer.subarray(0, length));
      const table = new SyscallTable(1);
      table.syscall(SYS.pwrite64, this.#fd, c.buffer, length, offset);
      this.#pending.push({
        buffer: c.buffer,
        table,
        run: table.run(),
        index,
        length,
        offset,
        seq,
      });
    }
    deferredStats.writes++;
  }

  /**
   * Waits (on this thread when `now`) for `p`'s write, completes a short
   * one here, records a failure; returns its buffer.
   */
  #retire(p: Pending, now: boolean): Uint8Array<ArrayBuffer> {
    if (now) { while (!this.#ran(p)) sleepSync(0.05); }
    let r = p.table ? p.table.result(0) : this.#queue!.result(p.index)!;
    // Run before it was posted (EBADF), or its wait ended by a signal: summed (and written) here.
    const early = !p.table && (r === -BigInt(EBADF) || this.#queue!.wokeEarly(p.index));
    if (r === -BigInt(EBADF) && !p.table) r = 0n;
    if (!p.table && this.#queue!.folds) {
      this.#crcs[p.seq] = early
        ? crc32(p.buffer.subarray(0, p.length))
        : crc32AfterFold(this.#queue!.remainder(p.index), NO_TAIL);
    }
    if (r < 0n) {
      this.#error ??= new Error(`pwrite of page data at ${p.offset} failed: errno ${-r}`);
    } else if (Number(r) < p.length) {
      try {
        this.#file.writeAt(p.offset + Number(r), p.buffer.subarray(Number(r), p.length));
      } catch (e) {
        this.#error ??= e as Error;
      }
    }
    return p.buffer;
  }

  /** Every write done and checked, the file closed; throws if one failed. */
  async settled(): Promise<void> {
    try {
      // The queue's entries not posted are released: its thread ends after the last write.
      await this.#queue?.close();
      while (this.#pending.length) {
        const p = this.#pending.shift()!;
        await p.run?.finished;
        this.#free.push(this.#retire(p, false));
      }
    } finally {
      if (!this.#closed) {
        this.#closed = true;
        this.#file.close();
        closeRawFd(this.#fd);
      }
    }
    if (this.#error) throw this.#error;
  }

  /** Nothing to wait for here: the writes end with {@link settled}. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Waits for the writes in flight (their buffers must outlive them) and closes the file. */
  async abort(): Promise<void> {
    await this.settled().catch(() => {});
  }
}
