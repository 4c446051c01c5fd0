/**
 * The threads' final states decoded ahead of the finalize
 * (engine/restore/final_state.ts): the same registers (with the
 * interrupted syscall re-issued), XSAVE bytes and mask whether decoded
 * ahead by `prepare` or when taken, encoded as the ptrace requests write
 * them, and `prepare` says when it has nothing left. The round trips (tests/restore_threads_test.ts,
 * tests/restore_taskstate_test.ts) release every thread with them.
 */

import assert from "node:assert/strict";
import {
  FinalStates,
  type FinalThreadState,
  finalThreadState,
} from "../engine/restore/final_state.ts";
import { encodeUserRegs, USER_REGS_FIELDS } from "../ffi/regs.ts";
import type { ThreadState } from "../engine/model.ts";

function thread(tid: number, restart: boolean): ThreadState {
  const regs: Record<string, string> = {};
  USER_REGS_FIELDS.forEach((f, i) => regs[f] = `0x${(tid * 100 + i).toString(16)}`);
  regs.rax = "0xfffffffffffffdfc"; // -ERESTARTNOHAND... any restartable error
  regs.orig_rax = "0x23"; // nanosleep
  regs.rip = "0x401002";
  return {
    tid,
    regs,
    xsave: btoa(String.fromCharCode(tid & 0xff, 1, 2, 3, 4)),
    sigmask: `${tid * 3}`,
    syscall: { restart: restart ? "restart" : "none" },
  } as unknown as ThreadState;
}

Deno.test("final states: decoded ahead or when taken, the same values", () => {
  const threads = [thread(10, true), thread(11, false), thread(12, true)];
  const ahead = new FinalStates(threads);
  assert.equal(ahead.prepare(2), true);
  assert.equal(ahead.prepare(2), true); // the third
  assert.equal(ahead.prepare(2), false); // nothing left
  const lazy = new FinalStates(threads);
  for (const t of threads) {
    const a = ahead.take(t);
    const b = lazy.take(t);
    const plain = ({ regs, xsave, sigmask }: FinalThreadState) => ({ regs, xsave, sigmask });
    assert.deepEqual(plain(a), plain(b));
    assert.deepEqual(plain(a), plain(finalThreadState(t)));
    // The requests' buffers: the bytes setXstate, setRegs and setSigmask write.
    const r = a.requests;
    assert.deepEqual(r.regs, encodeUserRegs(a.regs));
    assert.deepEqual(r.xstate, a.xsave);
    assert.notEqual(r.xstate.buffer, a.xsave.buffer, "a copy of its own");
    assert.equal(r.xstateIov[0], BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(r.xstate))));
    assert.equal(r.xstateIov[1], BigInt(a.xsave.length));
    assert.deepEqual([...r.sigmask], [a.sigmask]);
    assert.deepEqual(r.regs, b.requests.regs);
    assert.equal(a.regs.orig_rax, 0xffffffffffffffffn);
    assert.equal(a.sigmask, BigInt(t.tid * 3));
    assert.deepEqual([...a.xsave], [t.tid & 0xff, 1, 2, 3, 4]);
    // The interrupted syscall is re-issued: rax back to its number, rip on the syscall.
    const restart = t.tid !== 11;
    assert.equal(a.regs.rax, restart ? 0x23n : 0xfffffffffffffdfcn);
    assert.equal(a.regs.rip, restart ? 0x401000n : 0x401002n);
  }
});
