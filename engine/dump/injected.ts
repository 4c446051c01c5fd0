/**
 * State that only the process itself can report, read by injecting
 * syscalls into its stopped threads: signal actions, interval timers, the
 * program break, per-thread sigaltstack and clear_child_tid.
 *
 * Results land in a scratch page: preferably the free stack space of the
 * main thread below its red zone (saved and put back afterwards), so that a
 * cryo killed half-way leaves no mapping behind (the area below the red zone
 * is free by the ABI: a signal handler may overwrite it at any time);
 * otherwise a page mapped for the purpose and unmapped again before the
 * memory is read, so it never appears in the image.
 *
 * Injection is crash-safe where the target allows it (ffi/safe_inject.ts):
 * a cryo killed at any instant leaves every thread to resume in its own
 * state; a change an injected syscall makes can be paired with its undo
 * ({@link InjectionSession.withUndo}).
 *
 * @module
 */

import { findSyscallInstruction, injectSyscall, returnToInterruptStop } from "../../ffi/inject.ts";
import { processVmReadFully, processVmWriteFully } from "../../ffi/process_vm.ts";
import { itimerval, kernelSigaction, stackT } from "../../ffi/structs.ts";
import { SYS } from "../../ffi/sysno.ts";
import { errnoName } from "../../ffi/errno.ts";
import type { ITimer, SigAction } from "../model.ts";
import { CryoError } from "../errors.ts";
import { getRegs, xsaveSize } from "../../ffi/ptrace.ts";
import { CrashSafeThread, findSafeSites, type SafeSites } from "../../ffi/safe_inject.ts";
import { type MapEntry, readMaps } from "../proc/maps.ts";
import { pausePoint } from "../pause.ts";

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** Per-thread results of {@link queryInjectedState}. */
export interface InjectedThreadState {
  sigaltstack: { sp: string; flags: number; size: number };
  clearChildTid: string;
}

/** Process-wide results of {@link queryInjectedState}. */
export interface InjectedState {
  /** The current program break (brk(0)); /proc only shows where the heap starts. */
  brk: bigint;
  sigactions: SigAction[];
  itimers: { real: ITimer; virtual: ITimer; prof: ITimer };
  threads: Map<number, InjectedThreadState>;
}

/** Size of the scratch area mapped in the target for injected syscalls' results. */
export const SCRATCH_BYTES = 4096;

/**
 * An injection session on a stopped process: a syscall site and a scratch
 * page mapped in the target (results are read back from it). Open it with
 * {@link withInjection}, which unmaps the page again whatever happens.
 *
 * Threads are injected into crash-safely (ffi/safe_inject.ts) when the
 * target has the code sequences it needs and the thread has room below its
 * stack pointer; otherwise by the plain protocol (ffi/inject.ts), whose
 * window inside one syscall is not safe against a killed cryo.
 */
export class InjectionSession {
  /** The process. */
  readonly pid: number;
  /** Address of a `syscall` instruction in the target. */
  readonly site: bigint;
  /** Address of the scratch page in the target. */
  scratch = 0n;
  /** Code sequences for crash-safe injection, if the target has them. */
  readonly safeSites: SafeSites | undefined;
  /** Threads opened for crash-safe injection (undefined: plain protocol). */
  readonly #threads = new Map<number, CrashSafeThread | undefined>();
  /** The process's mappings, read once for every thread's stack. */
  #maps: MapEntry[] | undefined;
  /** The thread whose registers are the injected ones, if any. */
  #current: CrashSafeThread | undefined;
  /** Where the main thread's area goes (chosen with the scratch space), if on its stack. */
  mainArea: bigint | undefined;
  constructor(pid: number) {
    this.pid = pid;
    this.site = findSyscallInstruction(pid);
    this.safeSites = findSafeSites(pid);
  }

