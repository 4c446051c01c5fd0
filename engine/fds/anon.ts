/**
 * Anonymous-inode fds that carry their whole state in fdinfo: eventfd
 * (counter), timerfd (clock, remaining time, interval), signalfd (mask).
 * Each is re-created with its syscall and the state put back.
 *
 * @module
 */

import type { FdInfo } from "../model.ts";
import { SYS } from "../../ffi/sysno.ts";
import { TFD_IOC_SET_TICKS } from "../../ffi/probe.ts";
import { clockNowNs } from "../../ffi/clock.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";
import { type FdSource, O_CLOEXEC, O_NONBLOCK } from "./types.ts";

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

/**
 * timerfd: clock, `it_value` (time left) and `it_interval` as (seconds,
 * nanoseconds), `ticks` (expirations not yet read) and `settime flags`.
 * Dump brought the fdinfo up to date first (engine/task/timers.ts), so a
 * periodic timer that expired shows its next expiry and every missed period
 * in its ticks.
 */
export function planTimerfd(f: FdInfo): FdSource | string {
  const value = pair(f.extra["it_value"]);
  const interval = pair(f.extra["it_interval"]);
  const clockid = Number(f.extra["clockid"]);
  const ticks = f.extra["ticks"]?.trim() ?? "0";
  const settimeFlags = parseInt(f.extra["settime flags"]?.trim() ?? "0", 8);
  if (!value || !interval || Number.isNaN(clockid) || !/^\d+$/.test(ticks)) {
    return "timerfd without readable state";
  }
  return { kind: "timerfd", clockid, flags: f.flags, value, interval, ticks, settimeFlags };
}

const TFD_TIMER_ABSTIME = 1;
const NS = 1_000_000_000n;

/** The clock an alarm clock reads like (REALTIME_ALARM, BOOTTIME_ALARM). */
function readableClock(clockid: number): number {
  return clockid === 8 ? 0 : clockid === 9 ? 7 : clockid;
}

/**
 * Emits the creation of a timerfd into `scratchSlot`: timerfd_create, then
 * timerfd_settime with the time it had left (an absolute timer keeps its
 * flags and is set to this clock's time now plus that time: like every
 * timer, time stops while in the image), then its pending expirations
 * (TFD_IOC_SET_TICKS; settime resets them).
 */
export function emitTimerfd(
  p: ProgramBuilder,
  s: Extract<FdSource, { kind: "timerfd" }>,
  scratchSlot: number,
): void {
  p.op(SYS.timerfd_create, [s.clockid, O_CLOEXEC | (s.flags & O_NONBLOCK)], {
    store: scratchSlot,
  });
  const flags = s.settimeFlags ?? 0;
  let value = [BigInt(s.value[0]), BigInt(s.value[1])];
  const armed = value[0] !== 0n || value[1] !== 0n;
  if (armed || flags !== 0 || s.interval[0] || s.interval[1]) {
    let note = armed ? `${s.value[0]}.${String(s.value[1]).padStart(9, "0")}s left` : "disarmed";
    if (armed && flags & TFD_TIMER_ABSTIME) {
      const at = clockNowNs(readableClock(s.clockid)) + value[0] * NS + value[1];
      value = [at / NS, at % NS];
      note += " (absolute: clock now + time left)";
    }
    const spec = p.u64s([s.interval[0], s.interval[1], value[0], value[1]]);
    p.op(SYS.timerfd_settime, [slot(scratchSlot), flags, spec, 0], {
      comment: `timerfd: ${note}, interval ${s.interval[0]}.${
        String(s.interval[1]).padStart(9, "0")
      }s`,
    });
  }
  const ticks = BigInt(s.ticks ?? "0");
  if (ticks > 0n) {
    p.op(SYS.ioctl, [slot(scratchSlot), TFD_IOC_SET_TICKS, p.u64s([ticks])], {
      comment: `timerfd: ${ticks} expirations not yet read`,
    });
  }
}

/** signalfd: `sigmask` (hex). */
export function planSignalfd(f: FdInfo): FdSource | string {
  const mask = f.extra["sigmask"];
  if (mask === undefined) return "signalfd without a readable mask";
  return { kind: "signalfd", mask: `0x${mask.trim()}`, flags: f.flags };
}
