/**
 * Streaming a process's memory into the image: for each mapping, the runs
 * of pages worth saving (from pagemap) are read with process_vm_readv (or
 * /proc/<pid>/mem for unreadable mappings) into one buffer, packed one after
 * the other — many small runs make one write — and the buffer is written
 * whenever it is full. Page data is laid out in the image in exactly that
 * order, so the writes are sequential.
 *
 * Packing small runs removes the per-run cost that dominated processes with
 * many mappings; the runs of readable mappings packed into one buffer are
 * read with one process_vm_readv of up to {@link IOV_MAX} remote pieces.
 * The buffer is one small page-aligned buffer, reused (page_writer.ts); its
 * CRC is computed while it is still in the CPU's cache.
 *
 * @module
 */

import { crc32 } from "../image/crc32.ts";
import { IOV_MAX, processVmRead, processVmReadMany } from "../../ffi/process_vm.ts";
import type { PageRun } from "../model.ts";
import { crc32Combine } from "../image/checksum.ts";
import type { Vma } from "./vmas.ts";
import { PAGE_BUFFER_BYTES, type PageWriter } from "./page_writer.ts";
import { type PagemapReader, PM } from "../proc/pagemap.ts";

/**
 * Size of the page buffer (engine/dump/page_writer.ts) for streaming
 * `total` bytes: {@link PAGE_BUFFER_BYTES}, or less for a small total.
 */
export function pageBufferBytes(total: number): number {
  return Math.min(PAGE_BUFFER_BYTES, Math.max(4096, Math.ceil(total / 4096) * 4096));
}

/** Size of the blocks of {@link MemoryStreamer.blockCrcs}. */
export const CRC_BLOCK = 1 << 20;

