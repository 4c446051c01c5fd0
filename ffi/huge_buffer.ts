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
 * backing store never moves), not yet faulted in ({@link faultInCalls}).
 */
export function hugeAlignedBuffer(size: number): Uint8Array<ArrayBuffer> {
  const all = new Uint8Array(size + HUGE_PAGE);
  const skip = (HUGE_PAGE - Number(addressOf(all) % BigInt(HUGE_PAGE))) % HUGE_PAGE;
  return all.subarray(skip, skip + size);
}

/** One `madvise` call: its number and arguments (buffer, length, advice). */
export type MadviseCall = [
  nr: number,
  buf: Uint8Array<ArrayBuffer>,
  length: number,
  advice: number,
];

/**
 * The calls that fault in every page of `buf` (2 MiB aligned, from
 * {@link hugeAlignedBuffer}) for writing: with `huge`, `MADV_HUGEPAGE` over
 * its whole huge pages first (the caller knows whether free ones are
 * there: engine/proc/buddyinfo.ts; refused, 4 KiB pages), then
 * `MADV_POPULATE_WRITE`. Run in order, here ({@link runCalls}) or on
 * another thread (a syscall table: ffi/syscall_table.ts).
 */
export function faultInCalls(buf: Uint8Array<ArrayBuffer>, huge: boolean): MadviseCall[] {
  const whole = buf.length - buf.length % HUGE_PAGE;
  return [
    ...(huge && whole > 0 ? [[SYS.madvise, buf, whole, MADV_HUGEPAGE] as MadviseCall] : []),
    [SYS.madvise, buf, buf.length, MADV_POPULATE_WRITE],
  ];
}

/** Runs `calls` on this thread; false when the last one failed (the pages then fault in at their first use). */
export function runCalls(calls: MadviseCall[]): boolean {
  let r = 0n;
  for (const [nr, ...args] of calls) r = rawSyscall(nr, ...args);
  return r === 0n;
}
