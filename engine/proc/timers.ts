/**
 * Reader of /proc/<pid>/timers: the POSIX timers (timer_create) of a
 * process, one block of four lines each:
 *
 * ```
 * ID: 3
 * signal: 35/0000000000001234        (signal number / sigev_value)
 * notify: signal/tid.4242            (kind / pid or tid it is sent to)
 * ClockID: 1
 * ```
 *
 * @module
 */

import { ProcFormatError } from "./errors.ts";
import { procPath, readProcText } from "./io.ts";

/** sigev_notify values. */
export const SIGEV = { SIGNAL: 0, NONE: 1, THREAD: 2, THREAD_ID: 4 } as const;

/** One POSIX timer as /proc/<pid>/timers shows it. */
export interface ProcTimer {
  /** The timer id timer_create returned. */
  id: number;
  /** Signal sent on expiry. */
  signo: number;
  /** sigev_value (as the pointer view of the union). */
  value: bigint;
  /** sigev_notify (SIGEV_* values, SIGEV_THREAD_ID included). */
  notify: number;
  /** Pid (or, with SIGEV_THREAD_ID, tid) the signal goes to; 0 if it has exited. */
  target: number;
  /** Clock id as stored by the kernel (CPU clocks encoded, see {@link decodeCpuClock}). */
  clockid: number;
}

const NOTIFY_KINDS: Record<string, number> = {
  signal: SIGEV.SIGNAL,
  none: SIGEV.NONE,
  thread: SIGEV.THREAD,
};

/** Parses the text of /proc/<pid>/timers. */
export function parseTimers(text: string, pid = 0, path = "timers"): ProcTimer[] {
  const out: ProcTimer[] = [];
  const blocks = text.split(/^(?=ID:)/m).filter((b) => b.trim() !== "");
  for (const block of blocks) {
    const m = block.match(
      /^ID:\s*(-?\d+)\s*\nsignal:\s*(\d+)\/([0-9a-f]+)\s*\nnotify:\s*(\w+)\/(pid|tid)\.(\d*)\s*\nClockID:\s*(-?\d+)/,
    );
    const kind = m ? NOTIFY_KINDS[m[4]] : undefined;
    if (!m || kind === undefined) {
      throw new ProcFormatError(pid, path, `unreadable timer: ${block.trim()}`);
    }
    out.push({
      id: Number(m[1]),
      signo: Number(m[2]),
      value: BigInt(`0x${m[3]}`),
      notify: kind | (m[5] === "tid" ? SIGEV.THREAD_ID : 0),
      target: Number(m[6] || 0),
      clockid: Number(m[7]),
    });
  }
  return out.sort((a, b) => a.id - b.id);
}

/** Reads /proc/<pid>/timers (empty when the process has no POSIX timer). */
export function readTimers(pid: number): ProcTimer[] {
  return parseTimers(readProcText(pid, "timers"), pid, procPath(pid, "timers"));
}

/** What a CPU-time clock id (a negative one) measures. */
export interface CpuClock {
  /** Pid, or tid when `thread`; 0 = the caller of timer_create. */
  pid: number;
  /** Per-thread clock (else the whole process). */
  thread: boolean;
  /** 0 PROF, 1 VIRT, 2 SCHED. */
  which: number;
}

/** Decodes a CPU-time clock id (MAKE_PROCESS_CPUCLOCK / MAKE_THREAD_CPUCLOCK), or undefined. */
export function decodeCpuClock(clockid: number): CpuClock | undefined {
  if (clockid >= 0) return undefined;
  return { pid: ~(clockid >> 3), thread: (clockid & 4) !== 0, which: clockid & 3 };
}
