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
