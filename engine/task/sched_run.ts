/**
 * The scheduling of a restored thread read by the thread itself, in its
 * own run at finalize (engine/restore/thread_state.ts), instead of three
 * syscalls and their decoding from cryo per thread before the runs
 * (engine/task/sched.ts `restoreSched`'s first read).
 *
 * Each thread's section ends with `sched_getattr(0)`, `sched_getaffinity(0)`
 * and `ioprio_get(IOPRIO_WHO_PROCESS, 0)` (the calling thread: the same
 * task the tid would name) into its own area of the program's data (its
 * run's slots, r12: slot 0 its timer slack, slots 1 to 3 these results,
 * then the sched_attr and the CPU mask); the engine reads every thread's
 * area in one `process_vm_readv` after the runs (creds_restore.ts) and
 * decodes it as `collectSched` decodes its own reads (`schedOf`). A thread
 * whose reads are its record is left as it is; any other (a read that
 * failed, or did not run: the slots start all ones; a value that differs)
 * goes the whole way of `restoreSched` from cryo: read, set, read back,
 * fail naming the thread. That set now comes after the thread's
 * credentials changed: cryo sets scheduling with its own privileges
 * (CAP_SYS_NICE, or the same owner), which the target's credentials do
 * not change, as the timer slack's set already did.
 *
 * Only threads whose recorded policy is a fair one (OTHER, BATCH, IDLE,
 * where sched_getattr holds the nice value) read in their run; a real-time
 * or deadline thread, and the main thread, are read from cryo before the
 * runs, as before.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { CPU_MASK_BYTES, cpusOfMask, IOPRIO_WHO_PROCESS } from "../../ffi/sched.ts";
import { schedAttr } from "../../ffi/structs.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import type { ThreadState } from "../model.ts";
import { isFairPolicy, restoreSched, schedOf, type ThreadSched } from "./sched.ts";

/** Slot (of the thread's run) receiving the result of sched_getattr. */
const ATTR_SLOT = 1;
/** Slot receiving the result of sched_getaffinity (the mask's bytes). */
const MASK_SLOT = 2;
/** Slot receiving the result of ioprio_get. */
const IOPRIO_SLOT = 3;
/** Offset of the sched_attr in a thread's area (after its 4 slots). */
const ATTR_AT = 32;
/** Offset of the CPU mask in a thread's area. */
const MASK_AT = ATTR_AT + 64;
/**
 * Slot (of a thread's run) where the end of every credentials section
 * stores the running thread's tid (engine/task/creds.ts): after the
 * section's last op that can fail, so a run that stopped with SIGTRAP and
 * left its tid there stopped at the section's END (creds_restore.ts reads
 * no registers for it). Just after the CPU mask.
 */
export const RUN_DONE_SLOT = (MASK_AT + CPU_MASK_BYTES + 7) >> 3;
/** Bytes of each thread's run area (slots, sched_attr, CPU mask, the done mark), 8-aligned. */
export const RUN_AREA_BYTES = RUN_DONE_SLOT * 8 + 8;

/** Whether thread `t`'s section reads its scheduling in its run. */
export function schedReadInRun(t: Pick<ThreadState, "sched">): boolean {
  return t.sched !== undefined && isFairPolicy(t.sched.policy);
}

/**
 * Emits the reads of the running thread's scheduling into its run area at
 * `area` (whose address is also the run's r12): results in slots 1 to 3,
 * each allowed to fail (a -errno there sends the thread the whole way).
 */
export function emitSchedReads(
  p: ProgramBuilder,
  area: bigint,
  say: (what: string) => { comment: string },
): void {
  p.op(SYS.sched_getattr, [0, area + BigInt(ATTR_AT), schedAttr.size, 0], {
    store: ATTR_SLOT,
    allowFail: true,
    ...say("scheduling read back"),
  });
  p.op(SYS.sched_getaffinity, [0, CPU_MASK_BYTES, area + BigInt(MASK_AT)], {
    store: MASK_SLOT,
    allowFail: true,
    ...say("affinity read back"),
  });
  p.op(SYS.ioprio_get, [IOPRIO_WHO_PROCESS, 0], {
    store: IOPRIO_SLOT,
    allowFail: true,
    ...say("I/O priority read back"),
  });
}

/**
 * The scheduling a thread read in its run, from its area (`view`, at its
 * start); undefined when a read failed or did not run.
 */
