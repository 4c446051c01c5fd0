/**
 * A {@link PageWriter} that keeps every buffer until the thaw (opt-in:
 * `CRYO_COPY_LANES=held`): a small dump frozen once, without the deferred
 * writes (engine/dump/deferred_pages.ts), only reads the pages in the freeze
 * (`process_vm_readv` into buffers faulted in before it); their CRC-32 and
 * `pwrite` run on cryo's thread once the tree runs again
 * ({@link HeldPageWriter.settled}). The same work as the synchronous
 * writer, moved out of the frozen time: for threads-64 (17 MiB) the sums
 * and writes were ~12 ms of its ~25 ms copy.
 *
 * The buffers (at most {@link HELD_MAX_BYTES}, past that the oldest buffer
 * is summed and written in the freeze and reused) are made ready before
 * the freeze by {@link prepareHeldWrites}, on transparent huge pages when
 * free ones are there (ffi/huge_buffer.ts). Their first touch is the cost:
 * on this VM, memory not used for a while costs ~1 ms of system CPU per
 * MiB (the page cache's pages of the image are fresh memory too), which is
 * why it is not the default. The bytes written are the bytes read in
 * the freeze; a failed write fails the dump in {@link HeldPageWriter.settled}
 * (the tree runs then; no image is left, as for any failure after the thaw).
 *
 * @module
 */

import { pageAlignedBuffer, PageFile } from "../../ffi/page_file.ts";
import { faultInCalls, hugeAlignedBuffer, runCalls } from "../../ffi/huge_buffer.ts";
import { hugePagesFree } from "../proc/buddyinfo.ts";
import { crc32 } from "../image/crc32.ts";
import { PAGE_BUFFER_BYTES, type PageWriter, takeAcquired } from "./page_writer.ts";
import { lanesOverride } from "./precopy_lanes.ts";
import { SyscallTable, type TableRun, tablesAvailable } from "../../ffi/syscall_table.ts";

/** Most bytes of page data held until the thaw (past them, written in the freeze). */
export const HELD_MAX_BYTES = 32 << 20;

/** Room made ready above the estimate (pages of private file mappings, rounding). */
const HELD_SLACK_BYTES = 1 << 20;

/** The populate of the buffers made ready, while it runs (the run holds its table). */
let populating: TableRun | undefined;

/** Buffers made ready before the freeze ({@link prepareHeldWrites}). */
const ready: Uint8Array<ArrayBuffer>[] = [];

/** Bytes of buffers held now, by every writer of this process. */
let heldBytes = 0;

/** Buffers held until a thaw so far, in this process (tests). */
export const heldStats = { buffers: 0, writtenFrozen: 0 };

/**
 * Whether a dump frozen once of about `bytes` of resident memory holds its
 * page writes until the thaw: only with `CRYO_COPY_LANES=held` (measured:
 * the freeze shorter, the dump's CPU and wall longer; docs/PERFORMANCE.md,
 * branch threadsfreeze3), at most {@link HELD_MAX_BYTES}. If so, buffers
 * for them are faulted in now, on another thread, on huge pages when free
 * ones are there. (Asked only when the deferred writes are not used.)
 */
export function prepareHeldWrites(bytes: number): boolean {
  if (lanesOverride() !== "held" || bytes > HELD_MAX_BYTES) return false;
  const want = bytes + HELD_SLACK_BYTES;
  prepareHeldBuffers(want, PAGE_BUFFER_BYTES, hugePagesFree(want));
  return true;
}

/**
 * Makes ready buffers of `size` bytes for `bytes` of page data (at most
 * {@link HELD_MAX_BYTES}), on huge pages with `huge`.
 */
export function prepareHeldBuffers(bytes: number, size: number, huge: boolean): void {
  const n = Math.min(Math.ceil(bytes / size), Math.floor(HELD_MAX_BYTES / size)) - ready.length;
  if (n <= 0) return;
  const all = hugeAlignedBuffer(n * size);
  const calls = faultInCalls(all, huge);
  // Faulted in on another thread while the helper's rehearsal runs (else at their first use).
  if (tablesAvailable()) {
    const table = new SyscallTable(calls.length);
    for (const [nr, ...args] of calls) table.syscall(nr, ...args);
    populating = table.run();
    populating.finished.then(() => populating = undefined, () => populating = undefined);
  } else runCalls(calls);
  for (let i = 0; i < n; i++) ready.push(all.subarray(i * size, (i + 1) * size));
}

/** Drops the buffers made ready and not used (a dump that did not take them). */
export function dropHeldBuffers(): void {
  ready.length = 0;
}

interface Held {
  buffer: Uint8Array<ArrayBuffer>;
  length: number;
  offset: number;
}

/** Page data held in buffers until {@link HeldPageWriter.settled} writes it into `path`. */
export class HeldPageWriter implements PageWriter {
  readonly size: number;
  /** Each buffer submitted is summed here ({@link submittedCrcs}). */
  readonly sumsSubmits = true;
  readonly #file: PageFile;
  readonly #held: Held[] = [];
  readonly #crcs: number[] = [];
  #current: { buffer: Uint8Array<ArrayBuffer>; offset: number } | undefined;
  #closed = false;

  /** Holds buffers of `size` bytes whose data goes into the existing file `path`. */
  constructor(size: number, path: string) {
    this.size = size;
    this.#file = PageFile.open(path);
  }

  acquire(offset: number): Uint8Array {
    let buffer = ready.length && ready[ready.length - 1].length >= this.size
      ? ready.pop()!.subarray(0, this.size)
      : undefined;
    if (!buffer && heldBytes + this.size > HELD_MAX_BYTES && this.#held.length) {
      buffer = this.#write(this.#held.shift()!); // written frozen: the bound on held memory
      heldStats.writtenFrozen++;
    }
    buffer ??= pageAlignedBuffer(this.size);
    this.#current = { buffer, offset };
    return buffer;
  }

  submit(length: number, offset: number): void {
    const c = takeAcquired(this.#current, offset);
    this.#current = undefined;
    this.#held.push({ buffer: c.buffer, length, offset });
    heldBytes += c.buffer.length;
    heldStats.buffers++;
  }

  /** Sums and writes `h` (in submit order: the CRCs are listed in that order); returns its buffer. */
  #write(h: Held): Uint8Array<ArrayBuffer> {
    heldBytes -= h.buffer.length;
    const data = h.buffer.subarray(0, h.length);
    this.#crcs.push(crc32(data));
    this.#file.writeAt(h.offset, data);
    return h.buffer;
  }

  /** CRC-32 of each buffer submitted, in order; once {@link settled}. */
  submittedCrcs(): readonly number[] {
    if (!this.#closed || this.#held.length) throw new Error("page writes not settled");
    return this.#crcs;
  }

  /** Sums and writes every buffer held, then closes the file; throws if a write failed. */
  // deno-lint-ignore require-await
  async settled(): Promise<void> {
    try {
      while (this.#held.length) this.#write(this.#held.shift()!);
    } finally {
      this.#close();
    }
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#file.close();
  }

  /** Nothing to wait for here: the writes run in {@link settled}. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Drops what is held and closes the file (error paths). */
  abort(): Promise<void> {
    for (const h of this.#held) heldBytes -= h.buffer.length;
    this.#held.length = 0;
    this.#close();
    return Promise.resolve();
  }
}
