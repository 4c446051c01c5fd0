/**
 * Timers that live in the kernel on behalf of a process: its POSIX timers
 * (timer_create) and the pending expirations of its timerfds.
 *
 * At dump, inside the frozen target (an injection session):
 * - every timerfd is read with timerfd_gettime, which moves a periodic
 *   timer that expired past its missed periods and adds them to its ticks
 *   (what a read() would see), so its fdinfo then shows the next expiry
 *   and every pending expiration;
 * - every POSIX timer of /proc/<pid>/timers is read with timer_gettime and
 *   timer_getoverrun; the signal it queued and that is still pending is
 *   taken out of the pending signals ({@link takeTimerSignals}).
 *
 * At restore ({@link emitPosixTimers}) each timer is created again with
 * its own id (prctl PR_TIMER_CREATE_RESTORE_IDS: timer_create reads the id
 * from its timer_t argument), clock, notification, signal and value, and
 * armed with the time it had left; a timer whose signal was pending
 * expires again at once, so the kernel queues its own signal.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { itimerspec, sigevent } from "../../ffi/structs.ts";
import {
  PR_TIMER_CREATE_RESTORE_IDS,
  TIMER_RESTORE_IDS,
  timerRestoreIdsProbe,
} from "../../ffi/probe.ts";
import { errnoName } from "../../ffi/errno.ts";
import type { PosixTimer, ProcessImage, SigInfoRecord } from "../model.ts";
import type { Refusals } from "../support.ts";
import type { InjectionSession } from "../dump/injected.ts";
import type { ProcFd } from "../proc/fds.ts";
import { readFdInfo, timerfdState } from "../proc/fdinfo.ts";
import { decodeCpuClock, readTimers, SIGEV } from "../proc/timers.ts";
import { decodeBase64 } from "../base64.ts";
import type { ProgramBuilder } from "../program/builder.ts";

const hex = (v: bigint) => `0x${v.toString(16)}`;
const SI_TIMER = -2;

/** Clock names for plans (CPU-time clocks are described by what they measure). */
export function clockName(clockid: number): string {
  const cpu = decodeCpuClock(clockid);
  if (cpu) {
    const which = ["prof", "virt", "sched"][cpu.which] ?? `${cpu.which}`;
    if (cpu.pid === 0) {
      return cpu.thread ? "CLOCK_THREAD_CPUTIME_ID" : "CLOCK_PROCESS_CPUTIME_ID";
    }
    return `${cpu.thread ? "thread" : "process"} ${cpu.pid} CPU clock (${which})`;
  }
  return [
    "CLOCK_REALTIME",
    "CLOCK_MONOTONIC",
    "CLOCK_PROCESS_CPUTIME_ID",
    "CLOCK_THREAD_CPUTIME_ID",
    "CLOCK_MONOTONIC_RAW",
    "CLOCK_REALTIME_COARSE",
    "CLOCK_MONOTONIC_COARSE",
    "CLOCK_BOOTTIME",
    "CLOCK_REALTIME_ALARM",
    "CLOCK_BOOTTIME_ALARM",
    "clock 10",
    "CLOCK_TAI",
  ][clockid] ?? `clock ${clockid}`;
}

/**
 * Brings every timerfd of `fds` up to date inside the frozen target (see
 * the module doc) and replaces its `info` with the fdinfo read afterwards.
 */
function refreshTimerfds(s: InjectionSession, fds: ProcFd[]): void {
  for (const f of fds) {
    if (f.kind !== "timerfd") continue;
    for (let round = 0; round < 8; round++) {
      s.check(s.pid, `timerfd_gettime(fd ${f.fd})`, SYS.timerfd_gettime, f.fd, s.scratch);
      f.info = readFdInfo(s.pid, f.fd);
      const st = timerfdState(f.info);
      // Expired again between the two reads: not yet moved past its periods.
      if (!st || !(st.valueNs === 0n && st.intervalNs > 0n && st.ticks > 0n)) break;
    }
  }
}