/** Streams chosen pages of mappings to a page writer, packing runs into its buffers. */
export class MemoryStreamer {
  readonly #pid: number;
  readonly #out: PageWriter;
  readonly #reserve: (length: number) => number;
  #buffer: Uint8Array | undefined;
  #fill = 0;
  #memFile: Deno.FsFile | undefined;
  #offset: number;
  #crc = 0;
  /** Remote pieces queued for one process_vm_readv: address, length. */
  readonly #iov = new BigUint64Array(2 * IOV_MAX);
  /** The same as 32-bit halves (little endian). */
  readonly #iov32 = new Uint32Array(this.#iov.buffer);
  #iovCount = 0;
  /** Address where the last queued piece ends (a next piece there extends it). */
  #iovEnd = -1;
  /** Buffer offset where the queued pieces land. */
  #iovAt = 0;
  /**
   * When set, memory that cannot be read (unmapped by a running target) is
   * stored as zeros and reported here instead of failing the dump.
   */
  onUnreadable?: (addr: bigint, length: number) => void;
  /**
   * Buffers filled ahead (engine/dump/copy_ahead.ts): the `k`-th buffer of
   * this stream (from 0) already holding its bytes, or undefined (read
   * here). Used only with a writer that takes them (`acquireFilled`).
   */
  ahead?: (k: number) => Uint8Array<ArrayBuffer> | undefined;
  /**
   * Set when every buffer comes from {@link ahead} and the process may run
   * again meanwhile (engine/dump/mod.ts): a read of the process then throws
   * instead of taking bytes of another moment than the freeze.
   */
  noReads = false;
  /** Buffers acquired so far. */
  #acquired = 0;
  /** Whether the buffer being filled came filled from {@link ahead}: nothing to read into it. */
  #filled = false;
  /** Bytes of page data written so far. */
  bytes = 0;
  /** Remote pieces given to process_vm_readv so far (adjacent runs are one: tests). */
  remotePieces = 0;
  /**
   * Read through /proc/<pid>/mem only (no process_vm_readv), except the
   * runs given with `pin: true`: its page lookups do not pin, so they never
   * unshare pages a process shares copy-on-write with its children (a
   * pinning read of a write-protected such page copies it). It costs a
   * second copy in the kernel (through a bounce page).
   */
  viaMemFile = false;
  /**
   * When set, no run is read here: each piece is handed to this function
   * with the file offset its bytes go to (in file order, back to back), and
   * the writer reads and writes them later (engine/dump/snapshot_lanes.ts:
   * a fork snapshot's pages copied by syscall tables on two threads). The
   * writer must then sum its submits (`sumsSubmits`).
   */
  deferReads?: (vma: Vma, addr: number, length: number, fileOffset: number) => void;
  /** The mapping of the run being saved (for {@link deferReads}). */
  #vma: Vma | undefined;
  /**
   * The process's pagemap, for a process that runs on after the dump: each
   * run is then read with process_vm_readv only where its pages are present
   * and mapped by this process alone (pagemap bits 63 and 56), through
   * /proc/<pid>/mem elsewhere, so that the read never unshares a page the
   * process shares copy-on-write with another (a pin of such a page gives
   * the pinning process a copy of it: zdtm's cow00). Runs with a `pin` of
   * their own are not looked up.
   */
  pinCheck?: PagemapReader;
  /**
   * When set, also the CRC-32 of each {@link CRC_BLOCK} of the data written
   * (in file order; the last one may be shorter), so that a part written
   * over later costs only its blocks to checksum again. Blocks end where
   * the stream is a multiple of {@link CRC_BLOCK} past {@link blockPhase}.
   */
  set blockCrcs(crcs: number[] | undefined) {
    this.#blockCrcs = crcs;
  }
  get blockCrcs(): number[] | undefined {
    this.#takeSums();
    return this.#blockCrcs;
  }
  #blockCrcs?: number[];
  /** Lengths of the buffers submitted whose CRC the writer computes (`sumsSubmits`). */
  readonly #unsummed: number[] = [];
  /** Whether the buffers' CRCs come from the writer: decided at the first flush. */
  #writerSums: boolean | undefined;
  /** Whether {@link finish} ran: the last, short block is then complete. */
  #finished = false;
  /**
   * Bytes of the first block written before this stream began (the blocks
   * are aligned to an earlier origin): the first CRC then covers only this
   * stream's part of that block, `CRC_BLOCK - blockPhase` bytes at most.
   */
  blockPhase = 0;
  /** The block being summed: CRC of this stream's bytes in it, their count, bytes left in it. */
  #part = { crc: 0, bytes: 0, room: -1 };

  /**
   * `reserve(length)` reserves the next `length` bytes of the image's page
   * region and returns their file offset (sequential).
   */
  constructor(pid: number, out: PageWriter, reserve: (length: number) => number) {
    this.#pid = pid;
    this.#out = out;
    this.#reserve = reserve;
    this.#offset = reserve(0);
  }

  /**
   * CRC-32 (zlib) of every byte written so far, in file order (with a
   * writer that sums, once its writes are settled).
   */
  get crc32(): number {
    this.#takeSums();
    return this.#crc >>> 0;
  }

  /**
   * Saves the given runs of one mapping, returning their PageRun records.
   * An address may be a number (exact below 2^53, as every user-space
   * address is): no bigint is made per run then.
   */
  saveRuns(
    vma: Vma,
    runs: { addr: bigint | number; length: number; pin?: boolean }[],
    onBytes?: (n: number) => void,
  ): PageRun[] {
    const out: PageRun[] = [];
    this.#vma = vma;
    for (const run of runs) {
      const addr = run.addr;
      out.push({
        addr: `0x${addr.toString(16)}`,
        length: run.length,
        fileOffset: this.#offset,
      });
      if (this.pinCheck && run.pin === undefined && vma.perms[0] === "r") {
        this.#saveChecked(Number(addr), run.length, onBytes);
        continue;
      }
      // `pin`: this run may be read with process_vm_readv even with viaMemFile.
      const readable = vma.perms[0] === "r" && (!this.viaMemFile || run.pin === true);
      this.#save(addr, run.length, readable, onBytes);
    }
    return out;
  }

