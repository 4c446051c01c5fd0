/**
 * The state each restored thread is released with (registers, with the
 * interrupted syscall set to be re-issued; its XSAVE area; its signal
 * mask), decoded from the image ahead of the finalize, and encoded as the
 * buffers of the ptrace requests that set them: the session decodes a few
 * threads at a time while it waits for the stubs (its main thread is
 * otherwise asleep then), so that the finalize of a process with many
 * threads only makes the requests. Pure decoding of the image's values:
 * what is set, and when, is the finalize's, as before.
 *
 * @module
 */

import { regsFromHex, type UserRegs } from "../../ffi/regs.ts";
import { type FinalStateRequests, finalStateRequests } from "../../ffi/ptrace.ts";
import { threadXsave } from "../image/thread_xsave.ts";
import type { ThreadState } from "../model.ts";
import { reissueInterrupted } from "../task/syscalls.ts";

/** What the finalize sets in one thread before it is released. */
export interface FinalThreadState {
  regs: UserRegs;
  xsave: Uint8Array;
  sigmask: bigint;
  /** The same, as the buffers of the requests that set them (ffi/ptrace.ts `setFinalState`). */
  requests: FinalStateRequests;
}

/** Decodes thread `t`'s final state from its record. */
export function finalThreadState(t: ThreadState): FinalThreadState {
  const regs = regsFromHex(t.regs);
  reissueInterrupted(t, regs); // see engine/task/syscalls.ts
  regs.orig_rax = 0xffffffffffffffffn;
  const xsave = threadXsave(t);
  const sigmask = BigInt(t.sigmask);
  return { regs, xsave, sigmask, requests: finalStateRequests(xsave, regs, sigmask) };
}

/** The final states of a tree's threads, decoded a few at a time ahead of use. */
export class FinalStates {
  readonly #todo: ThreadState[];
  readonly #done = new Map<ThreadState, FinalThreadState>();

  /** `threads`: every thread the finalize will release, in the order to decode them. */
  constructor(threads: ThreadState[]) {
    this.#todo = threads.slice().reverse();
  }

  /** Decodes up to `n` more threads; false when every one is decoded already. */
  prepare(n: number): boolean {
    if (this.#todo.length === 0) return false;
    for (let i = 0; i < n && this.#todo.length; i++) {
      const t = this.#todo.pop()!;
      this.#done.set(t, finalThreadState(t));
    }
    return true;
  }

  /** Thread `t`'s final state (decoded now when it was not yet); each is handed out once. */
  take(t: ThreadState): FinalThreadState {
    const s = this.#done.get(t);
    if (!s) return finalThreadState(t);
    this.#done.delete(t);
    return s;
  }
}
