/**
 * The threads' final states decoded ahead of the finalize
 * (engine/restore/final_state.ts): the same registers (with the
 * interrupted syscall re-issued), XSAVE bytes and mask whether decoded
 * ahead by `prepare` or when taken, encoded as the ptrace requests write
 * them, and `prepare` says when it has nothing left. An interrupted call is
 * left for the kernel to restart (orig_rax kept, an ERESTART* code in rax),
 * unless a signal with a handler pending in the image can be taken at once
 * (then it is set back in user space). The round trips (tests/restore_threads_test.ts,
 * tests/restore_taskstate_test.ts) release every thread with them.
 */

import assert from "node:assert/strict";
import {
  FinalStates,
  type FinalThreadState,
  finalThreadState,
} from "../engine/restore/final_state.ts";
import { encodeUserRegs, USER_REGS_FIELDS } from "../ffi/regs.ts";
import type { ProcessImage, ThreadState } from "../engine/model.ts";

function thread(tid: number, restart: boolean): ThreadState {
  const regs: Record<string, string> = {};
  USER_REGS_FIELDS.forEach((f, i) => regs[f] = `0x${(tid * 100 + i).toString(16)}`);
  regs.rax = "0xfffffffffffffdfc"; // -ERESTART_RESTARTBLOCK
  regs.orig_rax = "0x23"; // nanosleep
  regs.rip = "0x401002";
  return {
    tid,
    regs,
    xsave: btoa(String.fromCharCode(tid & 0xff, 1, 2, 3, 4)),
    sigmask: `${tid * 3}`,
    syscall: { restart: restart ? "restart" : "none" },
    pending: [],
  } as unknown as ThreadState;
}

/** A process image of `threads` with `pending` (signal numbers) pending for the process. */
function image(threads: ThreadState[], pending: number[] = []): ProcessImage {
  const sigactions = Array.from({ length: 64 }, (_, i) => ({
    handler: i === 9 ? "0x401100" : "0x0", // SIGUSR1 has a handler
    flags: "0x0",
  }));
  return {
    pid: threads[0].tid,
    threads,
    sigactions,
    sharedPending: pending.map((signo) => ({ signo, code: 0, raw: "" })),
    posixTimers: [],
  } as unknown as ProcessImage;
}

const ERESTARTNOHAND = 0xfffffffffffffdfen;
const NO_SYSCALL = 0xffffffffffffffffn;

Deno.test("final states: decoded ahead or when taken, the same values", () => {
  const threads = [thread(10, true), thread(11, false), thread(12, true)];
  const ahead = new FinalStates([image(threads)]);
  assert.equal(ahead.prepare(2), true);
  assert.equal(ahead.prepare(2), true); // the third
  assert.equal(ahead.prepare(2), false); // nothing left
  const lazy = new FinalStates([image(threads)]);
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
    assert.equal(a.sigmask, BigInt(t.tid * 3));
    assert.deepEqual([...a.xsave], [t.tid & 0xff, 1, 2, 3, 4]);
    // The interrupted syscall is the kernel's to restart on the way out of the release stop:
    // orig_rax kept, ERESTARTNOHAND for the restart block, rip past the syscall; the
    // remaining time (rsi) became nanosleep's request (rdi).
    const restart = t.tid !== 11;
    assert.equal(a.regs.orig_rax, restart ? 0x23n : NO_SYSCALL);
    assert.equal(a.regs.rax, restart ? ERESTARTNOHAND : 0xfffffffffffffdfcn);
    assert.equal(a.regs.rip, 0x401002n);
    assert.equal(a.regs.rdi, BigInt(restart ? t.regs.rsi : t.regs.rdi));
  }
});

Deno.test("final states: a call a pending handled signal can interrupt is set back in user space", () => {
  // SIGUSR1 (10, handled) pending for the process: thread 20 does not block it, thread 21 does.
  const threads = [thread(20, true), thread(21, true)];
  threads[0].sigmask = "0";
  threads[1].sigmask = `${1n << 9n}`;
  const states = new FinalStates([image(threads, [10])]);
  const open = states.take(threads[0]).regs;
  assert.deepEqual([open.rax, open.rip, open.orig_rax], [0x23n, 0x401000n, NO_SYSCALL]);
  const blocked = states.take(threads[1]).regs;
  assert.deepEqual([blocked.rax, blocked.rip, blocked.orig_rax], [
    ERESTARTNOHAND,
    0x401002n,
    0x23n,
  ]);
  // SIGUSR2 (12, no handler) pending: the kernel restarts both.
  const plain = new FinalStates([image([thread(22, true)], [12])]).take(thread(22, true)).regs;
  assert.deepEqual([plain.rax, plain.orig_rax], [ERESTARTNOHAND, 0x23n]);
});
