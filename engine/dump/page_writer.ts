/**
 * Where streamed page data goes. Three implementations of one interface:
 *
 * - {@link MappedPageWriter}: the buffers are windows of the image file
 *   itself (a shared mapping, ffi/file_write_window.ts), so the target's
 *   pages are copied once, by the kernel, into the file's page cache: no
 *   buffer of cryo's and no `write` copying them again (what the dump uses);
 * - {@link SyncPageWriter}: one buffer, written synchronously when full;
 * - {@link ThreadedPageWriter}: two buffers in shared memory and a worker
 *   thread that writes one while the main thread reads the target's memory
 *   into the other, so reading and writing overlap on two cores.
 *
 * All write page data sequentially from the image's page region.
 *
 * @module
 */

import { CTRL, SLOT_EMPTY, SLOT_FULL, SLOTS } from "./page_writer_layout.ts";
import { WritableFile, type WriteWindow } from "../../ffi/file_write_window.ts";

/** A buffer to fill, then hand back with {@link PageWriter.submit}. */
export interface PageWriter {
  /**
   * A free buffer of {@link PageWriter.size} bytes (waits for one if needed)
   * whose content will be written at file offset `offset` (the `offset` of
   * the {@link PageWriter.submit} that follows).
   */
  acquire(offset: number): Uint8Array;
  /** Writes the first `length` bytes of the buffer last acquired at `offset`. */
  submit(length: number, offset: number): void;
  /** Buffer size. */
  readonly size: number;
  /** Waits until everything is written; throws if a write failed. */
  close(): Promise<void>;
  /** Stops without caring about what is pending (error paths). */
  abort(): Promise<void>;
}

/** Synchronous writes from one buffer. */
export class SyncPageWriter implements PageWriter {
  readonly size: number;
  readonly #buffer: Uint8Array;
  readonly #write: (offset: number, bytes: Uint8Array) => void;

  constructor(size: number, write: (offset: number, bytes: Uint8Array) => void) {
    this.size = size;
    this.#buffer = new Uint8Array(size);
    this.#write = write;
  }

  acquire(_offset: number): Uint8Array {
    return this.#buffer;
  }

  submit(length: number, offset: number): void {
    this.#write(offset, this.#buffer.subarray(0, length));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  abort(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * The page buffers of the last threaded writer that closed cleanly, for the
 * next one: a dump of a tree makes one writer per large process, and a
 * SharedArrayBuffer is only freed by a garbage collection that the dump's
 * small heap does not trigger (each process added 32 MiB to cryo's RSS).
 */
let spareData: SharedArrayBuffer | undefined;

/** Writes on a worker thread from shared buffers. */
export class ThreadedPageWriter implements PageWriter {
  readonly size: number;
  readonly #data: SharedArrayBuffer;
  readonly #state: Int32Array;
  readonly #meta: Float64Array;
  readonly #worker: Worker;
  readonly #closed: Promise<string | undefined>;
  #slot = -1;

  constructor(size: number, path: string) {
    this.size = size;
    this.#data = spareData?.byteLength === size * SLOTS
      ? spareData
      : new SharedArrayBuffer(size * SLOTS);
    spareData = undefined;
    const ctrl = new SharedArrayBuffer(4 * (SLOTS + 2));
    const meta = new SharedArrayBuffer(8 * 2 * SLOTS);
    this.#state = new Int32Array(ctrl);
    this.#meta = new Float64Array(meta);
    this.#worker = new Worker(new URL("./page_writer_worker.ts", import.meta.url), {
      type: "module",
    });
    let error: string | undefined;
    this.#closed = new Promise((resolve) => {
      this.#worker.onmessage = (e) => {
        if (e.data.error) error = e.data.error;
        if (e.data.closed) resolve(error);
      };
      this.#worker.onerror = (e) => {
        e.preventDefault();
        resolve(e.message);
      };
    });
    this.#worker.postMessage({ data: this.#data, ctrl, meta, slots: SLOTS, path });
  }

  #failed(): boolean {
    return Atomics.load(this.#state, CTRL.failed) !== 0;
  }

  acquire(_offset?: number): Uint8Array {
    this.#slot = (this.#slot + 1) % SLOTS;
    while (Atomics.load(this.#state, this.#slot) !== SLOT_EMPTY) {
      Atomics.wait(this.#state, this.#slot, SLOT_FULL, 1000);
    }
    if (this.#failed()) throw new Error("writing the image failed");
    return new Uint8Array(this.#data, this.#slot * this.size, this.size);
  }

  submit(length: number, offset: number): void {
    this.#meta[this.#slot * 2] = length;
    this.#meta[this.#slot * 2 + 1] = offset;
    Atomics.store(this.#state, this.#slot, SLOT_FULL);
    Atomics.notify(this.#state, this.#slot);
  }

  async close(): Promise<void> {
    this.acquire(); // waits for the next slot to be free
    this.#meta[this.#slot * 2] = -1;
    Atomics.store(this.#state, this.#slot, SLOT_FULL);
    Atomics.notify(this.#state, this.#slot);
    const error = await this.#closed;
    this.#worker.terminate();
    if (error) throw new Error(`writing the image failed: ${error}`);
    spareData = this.#data; // the worker said it is done with it
  }

  async abort(): Promise<void> {
    this.#worker.terminate();
    await Promise.resolve();
  }
}

/**
 * Buffers that are windows of the image file (see the module doc): a
 * window is mapped at the offset its data belongs to, filled by the
 * caller, and unmapped on submit. Nothing is copied after the fill; the
 * file's dirty pages are synced with the rest of the image.
 */
export class MappedPageWriter implements PageWriter {
  readonly size: number;
  readonly #file: WritableFile;
  #window: WriteWindow | undefined;

  /** Writes into the existing file `path` through windows of `size` bytes. */
  constructor(size: number, path: string) {
    this.size = size;
    this.#file = WritableFile.open(path);
  }

  acquire(offset: number): Uint8Array {
    this.#release();
    this.#window = this.#file.map(offset, this.size);
    return this.#window.view;
  }

  submit(_length: number, offset: number): void {
    if (!this.#window) throw new Error("page window submitted without acquire");
    if (offset !== this.#window.offset) {
      throw new Error(`page window mapped at ${this.#window.offset} submitted for ${offset}`);
    }
    this.#release();
  }

  #release(): void {
    if (this.#window) this.#file.unmap(this.#window);
    this.#window = undefined;
  }

  close(): Promise<void> {
    this.#release();
    this.#file.close();
    return Promise.resolve();
  }

  abort(): Promise<void> {
    return this.close();
  }
}
