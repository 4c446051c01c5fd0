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
import {
  batchResults,
  type BatchStep,
  type BatchStop,
  batchTableBytes,
  encodeBatchTable,
  installBatchCode,
} from "../../ffi/syscall_batch.ts";
import { largestGap, type MapEntry, mappingAround, mappingAt } from "../proc/maps.ts";
import { readStatus } from "../proc/status.ts";
import { pausePoint } from "../pause.ts";

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** Per-thread results of {@link queryInjectedState}. */
export interface InjectedThreadState {
  sigaltstack: { sp: string; flags: number; size: number };
  clearChildTid: string;
  /** PR_GET_PDEATHSIG, read in the same chain (engine/task/attrs.ts uses it). */
  pdeathsig: number;
  /** PR_GET_SECUREBITS, read in the same visit (engine/task/creds.ts uses it). */
  securebits: number;
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
  /** The thread whose registers are the injected ones, if any. */
  #current: CrashSafeThread | undefined;
  /** Where the main thread's area goes (chosen with the scratch space), if on its stack. */
  mainArea: bigint | undefined;
  /** The page holding the batch code while mapped, and the thread whose undo unmaps it. */
  #batchPage: { at: bigint; owner: CrashSafeThread } | undefined;
  /** The process's mappings read at this freeze before the session, if the caller has them. */
  areas: readonly MapEntry[] | undefined;
  /** Where the batch page goes (a free address, found once). */
  #batchAt: bigint | undefined;
  /** Stack bytes batch tables overwrote (thread, address, former content), put back on close. */
  readonly #chainSaved: { tid: number; at: bigint; bytes: Uint8Array }[] = [];
  constructor(pid: number) {
    this.pid = pid;
    // One read of the maps text for both (thousands of lines with many mappings).
    const maps = Deno.readTextFileSync(`/proc/${pid}/maps`);
    this.site = findSyscallInstruction(pid, undefined, maps);
    this.safeSites = findSafeSites(pid, maps);
  }

  /** Opens thread `tid` once; `keepCurrent`: the current thread stays injected meanwhile. */
  #thread(tid: number, keepCurrent = false): CrashSafeThread | undefined {
    if (this.#threads.has(tid)) return this.#threads.get(tid);
    this.#threads.set(tid, undefined);
    if (!this.safeSites) return undefined;
    if (!keepCurrent) {
      this.#current?.close();
      this.#current = undefined;
    }
    const t = CrashSafeThread.open(
      tid,
      this.safeSites,
      (rsp, bytes) => tid === this.pid ? this.mainArea : areaBelow(tid, rsp, bytes, 0),
      pausePoint,
    );
    this.#threads.set(tid, t);
    if (!keepCurrent) this.#current = t;
    return t;
  }

