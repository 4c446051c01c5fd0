/**
 * A SIGCHLD handler that does nothing, so that a tracer's nap ends at its
 * tracee's next stop. A process-wide SIGCHLD left at SIG_DFL is discarded
 * when it is sent: a tracer polling `wait4(WNOHANG)` between naps then sees
 * each stop up to a whole nap late. With a handler the signal is delivered
 * (to the tracer thread, which the kernel prefers for a tracee's
 * notifications) and ends a `nanosleep` there at once: the kernel never
 * restarts a sleep after a handler ran (signal(7)). `SA_RESTART` restarts
 * the other calls it interrupts (a blocking `wait4`, reads).
 *
 * @module
 */

import { rawSyscall } from "./libc.ts";
import { codePage } from "./code_page.ts";
import { SYS } from "./sysno.ts";
import { kernelSigaction } from "./structs.ts";

const SIGCHLD = 17;
const SA_RESTART = 0x10000000n;
const SA_RESTORER = 0x04000000n;

/**
 * The handler (`ret`) and, 16 bytes in, its restorer (`mov eax, 15;
 * syscall`: rt_sigreturn), on one page made read+exec once.
 */
const CODE = new Uint8Array([
  0xc3, // ret
  ...new Array(15).fill(0xcc), // int3
  0xb8,
  0x0f,
  0x00,
  0x00,
  0x00, // mov eax, 15 (rt_sigreturn)
  0x0f,
  0x05, // syscall
]);

let codePageAddr: bigint | null | undefined;

/** The code page's address, mapped on first use; null when the kernel refuses a step. */
function handlerPage(): bigint | null {
  if (codePageAddr === undefined) codePageAddr = codePage(CODE);
  return codePageAddr;
}

/**
 * Whether SIGCHLD's disposition is a handler (this module's or anyone's),
 * so that a `nanosleep` of the thread it is delivered to ends at the next
 * SIGCHLD; false at SIG_DFL or SIG_IGN (the signal is discarded: a nap
 * runs its whole time), or when it cannot be read.
 */
export function sigchldWakes(): boolean {
  const now = new Uint8Array(kernelSigaction.size);
  if (rawSyscall(SYS.rt_sigaction, SIGCHLD, 0, now, 8) !== 0n) return false;
  return kernelSigaction.decode(now).handler > 1n; // SIG_DFL 0, SIG_IGN 1
}

/**
 * Installs the do-nothing SIGCHLD handler while SIGCHLD is at SIG_DFL (any
 * other disposition is someone's and is left as it is: a handler of theirs
 * already ends the nap). Returns the function that puts SIG_DFL back.
 */
export function wakeOnSigchld(): () => void {
  const old = new Uint8Array(kernelSigaction.size);
  if (rawSyscall(SYS.rt_sigaction, SIGCHLD, 0, old, 8) !== 0n) return () => {};
  if (kernelSigaction.decode(old).handler !== 0n) return () => {};
  const page = handlerPage();
  if (page === null) return () => {};
  const act = kernelSigaction.encode({
    handler: page,
    flags: SA_RESTART | SA_RESTORER,
    restorer: page + 16n,
    mask: 0n,
  });
  if (rawSyscall(SYS.rt_sigaction, SIGCHLD, act, 0, 8) !== 0n) return () => {};
  return () => {
    // Only while it is still this handler: one put in over it since (a worker's Deno.Command, whose
    // handler may call this one: the page stays mapped for good) stays.
    const now = new Uint8Array(kernelSigaction.size);
    if (rawSyscall(SYS.rt_sigaction, SIGCHLD, 0, now, 8) !== 0n) return;
    if (kernelSigaction.decode(now).handler !== page) return;
    rawSyscall(SYS.rt_sigaction, SIGCHLD, old, 0, 8);
  };
}
