/**
 * A page writer (engine/dump/page_writer.ts) into memory, for tests of
 * what the page copy writes where, without files.
 *
 * @module
 */

import type { PageWriter } from "../../engine/dump/page_writer.ts";

/** A page writer into memory (`out`, `total` bytes), with one buffer of `size` bytes. */
export class MemoryPageWriter implements PageWriter {
  /** Bytes of the buffer it hands out. */
  readonly size: number;
  /** What was submitted, at its offsets. */
  readonly out: Uint8Array;
  #buf: Uint8Array;
  constructor(size: number, total: number) {
    this.size = size;
    this.#buf = new Uint8Array(size);
    this.out = new Uint8Array(total);
  }
  /** The one buffer. */
  acquire(): Uint8Array {
    return this.#buf;
  }
  /** Copies the buffer's first `length` bytes to `out` at `offset`. */
  submit(length: number, offset: number): void {
    this.out.set(this.#buf.subarray(0, length), offset);
  }
  /** Nothing to finish. */
  close(): Promise<void> {
    return Promise.resolve();
  }
  /** Nothing to undo. */
  abort(): Promise<void> {
    return Promise.resolve();
  }
}
