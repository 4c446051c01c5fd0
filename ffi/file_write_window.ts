/**
 * Writable views of a file through a shared mapping (`MAP_SHARED`), one
 * window at a time: bytes stored into a window (by the kernel too, e.g.
 * `process_vm_readv` into it) land in the file's page cache directly, with
 * no buffer in between and no `write` copying them again. A window's
 * blocks are reserved first (`fallocate`, which also extends the file), so
 * a full disk is an error of {@link WritableFile.map}, not a SIGBUS when a
 * page of the window is first touched; its pages are faulted in at once
 * (`MADV_POPULATE_WRITE`) rather than one fault per page while it is filled.
 *
 * Only for files that nobody else truncates meanwhile (cryo's own image
 * files): touching a mapped page past the end of a file that shrank is
 * SIGBUS.
 *
 * @module
 */

import { cstr, rawSyscall, syscall, SyscallError, syscallNum } from "./libc.ts";
import { SYS } from "./sysno.ts";

const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;
const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const PAGE = 4096;
const EOPNOTSUPP = 95;
const EINVAL = 22;
const MADV_POPULATE_WRITE = 23;

/** A mapped window: `view` is valid until {@link WritableFile.unmap}. */
export interface WriteWindow {
  /** The bytes [offset, offset + length) of the file. */
  readonly view: Uint8Array;
  /** File offset of `view[0]`. */
  readonly offset: number;
  /** Mapping address and length (page aligned). */
  readonly addr: bigint;
  readonly mapLength: number;
}

/** A file opened read-write for mapped windows; {@link close} (or `using`) releases it. */
export class WritableFile {
  #fd: number;
  #fallocate = true;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** Opens the existing file `path` read-write (a SyscallError names the call on failure). */
  static open(path: string): WritableFile {
    return new WritableFile(syscallNum(SYS.open, cstr(path), O_RDWR | O_CLOEXEC, 0));
  }

  /**
   * Reserves the file's blocks over [offset, offset + length) (extending the
   * file if needed) and maps them read-write, shared. Unmap with
   * {@link unmap} before the file is synced or closed.
   */
  map(offset: number, length: number): WriteWindow {
    const start = offset - (offset % PAGE);
    const mapLength = Math.ceil((offset + length - start) / PAGE) * PAGE;
    if (this.#fallocate) {
      const r = rawSyscall(SYS.fallocate, this.#fd, 0, start, mapLength);
      if (r === -BigInt(EOPNOTSUPP)) this.#fallocate = false;
      else if (r < 0n) syscall(SYS.fallocate, this.#fd, 0, start, mapLength); // throws, named
    }
    if (!this.#fallocate) {
      const size = Number(syscall(SYS.lseek, this.#fd, 0, 2 /* SEEK_END */));
      if (size < start + mapLength) syscall(SYS.ftruncate, this.#fd, start + mapLength);
    }
    const addr = syscall(
      SYS.mmap,
      0,
      mapLength,
      PROT_READ | PROT_WRITE,
      MAP_SHARED,
      this.#fd,
      start,
    );
    // Fault the window's pages in with one call (no page fault per page while it is filled).
    const r = rawSyscall(SYS.madvise, addr, mapLength, MADV_POPULATE_WRITE);
    if (r < 0n && r !== -BigInt(EINVAL)) {
      syscall(SYS.munmap, addr, mapLength);
      throw new SyscallError("madvise(MADV_POPULATE_WRITE)", [offset, length], Number(-r));
    }
    const ptr = Deno.UnsafePointer.create(addr)!;
    const all = new Uint8Array(new Deno.UnsafePointerView(ptr).getArrayBuffer(mapLength));
    return { view: all.subarray(offset - start, offset - start + length), offset, addr, mapLength };
  }

  /** Unmaps a window (its bytes stay in the page cache, dirty, until synced). */
  unmap(w: WriteWindow): void {
    syscall(SYS.munmap, w.addr, w.mapLength);
  }

  /** Writes all of `bytes` at `offset` (pwrite), for where a mapping is refused. */
  writeAt(offset: number, bytes: Uint8Array): void {
    for (let done = 0; done < bytes.length;) {
      done += Number(
        syscall(SYS.pwrite64, this.#fd, bytes.subarray(done), bytes.length - done, offset + done),
      );
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
