/**
 * Anonymous-inode fds that carry their whole state in fdinfo: eventfd
 * (counter), timerfd (clock, remaining time, interval), signalfd (mask).
 * Each is re-created with its syscall and the state put back.
 *
 * @module
 */

import type { FdInfo } from "../model.ts";
import type { FdSource } from "./types.ts";

/** eventfd: `eventfd-count` (hex) and `eventfd-semaphore`. */
export function planEventfd(f: FdInfo): FdSource | string {
  const count = f.extra["eventfd-count"];
  if (count === undefined) return "eventfd without a readable count";
  return {
    kind: "eventfd",
    count: `0x${count.trim()}`,
    semaphore: f.extra["eventfd-semaphore"]?.trim() === "1",
    flags: f.flags,
  };
}

function pair(text: string | undefined): [number, number] | undefined {
  const m = text?.match(/\((\d+),\s*(\d+)\)/);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/** timerfd: clock, `it_value` (remaining) and `it_interval`, as (seconds, nanoseconds). */
export function planTimerfd(f: FdInfo): FdSource | string {
  const value = pair(f.extra["it_value"]);
  const interval = pair(f.extra["it_interval"]);
  const clockid = Number(f.extra["clockid"]);
  if (!value || !interval || Number.isNaN(clockid)) return "timerfd without readable state";
  return { kind: "timerfd", clockid, flags: f.flags, value, interval };
}

/** signalfd: `sigmask` (hex). */
export function planSignalfd(f: FdInfo): FdSource | string {
  const mask = f.extra["sigmask"];
  if (mask === undefined) return "signalfd without a readable mask";
  return { kind: "signalfd", mask: `0x${mask.trim()}`, flags: f.flags };
}
