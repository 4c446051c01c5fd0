/**
 * The credentials' read-back by the restored threads themselves: each
 * thread's credentials section ends by reading its own
 * `/proc/thread-self/status` into a buffer of its own (engine/task/creds.ts
 * `emitStatusRead`), so that cryo, instead of opening and reading one status
 * file per thread after the runs (the kernel's `proc_pid_status` and four
 * file syscalls on cryo's main thread: ~35 us a thread here, ~2.3 ms at 64
 * threads), reads every thread's text in one `process_vm_readv`; the texts
 * are then checked exactly as the files were (engine/task/creds_restore.ts:
 * the record's lines, else the parse and the field-by-field comparison).
 *
 * The buffers are the bootstrap's scratch range (the megabyte above the
 * program, engine/restore/compile.ts `VDSO_SCRATCH_BYTES`: free once the
 * exec set-up moved the vdso and the page loads are over; unmapped with the
 * bootstrap after the runs), {@link STATUS_READ_BYTES} each, the main
 * thread's first. Each thread that runs a section with the read has run
 * slots of its own whose buffer slot names its buffer: the main thread gets
 * an area for that ({@link emitMainRunArea}).
 *
 * Only where nothing can differ from cryo's own read: a process at the root
 * directory "/" (the path resolves in cryo's /proc), without seccomp in any
 * thread (a filter installed before the runs could refuse or kill on
 * `open`), of 2 to {@link maxStatusThreads} threads. A read that fails or
 * fills its buffer (a text that may be cut) falls back to cryo's read of
 * that thread's file.
 *
 * @module
 */

import { processVmReadFully } from "../../ffi/process_vm.ts";
import type { ProcessImage } from "../model.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import { RUN_AREA_BYTES, STATUS_BUF_SLOT, STATUS_LEN_SLOT } from "../task/sched_run.ts";

/** Bytes of each thread's status buffer (a thread's status is ~1.4 KB). */
export const STATUS_READ_BYTES = 4096;

/** Where a process's threads read their statuses, as the compile laid it out. */
export interface StatusReads {
  /** Address of the first buffer (the main thread's); thread i's at + i * {@link STATUS_READ_BYTES}. */
  buffers: bigint;
  /** The threads in buffer order (the main thread first). */
  tids: readonly number[];
  /** The main thread's run slots (its area: {@link RUN_AREA_BYTES}). */
  mainSlots: bigint;
}

/** The most threads whose buffers fit in `scratchBytes`. */
export function maxStatusThreads(scratchBytes: number): number {
  return Math.floor(scratchBytes / STATUS_READ_BYTES);
}

/** Whether `proc`'s threads read their own statuses (see the module doc). */
export function statusReadsWanted(proc: ProcessImage, scratchBytes: number): boolean {
  const n = proc.threads.length;
  return n >= 2 && n <= maxStatusThreads(scratchBytes) && proc.root === "/" &&
    proc.threads.every((t) => (t.seccomp?.mode ?? 0) === 0);
}

/** The buffer slot of the area at `at` of `area` set to `addr`. */
export function setStatusBuffer(area: Uint8Array, at: number, addr: bigint): void {
  new DataView(area.buffer, area.byteOffset + at).setBigUint64(STATUS_BUF_SLOT * 8, addr, true);
}

/** The main thread's run area (all ones but its buffer slot: `buffer`); returns its address. */
export function emitMainRunArea(p: ProgramBuilder, buffer: bigint): bigint {
  const area = new Uint8Array(RUN_AREA_BYTES).fill(0xff);
  setStatusBuffer(area, 0, buffer);
  return p.data(area, 8);
}

/**
 * The status text each thread read in its run, by tid, from one read of
 * the buffers; a thread whose read failed, did not run or filled its
 * buffer is left out (the caller reads its file). `lengthOf` gives the
 * read's result from the thread's run area (its length slot).
 */
export function readStatusTexts(
  pid: number,
  reads: StatusReads,
  lengthOf: (tid: number) => bigint | undefined,
): Map<number, string> {
  const out = new Map<number, string>();
  const lengths = reads.tids.map((tid) => lengthOf(tid));
  const good = (len: bigint | undefined) =>
    len !== undefined && len > 0n && len < BigInt(STATUS_READ_BYTES);
  if (!lengths.some(good)) return out;
  const buf = new Uint8Array(STATUS_READ_BYTES * reads.tids.length);
  processVmReadFully(pid, reads.buffers, buf);
  const decoder = new TextDecoder();
  reads.tids.forEach((tid, i) => {
    const len = lengths[i];
    if (!good(len)) return;
    const at = i * STATUS_READ_BYTES;
    out.set(tid, decoder.decode(buf.subarray(at, at + Number(len))));
  });
  return out;
}

/** The length slot of a run area (the status read's result, as a signed value). */
export function statusLengthOf(area: DataView): bigint {
  return area.getBigInt64(STATUS_LEN_SLOT * 8, true);
}
