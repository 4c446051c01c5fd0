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
import type { ProcessImage, ThreadState } from "../model.ts";
import { reissueInterrupted, takesHandledSignal } from "../task/syscalls.ts";

/** What the finalize sets in one thread before it is released. */
export interface FinalThreadState {
  regs: UserRegs;
  xsave: Uint8Array;
  sigmask: bigint;
  /**
   * An interrupted call left for the kernel to restart on the way out of
   * the release stop (engine/task/syscalls.ts): the thread must be released
   * from a stop inside signal handling ({@link FinalStates.release}).
   */
  kernelRestart: boolean;
  /** The same, as the buffers of the requests that set them (ffi/ptrace.ts `setFinalState`). */
  requests: FinalStateRequests;
}

/**
 * Decodes thread `t`'s final state from its record; `handledPending`: a
 * signal with a handler pending in its image can be taken at once
 * (engine/task/syscalls.ts `takesHandledSignal`).
 */
export function finalThreadState(t: ThreadState, handledPending = false): FinalThreadState {
  const regs = regsFromHex(t.regs);
  reissueInterrupted(t, regs, handledPending); // see engine/task/syscalls.ts
  const xsave = threadXsave(t);
  const sigmask = BigInt(t.sigmask);
  const kernelRestart = t.syscall.restart === "restart" && !handledPending;
  return {
    regs,
    xsave,
    sigmask,
    kernelRestart,
    requests: finalStateRequests(xsave, regs, sigmask),
  };
}

/** The final states of a tree's threads, decoded a few at a time ahead of use. */
export class FinalStates {
  readonly #todo: ThreadState[];
  readonly #done = new Map<ThreadState, FinalThreadState>();
  /** The threads that can take a signal with a handler pending in their image. */
  readonly #handledPending = new Set<ThreadState>();

  /** `images`: every process the finalize will release; their threads are decoded in order. */
  constructor(images: readonly ProcessImage[]) {
    for (const image of images) {
      for (const t of image.threads) {
        if (t.syscall.restart === "restart" && takesHandledSignal(image, t)) {
          this.#handledPending.add(t);
        }
      }
    }
    this.#todo = images.flatMap((i) => i.threads).reverse();
  }

  /** Decodes up to `n` more threads; false when every one is decoded already. */
  prepare(n: number): boolean {
    if (this.#todo.length === 0) return false;
    for (let i = 0; i < n && this.#todo.length; i++) {
      const t = this.#todo.pop()!;
      this.#done.set(t, this.#decode(t));
    }
    return true;
  }

  #decode(t: ThreadState): FinalThreadState {
    return finalThreadState(t, this.#handledPending.has(t));
  }

  /** Thread `t`'s final state (decoded now when it was not yet); each is handed out once. */
  take(t: ThreadState): FinalThreadState {
    const s = this.#done.get(t);
    if (!s) return this.#decode(t);
    this.#done.delete(t);
    return s;
  }

  /**
   * Thread `t`'s final state to set now: {@link take}'s, or, when its call
   * is left for the kernel to restart and `inSignalHandling` says the
   * thread's stop is not one the kernel restarts calls on the way out of
   * (ffi/ptrace.ts `stopInSignalHandling`), the call set back in user space.
   */
  release(t: ThreadState, inSignalHandling: (tid: number) => boolean): FinalThreadState {
    const s = this.take(t);
    return s.kernelRestart && !inSignalHandling(t.tid) ? finalThreadState(t, true) : s;
  }
}
