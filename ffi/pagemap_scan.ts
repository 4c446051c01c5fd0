/**
 * The PAGEMAP_SCAN ioctl of /proc/<pid>/pagemap (Linux 6.7+) with every
 * field of `struct pm_scan_arg`, into a reusable region buffer: one call
 * returns the runs of pages of a range that match a category test, each
 * with its categories, instead of one 8-byte entry per page.
 *
 * @module
 */

import { addressOf, rawSyscall, rawSyscallOffThread } from "./libc.ts";
import { SYS } from "./sysno.ts";
import { SyscallTable } from "./syscall_table.ts";

/** _IOWR('f', 16, struct pm_scan_arg): 96 bytes. */
const PAGEMAP_SCAN = 0xc0606610n;

/** pm_scan_arg.flags: write-protect the matching pages (userfaultfd WP_ASYNC ranges only). */
export const PM_SCAN_WP_MATCHING = 1n << 0n;
/** pm_scan_arg.flags: fail with EPERM on a range not registered with WP_ASYNC. */
export const PM_SCAN_CHECK_WPASYNC = 1n << 1n;

/** A category test and what to report (PAGE_IS_* bits of ffi/probe.ts). */
export interface ScanTest {
  /** PM_SCAN_* flags. */
  flags?: bigint;
  /** Categories inverted before the tests. */
  inverted?: bigint;
  /** Every one of these (after inversion) is required. */
  mask?: bigint;
  /** At least one of these (after inversion) is required (0: no such test). */
  anyOf?: bigint;
  /** Categories reported per region. */
  returnMask: bigint;
}

/** A reusable buffer of `struct page_region`s and the argument block. */
export class ScanBuffer {
  /** Capacity in regions. */
  readonly capacity: number;
  /** start, end, categories per region. */
  readonly vec: BigUint64Array<ArrayBuffer>;
  readonly #arg = new BigUint64Array(12);

  constructor(capacity = 4096) {
    this.capacity = capacity;
    this.vec = new BigUint64Array(capacity * 3);
  }

  /**
   * One PAGEMAP_SCAN call on [start, end) of the open pagemap `fd`: the
   * number of regions filled (or `-errno`) and where the walk stopped
   * (`end` when it covered the whole range).
   */
  scan(fd: number, start: bigint, end: bigint, t: ScanTest): { n: number; walkEnd: bigint } {
    const r = rawSyscall(SYS.ioctl, fd, PAGEMAP_SCAN, this.#argFor(start, end, t));
    return { n: Number(r), walkEnd: this.#arg[4] };
  }

  /**
   * {@link scan} on another thread (the main thread works meanwhile; the
   * buffer must not be used until it settles): `n` is -1 on any failure.
   */
  async scanOffThread(
    fd: number,
    start: bigint,
    end: bigint,
    t: ScanTest,
  ): Promise<{ n: number; walkEnd: bigint }> {
    const arg = this.#argFor(start, end, t);
    const r = await rawSyscallOffThread(SYS.ioctl, fd, PAGEMAP_SCAN, arg);
    return { n: r < 0n ? -1 : Number(r), walkEnd: this.#arg[4] };
  }

  /**
   * {@link scan} started on another thread by a syscall table
   * (ffi/syscall_table.ts): polled with `done`, then `result` (`n` is
   * `-errno` on failure). The buffer must not be used until it is done.
   */
  scanInTable(fd: number, start: bigint, end: bigint, t: ScanTest): ScanInTable {
    const arg = this.#argFor(start, end, t);
    const table = new SyscallTable(1);
    table.syscall(SYS.ioctl, fd, PAGEMAP_SCAN, arg);
    table.keep(this.vec);
    const run = table.run();
    return {
      done: run.done,
      result: () => {
        if (!run.done()) throw new Error("PAGEMAP_SCAN still running");
        return { n: Number(table.result(0)), walkEnd: arg[4] };
      },
    };
  }

  #argFor(start: bigint, end: bigint, t: ScanTest): BigUint64Array<ArrayBuffer> {
    const a = this.#arg;
    a[0] = 96n;
    a[1] = t.flags ?? 0n;
    a[2] = start;
    a[3] = end;
    a[4] = 0n;
    a[5] = addressOf(this.vec);
    a[6] = BigInt(this.capacity);
    a[7] = 0n;
    a[8] = t.inverted ?? 0n;
    a[9] = t.mask ?? 0n;
    a[10] = t.anyOf ?? 0n;
    a[11] = t.returnMask;
    return a;
  }
}

/** A PAGEMAP_SCAN running on another thread ({@link ScanBuffer.scanInTable}). */
export interface ScanInTable {
  /** True once the call returned (polled without the event loop). */
  done(): boolean;
  /** Regions filled (or `-errno`) and where the walk stopped; only once done. */
  result(): { n: number; walkEnd: bigint };
}
