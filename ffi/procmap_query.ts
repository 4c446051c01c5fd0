/**
 * The PROCMAP_QUERY ioctl of /proc/<pid>/maps (Linux 6.11+): one call
 * returns the area covering an address (or the next one) in binary, with
 * its permissions, instead of the whole maps text of a process with
 * thousands of mappings.
 *
 * @module
 */

import { cstr, rawSyscall } from "./libc.ts";
import { SYS } from "./sysno.ts";

/** _IOWR('f', 17, struct procmap_query): 104 bytes. */
const PROCMAP_QUERY = 0xc0686611n;
const STRUCT_SIZE = 104;

/** query_flags: the area covering the address, or else the next one above it. */
export const PROCMAP_QUERY_COVERING_OR_NEXT_VMA = 0x10n;

/** vma_flags bits. */
export const PROCMAP_QUERY_VMA_READABLE = 0x1;
/** Writable. */
export const PROCMAP_QUERY_VMA_WRITABLE = 0x2;
/** Executable. */
export const PROCMAP_QUERY_VMA_EXECUTABLE = 0x4;
/** Shared (a "s" in maps). */
export const PROCMAP_QUERY_VMA_SHARED = 0x8;

/** What the kernel returns of one area. */
export interface ProcmapArea {
  /** First address. */
  start: bigint;
  /** Address just past it. */
  end: bigint;
  /** PROCMAP_QUERY_VMA_* bits. */
  flags: number;
  /** File offset of `start`. */
  offset: bigint;
  /** Inode of the backing file, 0 if none. */
  inode: bigint;
}

/** An open /proc/<pid>/maps to query. Close it, or use `using`. */
export class ProcmapQuery {
  readonly #fd: number;
  readonly #arg = new BigUint64Array(STRUCT_SIZE / 8);

  /** Opens /proc/<pid>/maps; throws with the errno when it cannot. */
  constructor(pid: number) {
    const O_RDONLY_CLOEXEC = 0o2000000;
    const fd = rawSyscall(SYS.open, cstr(`/proc/${pid}/maps`), O_RDONLY_CLOEXEC);
    if (fd < 0n) throw new Error(`open /proc/${pid}/maps: errno ${-fd}`);
    this.#fd = Number(fd);
  }

  /**
   * The area covering `addr` (or the next one with
   * {@link PROCMAP_QUERY_COVERING_OR_NEXT_VMA}): the area, null when there
   * is none (ENOENT), or `-errno` of any other failure (ENOTTY or EINVAL
   * before Linux 6.11).
   */
  query(addr: bigint, queryFlags = 0n): ProcmapArea | null | number {
    const a = this.#arg;
    a.fill(0n);
    a[0] = BigInt(STRUCT_SIZE);
    a[1] = queryFlags;
    a[2] = addr;
    const r = rawSyscall(SYS.ioctl, this.#fd, PROCMAP_QUERY, a);
    if (r === -2n) return null;
    if (r < 0n) return Number(r);
    return { start: a[3], end: a[4], flags: Number(a[5]), offset: a[7], inode: a[8] };
  }

  /** Closes the file. */
  close(): void {
    rawSyscall(SYS.close, this.#fd);
  }

  /** Same as {@link close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
