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
    if (offset % PAGE !== 0) throw new RangeError(`window offset ${offset} is not page aligned`);
    const len = Math.max(0, Math.min(length, this.size - offset));
    if (len === 0) return fn(new Uint8Array(0));
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
    try {
      const ptr = Deno.UnsafePointer.create(addr)!;
      return fn(new Uint8Array(new Deno.UnsafePointerView(ptr).getArrayBuffer(len)));
    } finally {
      syscall(SYS.munmap, addr, len);
    }
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
