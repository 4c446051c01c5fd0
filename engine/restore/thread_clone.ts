/**
 * The ops that create a process's threads (every thread but the main one)
 * in its restore program: one `clone3` per thread asking for the thread's
 * own tid (`set_tid`), traced from birth (`CLONE_PTRACE`: the thread stops
 * there and its creator does not stop at a clone event), its
 * clear-child-tid address as recorded. The new thread jumps to the
 * program's `thread-park` label, where the engine takes it over.
 *
 * The `clone_args` of all threads are written into the program's data as
 * one block (and their tids as another), from numbers, without a codec
 * call and a `bigint` per field for each thread (64 threads: 1 to 4 ms of
 * a cold plan); the bytes of each `clone_args` are those
 * `cloneArgs.encode` gives (tests/thread_clone_test.ts).
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { CLONE, cloneArgs } from "../../ffi/structs.ts";
import type { ProcessImage } from "../model.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import { type HexNum, hexNum } from "../image/hexnum.ts";

/** Flags of every thread's clone3 (CLONE_CHILD_CLEARTID added when it has an address). */
const THREAD_FLAGS = Number(
  CLONE.VM | CLONE.FS | CLONE.FILES | CLONE.SIGHAND | CLONE.THREAD | CLONE.SYSVSEM |
    CLONE.PTRACE,
);
const CHILD_CLEARTID = Number(CLONE.CHILD_CLEARTID);
/** Offsets in `struct clone_args` (ffi/structs.ts `cloneArgs`). */
const FLAGS = 0, CHILD_TID = 16, SET_TID = 64, SET_TID_SIZE = 72;
const TWO32 = 2 ** 32;

/** Writes `v` (a non-negative exact number, or a bigint) as a u64 at `at`. */
function setU64(view: DataView, at: number, v: HexNum): void {
  if (typeof v === "bigint") view.setBigUint64(at, BigInt.asUintN(64, v), true);
  else {
    view.setUint32(at, v % TWO32, true);
    view.setUint32(at + 4, Math.floor(v / TWO32), true);
  }
}

/** Emits the clone3 of each thread of `proc` but the main one, in record order. */
export function emitThreadClones(p: ProgramBuilder, proc: ProcessImage): void {
  const others = proc.threads.filter((t) => t.tid !== proc.pid);
  if (others.length === 0) return;
  const size = cloneArgs.size;
  const tids = p.u64s(others.map((t) => t.tid));
  const block = new Uint8Array(size * others.length);
  const view = new DataView(block.buffer);
  others.forEach((t, i) => {
    const at = i * size;
    const clear = hexNum(t.clearChildTid);
    setU64(view, at + FLAGS, THREAD_FLAGS | (clear !== 0 && clear !== 0n ? CHILD_CLEARTID : 0));
    setU64(view, at + CHILD_TID, clear);
    view.setBigUint64(at + SET_TID, tids + BigInt(8 * i), true);
    setU64(view, at + SET_TID_SIZE, 1);
  });
  const args = p.data(block, 8);
  others.forEach((t, i) => {
    p.op(SYS.clone3, [args + BigInt(i * size), size], {
      jumpIfZeroTo: "thread-park",
      comment: `thread ${t.tid}`,
    });
  });
}