function pair(sec: bigint, nsec: bigint): [number, number] {
  return [Number(sec), Number(nsec)];
}

/** Why a timer cannot be tied to the same thread or process after restore, or undefined. */
function unnamedTarget(t: PosixTimer, pid: number, tids: readonly number[]): string | undefined {
  const cpu = decodeCpuClock(t.clockid);
  if (cpu?.thread && cpu.pid === 0 && tids.length > 1) {
    return "it runs on the CPU clock of the thread that created it, and /proc does not say which thread of this multi-threaded process that is";
  }
  if (cpu?.thread && cpu.pid !== 0 && !tids.includes(cpu.pid)) {
    return `it runs on the CPU clock of thread ${cpu.pid}, which is not a thread of this process`;
  }
  if (cpu && !cpu.thread && cpu.pid !== 0 && cpu.pid !== pid) {
    return `it runs on the CPU clock of process ${cpu.pid}`;
  }
  if ((t.notify & SIGEV.THREAD_ID) && !tids.includes(t.tid)) {
    return `its signal goes to thread ${
      t.tid || "(exited)"
    }, which is not a thread of this process`;
  }
  return undefined;
}

/**
 * Collects the POSIX timers of the frozen process `s.pid` (threads `tids`)
 * and brings its timerfds in `fds` up to date (their `info` is replaced).
 * Reports what cannot come back to `refusals`.
 */
export function collectTimers(
  s: InjectionSession,
  tids: readonly number[],
  fds: ProcFd[],
  refusals: Refusals,
): PosixTimer[] {
  refreshTimerfds(s, fds);
  const pid = s.pid;
  const timers: PosixTimer[] = [];
  for (const k of readTimers(pid)) {
    s.check(pid, `timer_gettime(${k.id})`, SYS.timer_gettime, k.id, s.scratch);
    const spec = itimerspec.decode(s.read(0, itimerspec.size));
    const overrun = s.check(pid, `timer_getoverrun(${k.id})`, SYS.timer_getoverrun, k.id);
    const t: PosixTimer = {
      id: k.id,
      clockid: k.clockid,
      notify: k.notify,
      signo: k.signo,
      sigevValue: hex(k.value),
      tid: k.notify & SIGEV.THREAD_ID ? k.target : 0,
      value: pair(spec.valueSec, spec.valueNsec),
      interval: pair(spec.intervalSec, spec.intervalNsec),
      signalPending: false,
    };
    const where = `process ${pid} POSIX timer ${k.id} (${clockName(k.clockid)})`;
    refusals.use("task.posix-timers", where);
    if (overrun > 0n) {
      refusals.use("task.posix-timer-overrun", where, `timer_getoverrun() reads ${overrun}`);
    }
    const why = unnamedTarget(t, pid, tids);
    if (why) refusals.use("task.posix-timer-unnamed", where, why);
    timers.push(t);
  }
  if (timers.length) {
    const r = timerRestoreIdsProbe();
    if (r < 0n) {
      refusals.add(
        `process ${pid}: its POSIX timers need prctl(PR_TIMER_CREATE_RESTORE_IDS) (Linux 6.14 or later) to come back with their ids: ${
          errnoName(Number(-r))
        }`,
      );
    }
  }
  return timers;
}

/**
 * Takes the signals queued by `timers` (si_code SI_TIMER with their id and
 * signal) out of the pending lists `lists` (changed in place) and marks
 * those timers `signalPending`: restore lets them expire again instead.
 */
export function takeTimerSignals(timers: PosixTimer[], lists: SigInfoRecord[][]): void {
  if (!timers.length) return;
  for (const list of lists) {
    for (let i = 0; i < list.length; i++) {
      const r = list[i];
      if (r.code !== SI_TIMER) continue;
      const raw = decodeBase64(r.raw);
      const timerId = new DataView(raw.buffer, raw.byteOffset).getInt32(16, true);
      const t = timers.find((x) => x.id === timerId && x.signo === r.signo && !x.signalPending);
      if (!t) continue;
      t.signalPending = true;
      list.splice(i--, 1);
    }
  }
}

