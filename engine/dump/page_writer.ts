/**
 * Where streamed page data goes: {@link BufferPageWriter}, one page-aligned
 * buffer that the streamer fills (process_vm_readv, /proc/<pid>/mem) and
 * that is written with `pwrite` at the offset it belongs to, the buffer
 * then being reused. The buffer is small ({@link PAGE_BUFFER_BYTES}), so
 * the CRC and the write read it from the CPU's cache (ffi/page_file.ts
 * says why not a shared mapping of the file, as before).
 *
 * Page data is written sequentially from the image's page region.
 * {@link LanePageWriter} is the same over a buffer and files that a copy
 * lane (engine/dump/copy_lanes.ts) keeps for all the segments it copies.
 *
 * @module
 */

import { pageAlignedBuffer, PageFile } from "../../ffi/page_file.ts";
import { openPagemap, type PagemapReader } from "../proc/pagemap.ts";

/**
 * Throws unless a submit for `offset` matches the buffer acquired for
 * `acquired` (undefined: none acquired): a {@link PageWriter}'s contract.
 */
export function checkSubmit(acquired: number | undefined, offset: number): void {
  if (acquired === undefined) throw new Error("page buffer submitted without acquire");
  if (offset !== acquired) throw new Error(`page buffer for ${acquired} submitted for ${offset}`);
}

/** {@link checkSubmit} of a writer that keeps its acquired buffer as `current`: that buffer. */
export function takeAcquired<T extends { offset: number }>(
  current: T | undefined,
  offset: number,
): T {
  checkSubmit(current?.offset, offset);
  return current!;
}

/** A buffer to fill, then hand back with {@link PageWriter.submit}. */
export interface PageWriter {
  /**
   * A free buffer of {@link PageWriter.size} bytes whose content will be
   * written at file offset `offset` (the `offset` of the
   * {@link PageWriter.submit} that follows).
   */
  acquire(offset: number): Uint8Array;
  /**
   * Like {@link PageWriter.acquire}, but the buffer is `buffer`, whose
   * bytes are already read (engine/dump/copy_ahead.ts): only writers that
   * can write from any page-aligned buffer of {@link PageWriter.size} bytes.
   */
  acquireFilled?(offset: number, buffer: Uint8Array<ArrayBuffer>): Uint8Array;
  /** Writes the first `length` bytes of the buffer last acquired at `offset`. */
  submit(length: number, offset: number): void;
  /** Buffer size. */
  readonly size: number;
  /** Waits until everything is written; throws if a write failed. */
  close(): Promise<void>;
  /** Stops without caring about what is pending (error paths). */
  abort(): Promise<void>;
  /**
   * True when the writer sums every buffer submitted, on the thread that
   * writes it (engine/dump/deferred_pages.ts): the streamer then leaves the
   * CRC to it and takes {@link PageWriter.submittedCrcs} once it settled.
   */
  readonly sumsSubmits?: boolean;
  /** CRC-32 of each buffer submitted, in order (with `sumsSubmits`, once every write is done). */
  submittedCrcs?(): readonly number[];
}

/**
 * Size of the page buffer: 1 MiB, so that what process_vm_readv stored is
 * still in the cache when the CRC and the `pwrite` read it (larger buffers
 * cost more CPU here, smaller ones more calls).
 */
export const PAGE_BUFFER_BYTES = 1 << 20;

/**
 * Files of one copy lane, opened once each and closed together: a lane
 * copies many segments of few image files.
 */
export class LaneFiles {
  readonly #files = new Map<string, PageFile>();
  readonly #pagemaps = new Map<number, PagemapReader>();

  /**
   * The pagemap of process `pid` (opened on first use): one reader, and
   * its 512 KiB buffer, for all the lane's segments of that process (a
   * reader per 2 MiB segment grew a table lane's claims by 20 to 50 MiB of
   * RSS at 512 MiB: docs/PERFORMANCE.md, sixth pass).
   */
  pagemap(pid: number): PagemapReader {
    let r = this.#pagemaps.get(pid);
    if (!r) {
      r = openPagemap(pid);
      this.#pagemaps.set(pid, r);
    }
    return r;
  }

  /** The file at `path` (opened on first use). */
  get(path: string): PageFile {
    let f = this.#files.get(path);
    if (!f) {
      f = PageFile.open(path);
      this.#files.set(path, f);
    }
    return f;
  }

  /** Closes every file (and pagemap). */
  close(): void {
    for (const f of this.#files.values()) f.close();
    this.#files.clear();
    for (const r of this.#pagemaps.values()) r.close();
    this.#pagemaps.clear();
  }
}

/**
 * A {@link PageWriter} over a page-aligned buffer and a file it does not
 * own: closing it leaves both to their owner (a copy lane keeps them for
 * its next segment; {@link BufferPageWriter} closes its file).
 */
export class LanePageWriter implements PageWriter {
  readonly size: number;
  readonly #file: PageFile;
  readonly #buffer: Uint8Array;
  #at = -1;

  /** Writes into `file` through `buffer` (page aligned: ffi/page_file.ts). */
  constructor(file: PageFile, buffer: Uint8Array) {
    this.size = buffer.length;
    this.#file = file;
    this.#buffer = buffer;
  }

  acquire(offset: number): Uint8Array {
    this.#at = offset;
    return this.#buffer;
  }

  submit(length: number, offset: number): void {
    checkSubmit(this.#at < 0 ? undefined : this.#at, offset);
    this.#file.writeAt(offset, this.#buffer.subarray(0, length));
    this.#at = -1;
  }

  close(): Promise<void> {
    this.#at = -1;
    return Promise.resolve();
  }

  abort(): Promise<void> {
    return this.close();
  }
}

/** One page-aligned buffer written with `pwrite` into a file of its own, which closing it closes. */
export class BufferPageWriter extends LanePageWriter {
  readonly #file: PageFile;

  /** Writes into the existing file `path` through a buffer of `size` bytes. */
  constructor(size: number, path: string) {
    const file = PageFile.open(path);
    super(file, pageAlignedBuffer(size));
    this.#file = file;
  }

  override async close(): Promise<void> {
    await super.close();
    this.#file.close();
  }
}
