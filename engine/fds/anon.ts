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

const TFD_TIMER_CANCEL_ON_SET = 2;

function pair(text: string | undefined): [number, number] | undefined {
  const m = text?.match(/\((\d+),\s*(\d+)\)/);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/**
 * timerfd: clock, `it_value` (remaining) and `it_interval`, as (seconds,
 * nanoseconds), and the expirations not read yet (`ticks`). A periodic
 * timer that expired and was not read since shows no remaining time (the
 * kernel re-arms it on read): it is re-armed one interval ahead.
 */
export function planTimerfd(f: FdInfo): FdSource | string {
  let value = pair(f.extra["it_value"]);
  const interval = pair(f.extra["it_interval"]);
  const clockid = Number(f.extra["clockid"]);
  const ticks = Number(f.extra["ticks"] ?? "0");
  if (!value || !interval || Number.isNaN(clockid) || Number.isNaN(ticks)) {
    return "timerfd without readable state";
  }
  if ((parseInt(f.extra["settime flags"] ?? "0", 8) & TFD_TIMER_CANCEL_ON_SET) !== 0) {
    return "timerfd armed with TFD_TIMER_CANCEL_ON_SET: not saved yet";
  }
  if (value[0] === 0 && value[1] === 0 && (interval[0] || interval[1])) value = interval;
  return { kind: "timerfd", clockid, flags: f.flags, value, interval, ticks };
}

/** signalfd: `sigmask` (hex). */
export function planSignalfd(f: FdInfo): FdSource | string {
  const mask = f.extra["sigmask"];
  if (mask === undefined) return "signalfd without a readable mask";
  return { kind: "signalfd", mask: `0x${mask.trim()}`, flags: f.flags };
}
