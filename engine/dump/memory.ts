/**
 * Streaming a process's memory into the image: for each mapping, the runs
 * of pages worth saving (from pagemap), read with process_vm_readv (or
 * /proc/<pid>/mem for unreadable mappings) in large chunks, written to the
 * image while the next chunk is read, so reading and writing overlap on
 * two cores and cryo's own memory stays at two chunk buffers.
 *
 * @module
 */

import { processVmRead } from "../../ffi/process_vm.ts";
import type { PageRun } from "../model.ts";
import type { PagePolicy, Vma } from "./vmas.ts";

/** Size of one read/write chunk. */
export const CHUNK_BYTES = 8 << 20;

/** Destination of page data: sequential writes at increasing file offsets. */
export interface PageSink {
  /** File offset the next write lands at (page aligned). */
  position(): number;
  /** Appends bytes. */
  write(bytes: Uint8Array): Promise<void>;
}

/** Finds runs [addr, length] of pages of a range satisfying the policy. */
export type RunFinder = (
  pid: number,
  start: bigint,
  end: bigint,
  policy: PagePolicy,
) => { addr: bigint; length: number }[];

/** Streams chosen pages of `vmas` to the sink; returns the page runs per mapping. */
export class MemoryStreamer {
  readonly #pid: number;
  readonly #sink: PageSink;
  readonly #buffers = [new Uint8Array(CHUNK_BYTES), new Uint8Array(CHUNK_BYTES)];
  #next = 0;
  #pending: Promise<void> | undefined;
  #memFile: Deno.FsFile | undefined;
  #offset: number;
  /** Bytes of page data written so far. */
  bytes = 0;

  constructor(pid: number, sink: PageSink) {
    this.#pid = pid;
    this.#sink = sink;
    this.#offset = sink.position();
  }

  /** Saves the given runs of one mapping, returning their PageRun records. */
  async saveRuns(
    vma: Vma,
    runs: { addr: bigint; length: number }[],
    onBytes?: (n: number) => void,
  ): Promise<PageRun[]> {
    const out: PageRun[] = [];
    const readable = vma.perms[0] === "r";
    for (const run of runs) {
      out.push({
        addr: `0x${run.addr.toString(16)}`,
        length: run.length,
        fileOffset: this.#offset,
      });
      for (let done = 0; done < run.length;) {
        const n = Math.min(CHUNK_BYTES, run.length - done);
        const buf = this.#buffers[this.#next].subarray(0, n);
        this.#next ^= 1;
        try {
          this.#read(run.addr + BigInt(done), buf, readable);
        } catch (e) {
          // Never leave a write in flight behind a failure.
          await this.#pending?.catch(() => {});
          this.#pending = undefined;
          throw e;
        }
        await this.#pending;
        this.#pending = this.#sink.write(buf);
        this.#offset += n;
        done += n;
        this.bytes += n;
        onBytes?.(n);
      }
    }
    return out;
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

  /** Waits for any write in flight, ignoring its outcome (error paths). */
  async abort(): Promise<void> {
    await this.#pending?.catch(() => {});
    this.#pending = undefined;
    this.#memFile?.close();
    this.#memFile = undefined;
  }

  /** Waits for the last write and releases resources. */
  async finish(): Promise<void> {
    await this.#pending;
    this.#pending = undefined;
    this.#memFile?.close();
    this.#memFile = undefined;
  }
}