export function schedFromRun(view: DataView): ThreadSched | undefined {
  const slot = (i: number) => view.getBigInt64(8 * i, true);
  const slack = slot(0), attr = slot(ATTR_SLOT), mask = slot(MASK_SLOT), io = slot(IOPRIO_SLOT);
  if (slack < 0n || attr !== 0n || mask <= 0n || mask > BigInt(CPU_MASK_BYTES) || io < 0n) {
    return undefined;
  }
  const bytes = new Uint8Array(view.buffer, view.byteOffset, RUN_AREA_BYTES);
  const a = schedAttr.decode(bytes.subarray(ATTR_AT, ATTR_AT + schedAttr.size));
  if (!isFairPolicy(a.policy)) return undefined; // (its nice value would need getpriority)
  const cpus = cpusOfMask(bytes.subarray(MASK_AT, MASK_AT + CPU_MASK_BYTES), Number(mask));
  return schedOf(a, () => NaN, cpus, Number(slack), Number(io));
}

/** The keys of a scheduling record (`ThreadSched`), all compared by {@link schedMatchesRun}. */
const SCHED_KEYS = 12;
const KEPT_FLAGS = 0x1 | 0x2 | 0x4;

/** Whether u64 `at` of `view` is the decimal `text` (exact; "0" the common case). */
function u64Is(view: DataView, at: number, text: string): boolean {
  if (text === "0") return view.getUint32(at, true) === 0 && view.getUint32(at + 4, true) === 0;
  return view.getBigUint64(at, true).toString() === text;
}

/**
 * Whether a thread's reads in its run (its area, `view`) are its record
 * `want`: true only when {@link schedFromRun} decodes them into a state
 * with no difference from `want` (`schedDifferences` empty), compared
 * field by field on the bytes without making that state (the check of 63
 * threads ran ~40 us each of cold code the other way); false sends the
 * thread the whole way, which decides with `schedDifferences` itself.
 */
export function schedMatchesRun(view: DataView, want: ThreadSched): boolean {
  const slack = view.getBigInt64(0, true);
  const mask = view.getBigInt64(8 * MASK_SLOT, true);
  if (
    Object.keys(want).length !== SCHED_KEYS || !Number.isSafeInteger(want.timerSlackNs) ||
    !Number.isSafeInteger(want.ioprio) || view.getBigInt64(8 * ATTR_SLOT, true) !== 0n ||
    mask <= 0n || mask > BigInt(CPU_MASK_BYTES) || slack < 0n ||
    slack !== BigInt(want.timerSlackNs) ||
    view.getBigInt64(8 * IOPRIO_SLOT, true) !== BigInt(want.ioprio)
  ) {
    return false;
  }
  const a = ATTR_AT;
  const policy = view.getUint32(a + 4, true);
  if (!isFairPolicy(policy) || policy !== want.policy) return false;
  if ((Number(view.getBigUint64(a + 8, true)) & KEPT_FLAGS) !== want.flags) return false;
  if (view.getInt32(a + 16, true) !== want.nice || view.getUint32(a + 20, true) !== want.priority) {
    return false;
  }
  if (
    !u64Is(view, a + 24, want.runtime) || !u64Is(view, a + 32, want.deadline) ||
    !u64Is(view, a + 40, want.period)
  ) {
    return false;
  }
  if (
    view.getUint32(a + 48, true) !== want.utilMin || view.getUint32(a + 52, true) !== want.utilMax
  ) {
    return false;
  }
  // The CPUs: cpusOfMask lists the mask's set bits in increasing order, so the record's list
  // matches when it increases strictly, stays inside the mask's bytes, and sets exactly its bytes.
  const n = Number(mask);
  const bytes = new Uint8Array(n);
  const cpus = want.cpus;
  for (let k = 0; k < cpus.length; k++) {
    const c = cpus[k];
    if (!Number.isSafeInteger(c) || c < 0 || c >= n * 8 || (k > 0 && c <= cpus[k - 1])) {
      return false;
    }
    bytes[c >> 3] |= 1 << (c & 7);
  }
  for (let i = 0; i < n; i++) if (view.getUint8(MASK_AT + i) !== bytes[i]) return false;
  return true;
}

/**
 * After the runs: each thread of `threads` that read its scheduling in its
 * run (`areas`, by tid) is checked against its record; one that differs, or
 * whose reads failed, has its scheduling restored from cryo and read back
 * (`restoreSched`: throws naming the thread when the kernel refuses).
 */
export function checkSchedsReadInRuns(
  pid: number,
  threads: readonly Pick<ThreadState, "tid" | "sched">[],
  areas: ReadonlyMap<number, DataView>,
): void {
  for (const t of threads) {
    const view = areas.get(t.tid);
    if (!view || !t.sched || !schedReadInRun(t)) continue;
    if (schedMatchesRun(view, t.sched)) continue;
    restoreSched(pid, t.tid, t.sched);
  }
}
