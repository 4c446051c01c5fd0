/**
 * Page buffers faulted in ahead of use, on transparent huge pages where the
 * kernel gives them. On this VM a first touch of fresh anonymous memory
 * costs ~0.75 ms per MiB in 4 KiB faults (16 MiB: ~12 ms of CPU); the same
 * 16 MiB in 2 MiB pages, `MADV_HUGEPAGE` then `MADV_POPULATE_WRITE`, ~2.5
 * ms, when free 2 MiB blocks are there (else the kernel compacts memory in
 * the faulting thread: engine/proc/buddyinfo.ts). Best effort: without THP
 * (`never`), the advice is refused or ignored and the pages are faulted in
 * 4 KiB at a time.
 *
 * @module
 */

import { addressOf, rawSyscall } from "./libc.ts";
import { SYS } from "./sysno.ts";

/** Size of a transparent huge page on x86-64. */
export const HUGE_PAGE = 2 << 20;
const MADV_HUGEPAGE = 14;
const MADV_POPULATE_WRITE = 23;

/**
 * A zeroed buffer of `size` bytes (a multiple of 4 KiB) starting at a 2 MiB
 * boundary (a subarray of a larger, garbage-collected ArrayBuffer, whose
 * backing store never moves); with `huge`, its whole huge pages advised
 * `MADV_HUGEPAGE` (the caller knows whether free huge pages are there:
 * engine/proc/buddyinfo.ts).
 */
export function hugeAlignedBuffer(size: number, huge = true): Uint8Array<ArrayBuffer> {
  const all = new Uint8Array(size + HUGE_PAGE);
  const skip = (HUGE_PAGE - Number(addressOf(all) % BigInt(HUGE_PAGE))) % HUGE_PAGE;
  const buf = all.subarray(skip, skip + size);
  const whole = size - size % HUGE_PAGE;
  if (huge && whole > 0) rawSyscall(SYS.madvise, buf, whole, MADV_HUGEPAGE); // refused: 4 KiB pages
  return buf;
}

/**
 * Faults in every page of `buf` (page aligned, a multiple of 4 KiB) for
 * writing, now (`MADV_POPULATE_WRITE`); false when the kernel refused (the
 * pages then fault in at their first use).
 */
export function populateNow(buf: Uint8Array): boolean {
  return rawSyscall(SYS.madvise, buf, buf.length, MADV_POPULATE_WRITE) === 0n;
}
