/**
 * Read-only views of a file through `mmap`, one window at a time: the bytes
 * are the page cache's own (no copy into a buffer: a third of the CPU of
 * reading 512 MiB into a buffer here), faulted in as they are read (the
 * kernel maps a run of cached pages per fault: mapping 512 MiB this way
 * took ~12 ms of CPU against ~37 ms with `MAP_POPULATE`, whose page walk
 * goes a page at a time), and every window is unmapped before the next
 * one, so the memory cryo maps at once stays bounded whatever the file's size. A file that shrinks
 * is refused before each window is mapped; one truncated in the fraction
 * of a millisecond while a window is read would still raise SIGBUS in cryo,
 * so use this only for files that nobody else is meant to write (images).
 *
 * @module
 */

import { cstr, syscall, syscallNum } from "./libc.ts";
import { SYS } from "./sysno.ts";

const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;
const PROT_READ = 1;
const MAP_PRIVATE = 2;
const PAGE = 4096;

/** A window of a file mapped read-only by {@link MappedFile.map}. */
export interface FileWindow {
  /** Its address in this process (0 for an empty window). */
  addr: bigint;
  /** Its length in bytes (clipped to the file's size). */
  length: number;
  /** A view of its bytes; must not be kept after {@link unmap}. */
  view(): Uint8Array;
  /** Unmaps it (idempotent). */
  unmap(): void;
  /**
   * Hands the mapping over to whoever unmaps it now (a fold on another
   * thread, ffi/crc32_fold.ts): {@link unmap} then does nothing.
   */
  handOver(): void;
}

/** A file opened for windowed reads; {@link MappedFile.close} (or `using`) releases it. */
export class MappedFile {
  /** The file's size in bytes when it was opened. */
  readonly size: number;
  #fd: number;

  private constructor(fd: number, size: number) {
    this.#fd = fd;
    this.size = size;
  }

  /** Opens `path` read-only; throws a SyscallError naming the call on failure. */
  static open(path: string): MappedFile {
    const fd = syscallNum(SYS.open, cstr(path), O_RDONLY | O_CLOEXEC, 0);
    try {
      const size = Number(syscall(SYS.lseek, fd, 0, 2 /* SEEK_END */));
      return new MappedFile(fd, size);
    } catch (e) {
      syscall(SYS.close, fd);
      throw e;
    }
  }

  /**
   * Maps the bytes [offset, offset + length) (offset a multiple of the page
   * size; clipped to the file's size), gives `fn` a view of them, and unmaps
   * them whatever happens. The view must not be kept after `fn` returns.
   */
  withWindow<T>(offset: number, length: number, fn: (view: Uint8Array) => T): T {
    const w = this.map(offset, length);
    try {
      return fn(w.view());
    } finally {
      w.unmap();
    }
  }

  /**
   * Maps the bytes [offset, offset + length) (as {@link withWindow}) and
   * leaves them mapped until {@link FileWindow.unmap}: for a reader on
   * another thread (the restore's checksum pass, ffi/crc32_fold.ts).
   */
  map(offset: number, length: number): FileWindow {
    if (offset % PAGE !== 0) throw new RangeError(`window offset ${offset} is not page aligned`);
    const len = Math.max(0, Math.min(length, this.size - offset));
    if (len === 0) {
      return { addr: 0n, length: 0, view: () => new Uint8Array(0), unmap() {}, handOver() {} };
    }
    // Touching a mapped page past the end of a file that shrank is SIGBUS: refuse
    // a file shorter than when it was opened (the window is read right after).
    const now = Number(syscall(SYS.lseek, this.#fd, 0, 2 /* SEEK_END */));
    if (now < offset + len) {
      throw new Error(`the file shrank from ${this.size} to ${now} bytes while it was read`);
    }
    const addr = syscall(
      SYS.mmap,
      0,
      len,
      PROT_READ,
      MAP_PRIVATE,
      this.#fd,
      offset,
    );
    let mapped = true;
    return {
      addr,
      length: len,
      view: () =>
        new Uint8Array(
          new Deno.UnsafePointerView(Deno.UnsafePointer.create(addr)!).getArrayBuffer(len),
        ),
      unmap: () => {
        if (!mapped) return;
        mapped = false;
        syscall(SYS.munmap, addr, len);
      },
      handOver: () => {
        mapped = false;
      },
    };
  }

  /** Closes the file (idempotent). */
  close(): void {
    if (this.#fd < 0) return;
    syscall(SYS.close, this.#fd);
    this.#fd = -1;
  }

  /** `using` support: {@link close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