  /** Runs syscall `nr` in thread `tid`; returns the raw result (-errno on failure). */
  call(tid: number, nr: number, ...args: (number | bigint)[]): bigint {
    if (this.#batchPage && this.#batchPage.owner.tid !== tid) this.endBatches();
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
    this.endBatches();
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

  /**
   * Runs `steps` in thread `tid` and returns their raw results (-errno on
   * failure): all in one resume (ffi/syscall_batch.ts) when the thread is
   * injected into crash-safely, has room for the table below its area and
   * a quiet signal to end the batch with; otherwise one injected syscall
   * after the other. The batch's code lives in a page mapped at a free
   * address for the batch only, with its munmap armed as undo: a cryo killed
   * at any instant leaves no trace of it.
   */
  calls(tid: number, steps: readonly BatchStep[]): bigint[] {
    const one = () => {
      this.endBatches();
      return steps.map((s) => this.call(tid, s.nr, ...s.args));
    };
    if (steps.length < MIN_BATCH) return one();
    pausePoint("inject");
    const t = this.#thread(tid, true);
    const stop = t && batchStop(this.pid, tid, t.mask);
    const table = stop && this.#tableArea(t, batchTableBytes(steps.length));
    if (!t || !stop || table === undefined) return one();
    const code = this.#batchCode(t);
    if (code === undefined) return one();
    processVmWriteFully(this.pid, table, encodeBatchTable(table, steps, stop));
    t.runBatch(code, table, stop.signal);
    const out = new Uint8Array(steps.length * 64);
    processVmReadFully(this.pid, table, out);
    return batchResults(out, steps.length);
  }

  /**
   * Makes `t` the current thread with the batch page mapped and its munmap
   * armed as `t`'s undo (only the thread that runs the code may hold it: an
   * undo run by another thread could unmap the code under it); maps the
   * page (from `t`) the first time. Undefined when the page cannot be mapped.
   */
  #batchCode(t: CrashSafeThread): bigint | undefined {
    const page = this.#batchPage;
    if (page && page.owner === t) return page.at;
    if (page) {
      // Hand the undo over: `t` holds it before the former owner lets it go.
      t.armUndo(SYS.munmap, page.at, PAGE);
      t.park();
      const old = page.owner;
      page.owner = t;
      old.disarmUndo();
      if (this.#current === old) this.#current = undefined;
      old.close();
      this.#current = t;
      return page.at;
    }
    if (this.#current !== t) {
      this.#current?.close();
      this.#current = t;
    }
    const at = this.#batchAt ??= freePage(this.pid, this.areas) ?? 0n;
    if (at === 0n) return undefined;
    t.armUndo(SYS.munmap, at, PAGE);
    let r: bigint;
    try {
      r = this.call(t.tid, SYS.mmap, at, PAGE, PROT_READ | PROT_EXEC, MAP_BATCH, -1, 0);
    } catch (e) {
      t.disarmUndo();
      this.call(t.tid, SYS.munmap, at, PAGE);
      throw e;
    }
    if (r !== at) {
      t.disarmUndo(); // an error mapped nothing (EEXIST: the page there is not ours)
      if (r >= 0n) this.call(t.tid, SYS.munmap, r, PAGE);
      this.#batchAt = 0n;
      return undefined;
    }
    this.#batchPage = { at, owner: t };
    installBatchCode(this.pid, at);
    return at;
  }

  /** Unmaps the batch page, if mapped (from the thread holding its undo). */
  endBatches(): void {
    const page = this.#batchPage;
    if (!page) return;
    this.#batchPage = undefined;
    page.owner.disarmUndo();
    this.#current = page.owner;
    this.call(page.owner.tid, SYS.munmap, page.at, PAGE);
  }

  /** Where `bytes` fit below the area of thread `t` in its stack mapping (saved first). */
  #tableArea(t: CrashSafeThread, bytes: number): bigint | undefined {
    const top = t.tid === this.pid && this.scratch !== 0n && this.scratch < t.area
      ? this.scratch
      : t.area;
    const at = (top - BigInt(bytes)) & ~63n;
    const vma = mappingAround(this.pid, top);
    if (!vma || at < vma.start || vma.perms[0] !== "r" || vma.perms[1] !== "w") return undefined;
    const saved = new Uint8Array(Number(top - at));
    processVmReadFully(t.tid, at, saved);
    this.#chainSaved.push({ tid: t.tid, at, bytes: saved });
    return at;
  }

  /** Takes every thread back to its own registers and mask, and puts the stack areas back. */
  close(): void {
    let first: unknown;
    try {
      this.endBatches();
    } catch (e) {
      first = e;
    }
    const c = this.#current;
    this.#current = undefined;
    try {
      c?.close();
    } catch (e) {
      first = e;
    }
    for (const c of this.#chainSaved.splice(0).reverse()) {
      try {
        processVmWriteFully(c.tid, c.at, c.bytes);
      } catch (e) {
        first ??= e;
      }
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
export function withInjection<T>(
  pid: number,
  fn: (s: InjectionSession) => T,
  /** The process's mappings read at this freeze, if the caller has them ({@link InjectionSession.areas}). */
  areas?: readonly MapEntry[],
): T {
  const s = new InjectionSession(pid);
  s.areas = areas;
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
  maps?: readonly MapEntry[],
): bigint | undefined {
  const area = (rsp - RED_ZONE - BigInt(bytes)) & ~63n;
  const low = area - BigInt(below);
  const vma = maps ? maps.find((m) => m.start <= rsp && rsp < m.end) : mappingAt(tid, rsp);
  if (!vma || vma.perms[0] !== "r" || vma.perms[1] !== "w" || low < vma.start) return undefined;
  return area;
}

/** Signals whose default action is to ignore them: SIGURG, SIGWINCH, SIGCHLD. */
const QUIET_SIGNALS = [23, 28, 17];

/** Fewer syscalls than this are injected one by one (a batch costs three round trips). */
const MIN_BATCH = 4;
const PAGE = 4096;
const PROT_READ = 1;
const PROT_EXEC = 4;
/** MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE. */
const MAP_BATCH = 0x02 | 0x20 | 0x100000;

/**
 * A page-aligned address in the middle of the largest gap between two
 * mappings of `pid` (read from the maps text without parsing the rest of
 * each line), or undefined.
 */
function freePage(pid: number, known?: readonly MapEntry[]): bigint | undefined {
  const { start, size } = largestGap(pid, known);
  if (size < 3n * BigInt(PAGE)) return undefined;
  return (start + size / 2n) & ~BigInt(PAGE - 1);
}

/**
 * A signal to end a batch in thread `tid` with: its action is the default
 * (ignore), it is neither pending nor blocked by the thread's own mask
 * `mask` (so the stop takes nothing the thread would have seen), with the
 * ids of the target's own pid namespace; undefined if there is none.
 */
function batchStop(pid: number, tid: number, mask: bigint): BatchStop | undefined {
  let st;
  try {
    st = readStatus(pid, tid);
  } catch {
    return undefined;
  }
  const busy = st.sigCgt | st.sigIgn | st.sigPnd | st.shdPnd | mask;
  const signal = QUIET_SIGNALS.find((s) => (busy & (1n << BigInt(s - 1))) === 0n);
  if (signal === undefined) return undefined;
  return {
    signal,
    tgid: st.nstgid.at(-1) ?? pid,
    tid: st.nspid.at(-1) ?? tid,
  };
}

function timer(bytes: Uint8Array): ITimer {
  const t = itimerval.decode(bytes);
  return {
    intervalUs: Number(t.intervalSec) * 1e6 + Number(t.intervalUsec),
    valueUs: Number(t.valueSec) * 1e6 + Number(t.valueUsec),
  };
}

/** Where {@link queryInjectedState} has the kernel write its results in the scratch page. */
const AT = {
  sigactions: 0, // 64 x kernel sigaction (32 bytes)
  itimers: 64 * 32, // 3 x itimerval (32 bytes)
  altstack: 64 * 32 + 3 * 32, // stack_t (24 bytes)
  tidAddress: 64 * 32 + 3 * 32 + 32, // 8 bytes
  pdeathsig: 64 * 32 + 3 * 32 + 40, // int
  end: 64 * 32 + 3 * 32 + 48,
} as const;

/**
 * Reads sigactions, itimers, the program break, and each thread's
 * sigaltstack, clear_child_tid, parent-death signal and securebits: the
 * syscalls of each thread in one batch ({@link InjectionSession.calls}).
 */
export function queryInjectedState(s: InjectionSession, tids: readonly number[]): InjectedState {
  const main = s.pid;
  const sc = s.scratch;
  const threadSteps: BatchStep[] = [
    { nr: SYS.sigaltstack, args: [0, sc + BigInt(AT.altstack)] },
    { nr: SYS.prctl, args: [PR_GET_TID_ADDRESS, sc + BigInt(AT.tidAddress)] },
    { nr: SYS.prctl, args: [PR_GET_PDEATHSIG, sc + BigInt(AT.pdeathsig)] },
    { nr: SYS.prctl, args: [PR_GET_SECUREBITS] },
  ];
  const names = ["sigaltstack", "prctl(PR_GET_TID_ADDRESS)", "prctl(PR_GET_PDEATHSIG)"];
  const threads = new Map<number, InjectedThreadState>();
  const visit = (tid: number, first: BatchStep[]) => {
    const r = s.calls(tid, [...first, ...threadSteps]);
    const own = r.slice(first.length);
    own.forEach((v, i) => {
      if (v < 0n) {
        const what = names[i] ?? "prctl(PR_GET_SECUREBITS)";
        throw new CryoError(
          `process ${s.pid}: ${what} in the target failed: ${errnoName(Number(-v))}`,
        );
      }
    });
    const out = s.read(0, AT.end);
    const dv = new DataView(out.buffer);
    const st = stackT.decode(out.subarray(AT.altstack, AT.altstack + stackT.size));
    threads.set(tid, {
      sigaltstack: { sp: hex(st.sp), flags: st.flags, size: Number(st.size) },
      clearChildTid: hex(dv.getBigUint64(AT.tidAddress, true)),
      pdeathsig: dv.getInt32(AT.pdeathsig, true),
      securebits: Number(own[3]),
    });
    return { r: r.slice(0, first.length), out };
  };
  // The main thread first: the process-wide queries go into its batch.
  const processSteps: BatchStep[] = [];
  for (let sig = 1; sig <= 64; sig++) {
    processSteps.push({
      nr: SYS.rt_sigaction,
      args: [sig, 0, sc + BigInt(AT.sigactions + (sig - 1) * 32), 8],
    });
  }
  for (const which of [0, 1, 2]) {
    processSteps.push({ nr: SYS.getitimer, args: [which, sc + BigInt(AT.itimers + which * 32)] });
  }
  processSteps.push({ nr: SYS.brk, args: [0] });
  const { r, out } = visit(main, processSteps);
  const sigactions: SigAction[] = [];
  for (let sig = 1; sig <= 64; sig++) {
    if (r[sig - 1] < 0n) {
      // 32 and 33 are reserved by glibc but valid for the kernel; EINVAL means no such signal.
      sigactions.push({ handler: "0x0", flags: "0x0", restorer: "0x0", mask: "0x0" });
      continue;
    }
    const at = AT.sigactions + (sig - 1) * 32;
    const a = kernelSigaction.decode(out.slice(at, at + kernelSigaction.size));
    sigactions.push({
      handler: hex(a.handler),
      flags: hex(a.flags),
      restorer: hex(a.restorer),
      mask: hex(a.mask),
    });
  }
  const timers: ITimer[] = [];
  for (const which of [0, 1, 2]) {
    const v = r[64 + which];
    if (v < 0n) {
      throw new CryoError(
        `process ${s.pid}: getitimer in the target failed: ${errnoName(Number(-v))}`,
      );
    }
    const at = AT.itimers + which * 32;
    timers.push(timer(out.slice(at, at + itimerval.size)));
  }
  for (const tid of tids) if (tid !== main) visit(tid, []);
  s.endBatches();
  return {
    brk: BigInt.asUintN(64, r[67]),
    sigactions,
    itimers: { real: timers[0], virtual: timers[1], prof: timers[2] },
    threads,
  };
}

const PR_GET_PDEATHSIG = 2;
const PR_GET_SECUREBITS = 27;
const PR_GET_TID_ADDRESS = 40;
