/**
 * Deno's blocking pool (the threads that run non-blocking FFI calls such
 * as ffi/libc.ts `rawSyscallOffThread`) made to hold a number of threads
 * at once, so that as many off-thread calls later start without a thread
 * being made for them.
 *
 * @module
 */

import { rawSyscall, rawSyscallOffThread } from "./libc.ts";
import { SYS } from "./sysno.ts";

const O_CLOEXEC = 0o2000000;

/**
 * Makes the blocking pool hold `n` threads at once: `n` off-thread reads
 * of one pipe, all submitted before its write end is closed (their end of
 * file), so that no call can end, and free its thread for the next one,
 * before each has a thread of its own: the pool makes the threads it
 * lacks whatever the machine's load (a sleep of a fixed length did not
 * when cryo's thread was descheduled between two submissions). Resolves
 * to false, having done nothing, when no pipe could be made.
 */
export async function holdPoolThreads(n: number): Promise<boolean> {
  const fds = new Int32Array(2);
  if (rawSyscall(SYS.pipe2, fds, O_CLOEXEC) < 0n) return false;
  const [readEnd, writeEnd] = fds;
  const calls = Array.from({ length: n }, () => {
    const byte = new Uint8Array(1);
    return rawSyscallOffThread(SYS.read, readEnd, byte, 1);
  });
  rawSyscall(SYS.close, writeEnd); // every read now returns 0 once its thread runs it
  try {
    await Promise.all(calls);
  } finally {
    rawSyscall(SYS.close, readEnd);
  }
  return true;
}