  /**
   * {@link saveRuns} of one run at a numeric address, without a record:
   * returns the file offset of its data (the caller makes the PageRun,
   * perhaps later: engine/dump/plan.ts does after the thaw).
   */
  saveRun(vma: Vma, addr: number, length: number, onBytes?: (n: number) => void): number {
    const at = this.#offset;
    this.#vma = vma;
    if (this.pinCheck && vma.perms[0] === "r") this.#saveChecked(addr, length, onBytes);
    else this.#save(addr, length, vma.perms[0] === "r" && !this.viaMemFile, onBytes);
    return at;
  }

  /** {@link #save} of a readable run split by {@link pinCheck}: process_vm_readv only where it cannot unshare. */
  #saveChecked(addr: number, length: number, onBytes: ((n: number) => void) | undefined): void {
    let at = addr;
    const end = addr + length;
    this.pinCheck!.forEachRun(addr, end, { all: PM.PRESENT | PM.EXCLUSIVE }, (a, l) => {
      const from = Math.max(a, at), to = Math.min(a + l, end);
      if (to <= from) return;
      if (from > at) this.#save(at, from - at, false, onBytes);
      this.#save(from, to - from, true, onBytes);
      at = to;
    });
    if (at < end) this.#save(at, end - at, false, onBytes);
  }

  /** Queues (or reads) `length` bytes at `addr` into the buffers, flushing each full one. */
  #save(
    addr: bigint | number,
    length: number,
    readable: boolean,
    onBytes: ((n: number) => void) | undefined,
  ): void {
    for (let done = 0; done < length;) {
      this.#buffer ??= this.#acquire();
      const n = Math.min(this.#out.size - this.#fill, length - done);
      if (this.deferReads) this.deferReads(this.#vma!, Number(addr) + done, n, this.#offset);
      else if (readable) {
        if (typeof addr === "number") this.#queueNumber(addr + done, n);
        else this.#queue(addr + BigInt(done), n);
      } else if (!this.#filled) {
        this.#drain(); // queued pieces land contiguously from where they began
        this.#readMem(
          BigInt(addr) + BigInt(done),
          this.#buffer.subarray(this.#fill, this.#fill + n),
        );
      }
      this.#fill += n;
      this.#offset += n;
      done += n;
      this.bytes += n;
      if (this.#fill === this.#out.size) this.#flush();
      onBytes?.(n);
    }
  }

  /** The next buffer: filled ahead when {@link ahead} has it, else the writer's. */
  #acquire(): Uint8Array {
    const k = this.#acquired++;
    const filled = this.#out.acquireFilled ? this.ahead?.(k) : undefined;
    this.#filled = filled !== undefined;
    return filled
      ? this.#out.acquireFilled!(this.#offset, filled)
      : this.#out.acquire(this.#offset);
  }

  /** Queues a piece of readable memory landing at the current fill offset. */
  #queue(addr: bigint, n: number): void {
    if (this.#extend(Number(addr), n)) return;
    if (this.#iovCount === IOV_MAX) this.#drain();
    if (this.#iovCount === 0) this.#iovAt = this.#fill;
    this.#iov[2 * this.#iovCount] = addr;
    this.#iov[2 * this.#iovCount + 1] = BigInt(n);
    this.#iovCount++;
    this.#iovEnd = Number(addr) + n;
  }

  /** {@link #queue} of a numeric address: written as two 32-bit halves, no bigint made. */
  #queueNumber(addr: number, n: number): void {
    if (this.#extend(addr, n)) return;
    if (this.#iovCount === IOV_MAX) this.#drain();
    if (this.#iovCount === 0) this.#iovAt = this.#fill;
    const w = this.#iov32, k = 4 * this.#iovCount;
    w[k] = addr % 0x100000000;
    w[k + 1] = Math.floor(addr / 0x100000000);
    w[k + 2] = n; // a piece is at most the buffer: below 2^32
    w[k + 3] = 0;
    this.#iovCount++;
    this.#iovEnd = addr + n;
  }

  /**
   * Grows the last queued piece by `n` bytes when `addr` is where it ends:
   * the new piece then follows it both in the process and in the buffer
   * (queued pieces land back to back). Adjacent readable mappings (one-page
   * mappings of alternating protections, say) become one remote piece, and
   * the kernel's per-piece work (a lock, a VMA lookup, a pin batch) is paid
   * once. A read stopped inside it is finished from there as before; not
   * with {@link onUnreadable} (a running process): its zeros would run to
   * the end of the merged piece, over runs that could still be read.
   */
  #extend(addr: number, n: number): boolean {
    if (this.#iovCount === 0 || addr !== this.#iovEnd || this.onUnreadable) return false;
    this.#iov32[4 * this.#iovCount - 2] += n; // within one buffer: below 2^32
    this.#iovEnd += n;
    return true;
  }

  /** Reads the queued pieces: one call, then piece by piece from where it stopped. */
  #drain(): void {
    const count = this.#iovCount;
    if (count === 0 || !this.#buffer) return;
    this.#iovCount = 0;
    this.remotePieces += count;
    if (this.#filled) return; // read ahead (copy_ahead.ts)
    this.#mayRead();
    let total = 0;
    for (let i = 0; i < count; i++) total += Number(this.#iov[2 * i + 1]);
    const dest = this.#buffer.subarray(this.#iovAt, this.#iovAt + total);
    let got: number;
    try {
      got = processVmReadMany(this.#pid, dest, this.#iov, count);
    } catch {
      got = 0;
    }
    if (got === total) return;
    // Short: the piece where it stopped and every later one, one at a time.
    let at = 0;
    for (let i = 0; i < count; i++) {
      const addr = this.#iov[2 * i], len = Number(this.#iov[2 * i + 1]);
      if (at + len > got) {
        const skip = Math.max(0, got - at);
        this.#read(addr + BigInt(skip), dest.subarray(at + skip, at + len), true);
      }
      at += len;
    }
  }

  #flush(): void {
    this.#drain();
    if (!this.#buffer || this.#fill === 0) return;
    // The writer's own sums, when no buffer can straddle a block: blocks start at
    // buffer boundaries (every buffer but the last is full, and its size divides
    // a block), or there is no block.
    this.#writerSums ??= this.#out.sumsSubmits === true &&
      (!this.#blockCrcs || (this.blockPhase % CRC_BLOCK === 0 && CRC_BLOCK % this.#out.size === 0));
    if (this.#writerSums) this.#unsummed.push(this.#fill);
    else if (this.#blockCrcs) {
      for (let o = 0; o < this.#fill;) {
        const len = Math.min(this.#room(), this.#fill - o);
        this.#addSum(crc32(this.#buffer.subarray(o, o + len)), len);
        o += len;
      }
    } else this.#crc = crc32(this.#buffer.subarray(0, this.#fill), this.#crc);
    this.#out.submit(this.#fill, this.#reserve(this.#fill));
    this.#buffer = undefined;
    this.#filled = false;
    this.#fill = 0;
  }

  /** Bytes left in the block being summed. */
  #room(): number {
    const part = this.#part;
    if (part.room < 0) part.room = CRC_BLOCK - this.blockPhase % CRC_BLOCK;
    return part.room;
  }

  /**
   * Adds the CRC of the next `len` bytes (at most the block's room) to the
   * running CRC and the block's. Each byte is checksummed once: the running
   * CRC is combined from the pieces'.
   */
  #addSum(crc: number, len: number): void {
    const part = this.#part;
    this.#room();
    this.#crc = crc32Combine(this.#crc, crc, len); // (the CRC of nothing is 0)
    if (!this.#blockCrcs) return;
    part.crc = crc32Combine(part.crc, crc, len);
    part.bytes += len;
    part.room -= len;
    if (part.room === 0) {
      this.#blockCrcs.push(part.crc);
      Object.assign(part, { crc: 0, bytes: 0, room: CRC_BLOCK });
    }
  }

  /** Folds in the CRCs the writer computed (once its writes are settled), then the last block. */
  #takeSums(): void {
    if (this.#unsummed.length) {
      const crcs = this.#out.submittedCrcs!();
      const first = crcs.length - this.#unsummed.length;
      for (let i = 0; i < this.#unsummed.length; i++) {
        this.#addSum(crcs[first + i], this.#unsummed[i]);
      }
      this.#unsummed.length = 0;
    }
    if (this.#finished && this.#blockCrcs && this.#part.bytes > 0) {
      this.#blockCrcs.push(this.#part.crc); // the last, short
      Object.assign(this.#part, { crc: 0, bytes: 0, room: CRC_BLOCK });
    }
  }

  /** Throws when {@link noReads} is set. */
  #mayRead(): void {
    if (this.noReads) {
      throw new Error("internal error: a page read after the pages were read ahead");
    }
  }

  #read(addr: bigint, buf: Uint8Array, readable: boolean): void {
    this.#mayRead();
    if (readable) {
      let done = 0;
      while (done < buf.length) {
        let n: number;
        try {
          n = processVmRead(this.#pid, addr + BigInt(done), buf.subarray(done));
        } catch {
          n = 0;
        }
        if (n <= 0) break;
        done += n;
      }
      if (done === buf.length) return;
      // Fall back to /proc/<pid>/mem (FOLL_FORCE) for whatever remains.
      this.#readMem(addr + BigInt(done), buf.subarray(done));
      return;
    }
    this.#readMem(addr, buf);
  }

  /** Reads `buf.length` bytes at `addr` now (process_vm_readv, else /proc/<pid>/mem). */
  readInto(vma: Vma, addr: bigint, buf: Uint8Array): void {
    this.#read(addr, buf, vma.perms[0] === "r");
  }

  #readMem(addr: bigint, buf: Uint8Array): void {
    this.#mayRead();
    try {
      this.#memFile ??= Deno.openSync(`/proc/${this.#pid}/mem`, { read: true });
    } catch (e) {
      // A running process reaped meanwhile: nothing of it can be read.
      if (!this.onUnreadable) throw e;
      buf.fill(0);
      this.onUnreadable(addr, buf.length);
      return;
    }
    let done = 0;
    while (done < buf.length) {
      this.#memFile.seekSync(addr + BigInt(done), Deno.SeekMode.Start);
      let n: number | null;
      try {
        n = this.#memFile.readSync(buf.subarray(done));
      } catch (e) {
        if (!this.onUnreadable) throw e;
        n = null;
      }
      if (n === null || n <= 0) {
        if (this.onUnreadable) {
          buf.fill(0, done);
          this.onUnreadable(addr + BigInt(done), buf.length - done);
          return;
        }
        throw new Error(
          `process ${this.#pid}: cannot read memory at 0x${(addr + BigInt(done)).toString(16)}`,
        );
      }
      done += n;
    }
  }

  /** Stops without writing what is buffered (error paths). */
  async abort(): Promise<void> {
    this.#fill = 0;
    this.#buffer = undefined;
    this.#iovCount = 0;
    this.#memFile?.close();
    this.#memFile = undefined;
    await this.#out.abort();
  }

  /** Writes what is buffered, waits until every write is done, releases resources. */
  async finish(): Promise<void> {
    this.#flush();
    this.#finished = true;
    if (!this.#unsummed.length) this.#takeSums(); // (else once the writer settled)
    this.#buffer = undefined;
    this.#memFile?.close();
    this.#memFile = undefined;
    await this.#out.close();
  }
}
