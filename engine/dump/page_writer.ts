/**
 * Where streamed page data goes: {@link MappedPageWriter}, whose buffers
 * are windows of the image file itself (a shared mapping,
 * ffi/file_write_window.ts), so the target's pages are copied once, by the
 * kernel, into the file's page cache: no buffer of cryo's and no `write`
 * copying them again. (It replaced a buffer written with `pwrite`, by a
 * worker thread for large dumps: two copies, and twice the CPU.)
 *
 * Page data is written sequentially from the image's page region.
 *
 * @module
 */

import { WritableFile, type WriteWindow } from "../../ffi/file_write_window.ts";
import { SyscallError } from "../../ffi/libc.ts";

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
  /** The buffer used instead of windows where the file cannot be mapped. */
  #fallback: Uint8Array | undefined;
  #at = 0;

  /** Writes into the existing file `path` through windows of `size` bytes. */
  constructor(size: number, path: string) {
    this.size = size;
    this.#file = WritableFile.open(path);
  }

  acquire(offset: number): Uint8Array {
    this.#release();
    if (!this.#fallback) {
      try {
        this.#window = this.#file.map(offset, this.size);
        return this.#window.view;
      } catch (e) {
        // A file system without shared writable mappings: a buffer and pwrite.
        if (!(e instanceof SyscallError) || !e.call.startsWith("mmap")) throw e;
        this.#fallback = new Uint8Array(this.size);
      }
    }
    this.#at = offset;
    return this.#fallback;
  }

  submit(length: number, offset: number): void {
    if (this.#fallback) {
      if (offset !== this.#at) {
        throw new Error(`page buffer for ${this.#at} submitted for ${offset}`);
      }
      this.#file.writeAt(offset, this.#fallback.subarray(0, length));
      return;
    }
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