  #thread(tid: number): CrashSafeThread | undefined {
    if (this.#threads.has(tid)) return this.#threads.get(tid);
    this.#threads.set(tid, undefined);
    if (!this.safeSites) return undefined;
    this.#current?.close();
    this.#current = undefined;
    const t = CrashSafeThread.open(
      tid,
      this.safeSites,
      (rsp, bytes) =>
        tid === this.pid
          ? this.mainArea
          : areaBelow(tid, rsp, bytes, 0, this.#maps ??= readMaps(this.pid)),
      pausePoint,
    );
    this.#threads.set(tid, t);
    this.#current = t;
    return t;
  }

  /** Runs syscall `nr` in thread `tid`; returns the raw result (-errno on failure). */
  call(tid: number, nr: number, ...args: (number | bigint)[]): bigint {
    pausePoint("inject");
    const t = this.#thread(tid);
    if (t) {
      if (this.#current !== t) {
        this.#current?.close();
        this.#current = t;
      }
      return t.call(nr, ...args);
    }
    this.#current?.close();
    this.#current = undefined;
    let r: bigint;
    try {
      r = injectSyscall(tid, this.site, nr, ...args);
    } catch (e) {
      try {
        returnToInterruptStop(tid);
      } catch { /* gone: report the first failure */ }
      throw e;
    }
    // Between two calls the thread waits where a killed cryo leaves it intact.
    returnToInterruptStop(tid);
    return r;
  }

  /**
   * Runs `fn` (injected syscalls in thread `tid` that make a change) such
   * that a cryo killed meanwhile leaves the thread to run syscall `undo`
   * (`args`) first when it goes on; then runs `undo` itself. `undo` must be
   * harmless if the change was not made. Crash-safe only where the thread is
   * (see the class doc).
   */
  withUndo<T>(tid: number, undo: [number, ...(number | bigint)[]], fn: () => T): T {
    pausePoint("inject");
    const t = this.#thread(tid);
    if (t && this.#current !== t) {
      this.#current?.close();
      this.#current = t;
    }
    t?.armUndo(...undo);
    try {
      return fn();
    } finally {
      t?.disarmUndo();
      this.call(tid, ...undo);
    }
  }

  /** Takes every thread back to its own registers and mask, and puts the stack areas back. */
  close(): void {
    let first: unknown;
    const c = this.#current;
    this.#current = undefined;
    try {
      c?.close();
    } catch (e) {
      first = e;
    }
    for (const t of this.#threads.values()) {
      try {
        t?.restoreArea();
      } catch (e) {
        first ??= e;
      }
    }
    if (first) throw first;
  }

  /** Like {@link call}, but throws a CryoError naming `what` on failure. */
  check(tid: number, what: string, nr: number, ...args: (number | bigint)[]): bigint {
    const r = this.call(tid, nr, ...args);
    if (r < 0n) {
      throw new CryoError(
        `process ${this.pid}: ${what} in the target failed: ${errnoName(Number(-r))}`,
      );
    }
    return r;
  }

  /** Reads `length` bytes of the scratch page from `offset`. */
  read(offset: number, length: number): Uint8Array {
    const buf = new Uint8Array(length);
    processVmReadFully(this.pid, this.scratch + BigInt(offset), buf);
    return buf;
  }

  /** Writes `bytes` into the scratch page at `offset` (arguments for a syscall). */
  write(offset: number, bytes: Uint8Array): void {
    processVmWriteFully(this.pid, this.scratch + BigInt(offset), bytes);
  }
}

/**
 * Opens an injection session on the stopped process `pid`, runs `fn`, and
 * puts the threads and the scratch space back (also when `fn` throws).
 */
export function withInjection<T>(pid: number, fn: (s: InjectionSession) => T): T {
  const s = new InjectionSession(pid);
  const rsp = getRegs(pid).rsp;
  const areaBytes = s.safeSites ? CrashSafeThread.bytesFor(xsaveSize(pid)) : 0;
  const area = areaBelow(pid, rsp, areaBytes, SCRATCH_BYTES);
  if (area !== undefined) {
    const stack = area - BigInt(SCRATCH_BYTES);
    if (areaBytes) s.mainArea = area;
    const saved = new Uint8Array(SCRATCH_BYTES);
    processVmReadFully(pid, stack, saved);
    s.scratch = stack;
    pausePoint("scratch");
    let result: T;
    try {
      result = fn(s);
    } catch (e) {
      // Put everything back as far as possible; report the first failure.
      try {
        s.close();
      } catch { /* reported: e */ }
      try {
        processVmWriteFully(pid, stack, saved);
      } catch { /* reported: e */ }
      throw e;
    }
    try {
      s.close();
    } finally {
      processVmWriteFully(pid, stack, saved);
    }
    return result;
  }
  s.scratch = s.check(pid, "mmap(scratch)", SYS.mmap, 0, SCRATCH_BYTES, 3, 0x22, -1, 0);
  pausePoint("scratch");
  try {
    return fn(s);
  } finally {
    try {
      s.call(pid, SYS.munmap, s.scratch, SCRATCH_BYTES);
    } finally {
      s.close();
    }
  }
}

/** Bytes below the stack pointer the ABI reserves (the red zone), plus a margin. */
const RED_ZONE = 128n + 256n;

/**
 * Where `bytes` (64-byte aligned) fit in the free stack space of stopped
 * thread `tid` below its red zone, with `below` more bytes under them, if
 * all of that lies in the same writable mapping as its stack pointer `rsp`.
 */
export function areaBelow(
  tid: number,
  rsp: bigint,
  bytes: number,
  below: number,
  maps: readonly MapEntry[] = readMaps(tid),
): bigint | undefined {
  const area = (rsp - RED_ZONE - BigInt(bytes)) & ~63n;
  const low = area - BigInt(below);
  const vma = maps.find((m) => m.start <= rsp && rsp < m.end);
  if (!vma || vma.perms[0] !== "r" || vma.perms[1] !== "w" || low < vma.start) return undefined;
  return area;
}

function timer(bytes: Uint8Array): ITimer {
  const t = itimerval.decode(bytes);
  return {
    intervalUs: Number(t.intervalSec) * 1e6 + Number(t.intervalUsec),
    valueUs: Number(t.valueSec) * 1e6 + Number(t.valueUsec),
  };
}

/** Reads sigactions, itimers, and each thread's sigaltstack and clear_child_tid. */
export function queryInjectedState(s: InjectionSession, tids: readonly number[]): InjectedState {
  const main = s.pid;
  const sigactions: SigAction[] = [];
  for (let sig = 1; sig <= 64; sig++) {
    const r = s.call(main, SYS.rt_sigaction, sig, 0, s.scratch, 8);
    if (r < 0n) {
      // 32 and 33 are reserved by glibc but valid for the kernel; EINVAL means no such signal.
      sigactions.push({ handler: "0x0", flags: "0x0", restorer: "0x0", mask: "0x0" });
      continue;
    }
    const a = kernelSigaction.decode(s.read(0, kernelSigaction.size));
    sigactions.push({
      handler: hex(a.handler),
      flags: hex(a.flags),
      restorer: hex(a.restorer),
      mask: hex(a.mask),
    });
  }
  const timers: ITimer[] = [];
  for (const which of [0, 1, 2]) {
    s.check(main, "getitimer", SYS.getitimer, which, s.scratch);
    timers.push(timer(s.read(0, itimerval.size)));
  }
  const threads = new Map<number, InjectedThreadState>();
  for (const tid of tids) {
    s.check(tid, "sigaltstack", SYS.sigaltstack, 0, s.scratch);
    const st = stackT.decode(s.read(0, stackT.size));
    s.check(tid, "prctl(PR_GET_TID_ADDRESS)", SYS.prctl, 40, s.scratch + 64n);
    const tidAddr = new DataView(s.read(64, 8).buffer).getBigUint64(0, true);
    threads.set(tid, {
      sigaltstack: { sp: hex(st.sp), flags: st.flags, size: Number(st.size) },
      clearChildTid: hex(tidAddr),
    });
  }
  return {
    brk: BigInt.asUintN(64, s.call(main, SYS.brk, 0)),
    sigactions,
    itimers: { real: timers[0], virtual: timers[1], prof: timers[2] },
    threads,
  };
}
