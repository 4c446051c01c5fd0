/**
 * The image file the page data is written to, with `pwrite` from a
 * page-aligned buffer ({@link pageAlignedBuffer}).
 *
 * Why a buffer and not a shared mapping of the file: with kernel 6.18 and
 * ext4, `process_vm_readv` into a reused buffer plus `pwrite` from it costs
 * about half the CPU of `process_vm_readv` into a fresh `MAP_SHARED` window
 * of the file (`fallocate`, `MADV_POPULATE_WRITE`, `munmap`): the window
 * pays a fault, the zeroing and `page_mkwrite` of every 4 KiB page, while
 * the write path fills large folios. The buffer must be page aligned: the
 * kernel's copies (`rep movsb`) from and to a buffer 16 bytes off a page,
 * as a plain `new Uint8Array` of 1 MiB or more is, took 1.7x the CPU here.
 *
 * @module
 */

import { addressOf, cstr, syscall, syscallNum } from "./libc.ts";
import { SYS } from "./sysno.ts";

const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;
const PAGE = 4096;

/**
 * A zeroed buffer of `size` bytes whose first byte is at a page boundary
 * (a subarray of a slightly larger, garbage-collected ArrayBuffer, whose
 * backing store never moves).
 */
export function pageAlignedBuffer(size: number): Uint8Array<ArrayBuffer> {
  const all = new Uint8Array(size + PAGE);
  const skip = (PAGE - Number(addressOf(all) % BigInt(PAGE))) % PAGE;
  return all.subarray(skip, skip + size);
}

/**
 * Allocates [offset, offset + length) of the existing file `path`
 * (fallocate mode 0: unwritten extents, the size grown to cover them), so
 * that the `pwrite`s filling it later skip ext4's delayed allocation of
 * each block, which they do holding the inode's lock (two copy lanes
 * writing one file wait on each other for it). Best effort: false when the
 * file system or a full disk refuses (the writes then report it).
 */
export function preallocate(path: string, offset: number, length: number): boolean {
  if (length <= 0) return true;
  let fd: number;
  try {
    fd = syscallNum(SYS.open, cstr(path), O_RDWR | O_CLOEXEC, 0);
  } catch {
    return false;
  }
  try {
    syscall(SYS.fallocate, fd, 0, offset, length);
    return true;
  } catch {
    return false;
  } finally {
    syscall(SYS.close, fd);
  }
}

/** A file opened read-write for positioned writes; {@link close} (or `using`) releases it. */
export class PageFile {
  #fd: number;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** Opens the existing file `path` read-write (a SyscallError names the call on failure). */
  static open(path: string): PageFile {
    return new PageFile(syscallNum(SYS.open, cstr(path), O_RDWR | O_CLOEXEC, 0));
  }

  /** Writes all of `bytes` at `offset` (pwrite; a full disk is a SyscallError). */
  writeAt(offset: number, bytes: Uint8Array): void {
    for (let done = 0; done < bytes.length;) {
      const n = Number(
        syscall(SYS.pwrite64, this.#fd, bytes.subarray(done), bytes.length - done, offset + done),
      );
      if (n <= 0) throw new Error(`pwrite at ${offset + done} wrote nothing`);
      done += n;
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
