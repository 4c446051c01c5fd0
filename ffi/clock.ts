/**
 * Reading a clock of this process (clock_gettime).
 *
 * @module
 */

import { rawSyscall } from "./libc.ts";
import { SYS } from "./sysno.ts";
import { errnoName } from "./errno.ts";

/** The time of `clockid` in nanoseconds; throws naming the errno on failure. */
export function clockNowNs(clockid: number): bigint {
  const ts = new BigInt64Array(2);
  const r = rawSyscall(SYS.clock_gettime, clockid, ts);
  if (r < 0n) throw new Error(`clock_gettime(${clockid}) failed: ${errnoName(Number(-r))}`);
  return ts[0] * 1_000_000_000n + ts[1];
}

const ITIMER_VIRTUAL = 1;
let cpuTimerTick: number | undefined;

/**
 * What setitimer adds to the value of a CPU-time interval timer
 * (ITIMER_VIRTUAL, ITIMER_PROF): one scheduler tick (TICK_NSEC, set by the
 * kernel's HZ), in microseconds; 0 when it cannot be told. Measured once on
 * this process's own ITIMER_VIRTUAL (set to 1000 s, read, then put back as
 * it was), rounded to the tick of HZ 1000, 300, 250 or 100.
 */
export function cpuTimerTickUs(): number {
  if (cpuTimerTick !== undefined) return cpuTimerTick;
  const set = new BigInt64Array([0n, 0n, 1000n, 0n]); // interval, value (1000 s)
  const old = new BigInt64Array(4);
  const now = new BigInt64Array(4);
  cpuTimerTick = 0;
  // A tick of this thread's CPU time that ends between the two calls takes one off what
  // was added: measured again (under load it did, and the tick went uncounted).
  for (let attempt = 0; attempt < 8 && cpuTimerTick === 0; attempt++) {
    if (rawSyscall(SYS.setitimer, ITIMER_VIRTUAL, set, old) < 0n) return cpuTimerTick;
    const r = rawSyscall(SYS.getitimer, ITIMER_VIRTUAL, now);
    rawSyscall(SYS.setitimer, ITIMER_VIRTUAL, old, null);
    if (r < 0n) return cpuTimerTick;
    const added = Number(now[2] - 1000n) * 1e6 + Number(now[3]);
    for (const tick of [1000, 3333, 4000, 10000]) {
      if (added <= tick && added > tick - 500) cpuTimerTick = tick;
    }
  }
  return cpuTimerTick;
}