function notifyText(t: PosixTimer): string {
  const kind = t.notify & ~SIGEV.THREAD_ID;
  if (kind === SIGEV.NONE) return "no notification";
  const to = t.notify & SIGEV.THREAD_ID ? `thread ${t.tid}` : "the process";
  return `signal ${t.signo} to ${to}${kind === SIGEV.THREAD ? " (SIGEV_THREAD)" : ""}`;
}

function timeText([sec, nsec]: [number, number]): string {
  return `${sec}.${String(nsec).padStart(9, "0")}s`;
}

/** One line about a timer (for `show`): id, clock, notification, value, times. */
export function describePosixTimer(t: PosixTimer): string {
  const times = t.value[0] || t.value[1]
    ? `${timeText(t.value)} left, interval ${timeText(t.interval)}`
    : "disarmed";
  return `${t.id}: ${clockName(t.clockid)}, ${notifyText(t)}, value ${t.sigevValue}, ${times}${
    t.signalPending ? ", signal pending" : ""
  }`;
}

/**
 * A syscall the engine injects into the process at the very end of the
 * restore, just before the tree runs (its arguments point into the
 * bootstrap, which is still mapped then).
 */
export interface DeferredSyscall {
  nr: number;
  args: bigint[];
  /** What it does, for errors and plans. */
  what: string;
}

/**
 * Emits the ops re-creating the POSIX timers of `proc` with their ids
 * (after the threads exist: a timer may name one); their arming goes to
 * `arm`, for the engine to inject just before the tree runs.
 */
export function emitPosixTimers(
  p: ProgramBuilder,
  proc: ProcessImage,
  arm: DeferredSyscall[],
): void {
  const timers = proc.posixTimers ?? [];
  if (!timers.length) return;
  p.op(SYS.prctl, [PR_TIMER_CREATE_RESTORE_IDS, TIMER_RESTORE_IDS.ON, 0, 0, 0], {
    comment: "timer_create takes the ids it is given",
  });
  for (const t of timers) {
    const ev = p.data(sigevent.encode({
      value: BigInt(t.sigevValue),
      signo: t.signo,
      notify: t.notify,
      tid: t.tid,
    }));
    const id = p.data(new Uint8Array(new Int32Array([t.id]).buffer), 4);
    p.op(SYS.timer_create, [t.clockid, ev, id], {
      comment: `POSIX timer ${t.id}: ${clockName(t.clockid)}, ${
        notifyText(t)
      }, value ${t.sigevValue}`,
    });
    const value: [number, number] = t.signalPending ? [0, 1] : t.value;
    if (value[0] === 0 && value[1] === 0) continue;
    const spec = itimerspec.encode({
      intervalSec: BigInt(t.interval[0]),
      intervalNsec: BigInt(t.interval[1]),
      valueSec: BigInt(value[0]),
      valueNsec: BigInt(value[1]),
    });
    // Armed by the engine just before the tree runs (see DeferredSyscall), so a
    // periodic timer does not expire again and again while the tree is still being
    // restored (its signal would arrive with overruns the program never had).
    arm.push({
      nr: SYS.timer_settime,
      args: [BigInt(t.id), 0n, p.data(spec), 0n],
      what: t.signalPending
        ? `timer ${t.id} expires at once (its signal was pending), interval ${timeText(t.interval)}`
        : `timer ${t.id}: ${timeText(value)} left, interval ${timeText(t.interval)}`,
    });
  }
  p.op(SYS.prctl, [PR_TIMER_CREATE_RESTORE_IDS, TIMER_RESTORE_IDS.OFF, 0, 0, 0], {
    comment: "timer_create picks ids again",
  });
}
