/**
 * Streaming a process's memory into the image: for each mapping, the runs
 * of pages worth saving (from pagemap) are read with process_vm_readv (or
 * /proc/<pid>/mem for unreadable mappings) into one buffer, packed one after
 * the other — many small runs make one write — and the buffer is written
 * whenever it is full. Page data is laid out in the image in exactly that
 * order, so the writes are sequential.
 *
 * Measured on these machines, plain synchronous writes of large buffers are
 * as fast as overlapping them with the next read, and packing small runs
 * removes the per-run cost that dominated processes with many mappings.
 * cryo's own memory stays at one buffer.
 *
 * @module
 */

import * as zlib from "node:zlib";
import { processVmRead } from "../../ffi/process_vm.ts";
import type { PageRun } from "../model.ts";
import type { Vma } from "./vmas.ts";

/** Size of the page buffer (one write at most). */
export const CHUNK_BYTES = 16 << 20;

/** Destination of page data: sequential synchronous writes at increasing file offsets. */
export interface PageSink {
  /** File offset the next write lands at (page aligned). */
  position(): number;
  /** Appends bytes (a page multiple). */
  write(bytes: Uint8Array): void;
}

/** Streams chosen pages of mappings to a sink, packing runs into one buffer. */
export class MemoryStreamer {
  readonly #pid: number;
  readonly #sink: PageSink;
  readonly #buffer = new Uint8Array(CHUNK_BYTES);
  #fill = 0;
  #memFile: Deno.FsFile | undefined;
  #offset: number;
  #crc = 0;
  /** Bytes of page data written so far. */
  bytes = 0;

  constructor(pid: number, sink: PageSink) {
    this.#pid = pid;
    this.#sink = sink;
    this.#offset = sink.position();
  }

  /** CRC-32 (zlib) of every byte handed to the sink so far, in file order. */
  get crc32(): number {
    return this.#crc >>> 0;
  }

  /** Saves the given runs of one mapping, returning their PageRun records. */
  saveRuns(
    vma: Vma,
    runs: { addr: bigint; length: number }[],
    onBytes?: (n: number) => void,
  ): PageRun[] {
    const out: PageRun[] = [];
    const readable = vma.perms[0] === "r";
    for (const run of runs) {
      out.push({
        addr: `0x${run.addr.toString(16)}`,
        length: run.length,
        fileOffset: this.#offset,
      });
      for (let done = 0; done < run.length;) {
        const n = Math.min(CHUNK_BYTES - this.#fill, run.length - done);
        this.#read(
          run.addr + BigInt(done),
          this.#buffer.subarray(this.#fill, this.#fill + n),
          readable,
        );
        this.#fill += n;
        this.#offset += n;
        done += n;
        this.bytes += n;
        if (this.#fill === CHUNK_BYTES) this.#flush();
        onBytes?.(n);
      }
    }
    return out;
  }

  #flush(): void {
    if (this.#fill === 0) return;
    const data = this.#buffer.subarray(0, this.#fill);
    this.#crc = zlib.crc32(data, this.#crc);
    this.#sink.write(data);
    this.#fill = 0;
  }

  #read(addr: bigint, buf: Uint8Array, readable: boolean): void {
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

  #readMem(addr: bigint, buf: Uint8Array): void {
    this.#memFile ??= Deno.openSync(`/proc/${this.#pid}/mem`, { read: true });
    let done = 0;
    while (done < buf.length) {
      this.#memFile.seekSync(addr + BigInt(done), Deno.SeekMode.Start);
      const n = this.#memFile.readSync(buf.subarray(done));
      if (n === null || n <= 0) {
        throw new Error(
          `process ${this.#pid}: cannot read memory at 0x${(addr + BigInt(done)).toString(16)}`,
        );
      }
      done += n;
    }
  }

  /** Releases resources without writing what is buffered (error paths). */
  abort(): void {
    this.#fill = 0;
    this.#memFile?.close();
    this.#memFile = undefined;
  }

  /** Writes what is buffered and releases resources. */
  finish(): void {
    this.#flush();
    this.#memFile?.close();
    this.#memFile = undefined;
  }
}
