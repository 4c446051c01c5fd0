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
import {
  processVmReadPieces,
  processVmWritePieces,
  type VmPiece,
} from "../../ffi/process_vm_pieces.ts";
import { itimerval, kernelSigaction, stackT } from "../../ffi/structs.ts";
import { SYS } from "../../ffi/sysno.ts";
import { SOL } from "../../ffi/net.ts";
import { TCP } from "../../ffi/tcp_repair.ts";
import { errnoName } from "../../ffi/errno.ts";
import type { ITimer, SigAction } from "../model.ts";
import { CryoError } from "../errors.ts";
import { MASK_BYTES, MAX_NODES, type MemPolicy, policyOf } from "../memory/mempolicy.ts";
import {
  processAttrsFrom,
  processAttrSteps,
  type ProcessAttrValues,
  SPECULATION_STEPS_AT,
} from "../task/attrs.ts";
import { mainSessionKeyring } from "../task/keyrings.ts";
import { getRegs, xsaveSize } from "../../ffi/ptrace.ts";
import type { UserRegs } from "../../ffi/regs.ts";
import {
  CrashSafeThread,
  findSafeSites,
  rememberedSites,
  type SafeSites,
} from "../../ffi/safe_inject.ts";
import {
  batchResults,
  type BatchStep,
  type BatchStop,
  batchTableBytes,
  encodeBatchTable,
  installBatchCode,
} from "../../ffi/syscall_batch.ts";
import {
  executableMapsText,
  largestGap,
  type MapEntry,
  mappingAt,
  withExecAreaQuery,
} from "../proc/maps.ts";
import { type ProcStatus, readStatus, usesShadowStack } from "../proc/status.ts";
import { pausePoint } from "../pause.ts";
import {
  type BpfThreadStates,
  bpfThreadStates,
  checkThreadStates,
  type IteratorMlockFuture,
  mlockFutureOf,
  takeThreadStates,
  threadStatePaths,
} from "./thread_state.ts";

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** Per-thread results of {@link queryInjectedState}. */
export interface InjectedThreadState {
  sigaltstack: { sp: string; flags: number; size: number };
  clearChildTid: string;
  /** PR_GET_PDEATHSIG, read in the same chain (engine/task/attrs.ts uses it). */
  pdeathsig: number;
  /** PR_GET_SECUREBITS, read in the same visit (engine/task/creds.ts uses it). */
  securebits: number;
  /** PR_GET_TIMERSLACK, read in the same visit (engine/task/sched.ts uses it); -1: not read. */
  timerSlackNs: number;
  /** PR_GET_TSC (1 enable, 2 SIGSEGV), read in the same visit (engine/task/attrs.ts uses it). */
  tsc: number;
  /** personality(0xffffffff): the thread's own personality. */
  personality: number;
  /**
   * get_mempolicy's mode (0 the default policy; -1: a policy the task
   * iterator saw but cannot tell, or the call failed): any other is refused.
   */
  mempolicy: number;
  /**
   * PR_GET_SPECULATION_CTRL of each control (store bypass, indirect branch,
   * L1D flush; -errno where unsupported), when read by injection (the task
   * iterator's records hold atomic_flags instead: engine/task/attrs.ts
   * `checkThreadSpeculation`).
   */
  speculation?: number[];
  /**
   * The serial of its thread keyring (-errno: none), when read by injection
   * (the task iterator's records hold cred->thread_keyring instead):
   * engine/task/keyrings.ts `checkThreadKeyrings`.
   */
  threadKeyring?: number;
  /**
   * The thread's NUMA policy (get_mempolicy with its node mask, read in the
   * same call as `mempolicy`), absent for the default (engine/memory/mempolicy.ts).
   */
  numaPolicy?: MemPolicy;
  /**
   * The thread's own registers, signal mask and XSAVE area as read when it
   * was opened for crash-safe injection (the session puts exactly these
   * back), if it was: engine/dump/threads.ts need not read them again.
   */
  own?: { regs: UserRegs; mask: bigint; xstate: Uint8Array };
}

/** Process-wide results of {@link queryInjectedState}. */
export interface InjectedState {
  /** The current program break (brk(0)); /proc only shows where the heap starts. */
  brk: bigint;
  sigactions: SigAction[];
  itimers: { real: ITimer; virtual: ITimer; prof: ITimer };
  threads: Map<number, InjectedThreadState>;
  /** Dumpable, subreaper, THP disable, membarrier: read in the main thread's batch (engine/task/attrs.ts). */
  processAttrs?: ProcessAttrValues;
  /** mlockall(MCL_FUTURE) as the BPF task iterator read it, when it did (engine/dump/thread_state.ts). */
  mlockFuture?: IteratorMlockFuture;
  /** The results of the `extra` steps given to {@link queryInjectedState}, in order. */
  extraResults?: bigint[];
}

/** Size of the scratch area mapped in the target for injected syscalls' results. */
export const SCRATCH_BYTES = 4096;

/**
 * Steps of one batch run at most (a table of 64 KiB on the thread's free
 * stack): {@link InjectionSession.calls} splits more into several runs.
 */
export const MAX_BATCH = 1024;

/**
 * An injection was refused before it touched the target: its steps point
 * into memory the session must keep intact, or read or write past the end
 * of the scratch page (a defect of the caller, not of the target).
 */
export class InjectionLimitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InjectionLimitError";
  }
}

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
  #site: bigint | undefined;
  /** Address of a `syscall` instruction in the target (found on first use: the plain protocol). */
  get site(): bigint {
    return this.#site ??= findSyscallInstruction(this.pid);
  }
  /** Address of the scratch page in the target. */
  scratch = 0n;
  /** Batch runs made by {@link calls} (each one resume of its thread), for tests. */
  batchRuns = 0;
  /** Syscalls injected one at a time by {@link call} or {@link callBegin} (two stops each), for tests. */
  callsMade = 0;
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
  /** Each thread's status read once after the freeze (engine/proc/status.ts readThreadStatuses), if given. */
  readonly statuses: ReadonlyMap<number, ProcStatus> | undefined;
  constructor(
    pid: number,
    statuses?: ReadonlyMap<number, ProcStatus>,
    areas?: readonly MapEntry[],
  ) {
    this.pid = pid;
    this.statuses = statuses;
    // From the areas read at this freeze when given: the sites found before the freeze (the
    // warm-up's) looked up in them (no list of the executable ones of 10,000 areas), else the
    // search from their executable lines (no maps text to read). Without them, the sites
    // found before looked up by PROCMAP_QUERY (no maps text of 10,000 lines read).
    const remembered = areas
      ? rememberedSites(pid, (a, n) => inExecArea(areas, a, n))
      : withExecAreaQuery(pid, (inExec) => rememberedSites(pid, inExec));
    if (remembered) sessionSites.remembered++;
    else sessionSites.searched++;
    this.safeSites = remembered ??
      findSafeSites(pid, (areas && executableMapsText(areas)) || undefined);
  }

  /**
   * Opens thread `tid` once; `keepCurrent`: the current thread stays
   * injected meanwhile; `io`: its area's read and frame's write are left
   * to the caller (see `CrashSafeThread.open`).
   */
  #thread(
    tid: number,
    keepCurrent = false,
    io?: { reads: VmPiece[]; writes: VmPiece[] },
  ): CrashSafeThread | undefined {
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
      (rsp, bytes) => tid === this.pid ? this.mainArea : areaBelow(tid, rsp, bytes, 0, this.areas),
      pausePoint,
      this.#status(tid) && usesShadowStack(this.#status(tid)!),
      io,
    );
    this.#threads.set(tid, t);
    if (!keepCurrent) this.#current = t;
    return t;
  }

  /**
   * Opens thread `tid` for crash-safe injection and makes it the one whose
   * registers are injected next, without a syscall run in it (the caller's
   * first {@link call} is the first); false when it cannot be opened so
   * (nothing was changed in it then).
   */
  open(tid: number): boolean {
    this.endBatches();
    const t = this.#thread(tid);
    if (!t) return false;
    if (this.#current !== t) {
      this.#current?.close();
      this.#current = t;
    }
    return true;
  }

  /** Thread `tid`'s own registers, mask and XSAVE area, if it is open for crash-safe injection. */
  ownState(tid: number): InjectedThreadState["own"] {
    const t = this.#threads.get(tid);
    return t ? { regs: t.regs, mask: t.mask, xstate: t.xstate } : undefined;
  }

  /** The status of thread `tid` read with the session's, if any. */
  #status(tid: number): ProcStatus | undefined {
    return this.statuses?.get(tid);
  }

  /** Runs syscall `nr` in thread `tid`; returns the raw result (-errno on failure). */
  call(tid: number, nr: number, ...args: (number | bigint)[]): bigint {
    if (this.#batchPage && this.#batchPage.owner.tid !== tid) this.endBatches();
    pausePoint("inject");
    const t = this.#thread(tid);
    this.#guard(tid, [{ nr, args }]);
    this.callsMade++;
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
   * Starts syscall `nr` in thread `tid` and returns while it runs (past
   * its entry): {@link callFinish} gives its result, and must be called
   * before any other use of the session. False, nothing started, where the
   * thread is not open to crash-safe injection (then {@link call} it):
   * several processes' sessions run their calls at once this way
   * (fork_snapshot.ts `takeSnapshots`).
   */
  callBegin(tid: number, nr: number, ...args: (number | bigint)[]): boolean {
    if (this.#batchPage && this.#batchPage.owner.tid !== tid) this.endBatches();
    pausePoint("inject");
    const t = this.#thread(tid);
    if (!t) return false;
    this.#guard(tid, [{ nr, args }]);
    this.callsMade++;
    if (this.#current !== t) {
      this.#current?.close();
      this.#current = t;
    }
    t.begin(nr, ...args);
    return true;
  }

  /** The raw result (-errno on failure) of the call {@link callBegin} started in `tid`. */
  callFinish(tid: number): bigint {
    return this.#threads.get(tid)!.finish();
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
   * Runs `fn`, which switches the connection of the process's fd `fd` into
   * TCP repair mode (through a copy of the fd) and back out, such that a
   * cryo killed meanwhile leaves the main thread to switch repair mode off
   * first when it goes on (`setsockopt(fd, SOL_TCP, TCP_REPAIR, &0)`, which
   * needs the thread's own CAP_NET_ADMIN; harmless when repair mode is off
   * already). Without crash-safe injection in the main thread, `fn` runs
   * as is (engine/fds/inet_session.ts).
   */
  withRepairUndo<T>(fd: number, fn: () => T): T {
    this.endBatches();
    const t = this.#thread(this.pid);
    if (!t) return fn();
    if (this.#current !== t) {
      this.#current?.close();
      this.#current = t;
    }
    t.armUndo(SYS.setsockopt, fd, SOL.TCP, TCP.REPAIR, t.undoZero, 4);
    // Let go from here on, the thread runs the undo first.
    t.park();
    try {
      return fn();
    } finally {
      t.disarmUndo();
      t.park();
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
    this.#guard(tid, steps);
    const stop = t && batchStop(this.pid, tid, t.mask, this.#status(tid));
    if (!t || !stop) return one();
    // Runs of at most MAX_BATCH steps, each as many as the stack has room
    // for: any number of steps, one table area (saved once) for all runs.
    const room = this.#tableRoom(t);
    const per = Math.min(MAX_BATCH, steps.length, room);
    if (per < MIN_BATCH) return one();
    const table = this.#tableArea(t, batchTableBytes(per));
    if (table === undefined) return one();
    const code = this.#batchCode(t);
    if (code === undefined) return one();
    const results: bigint[] = [];
    for (let from = 0; from < steps.length; from += per) {
      const run = steps.slice(from, from + per);
      processVmWriteFully(this.pid, table, encodeBatchTable(table, run, stop, t.site));
      t.runBatch(code, table, stop.signal);
      this.batchRuns++;
      const out = new Uint8Array(run.length * 64);
      processVmReadFully(this.pid, table, out);
      results.push(...batchResults(out, run.length));
    }
    return results;
  }

  /**
   * Refuses (an {@link InjectionLimitError}, before anything runs) steps
   * for thread `tid` that point into what the session must keep intact:
   * the main thread's stack above the scratch page (the crash-safe frames,
   * the red zone and the thread's live stack), another thread's stack from
   * its crash-safe area up. A caller that puts results past the end of the
   * scratch page would write there (a read of NUMA policies with 2000
   * results of 4 bytes each at 4-byte steps from the scratch page's start
   * overwrote the main thread's live stack, and the target died).
   */
  #guard(tid: number, steps: readonly BatchStep[]): void {
    const range = this.#kept(tid);
    if (!range) return;
    const [lo, hi] = range;
    steps.forEach((st, i) => {
      for (const a of st.args) {
        const v = BigInt.asUintN(64, BigInt(a));
        if (v >= lo && v < hi) {
          throw new InjectionLimitError(
            `process ${this.pid} thread ${tid}: injected step ${i} (syscall ${st.nr}) points at ` +
              `0x${v.toString(16)}, above the scratch space (0x${lo.toString(16)}): ` +
              `the thread's own stack`,
          );
        }
      }
    });
  }

  /** The stack range of thread `tid` injected steps must not point into (see {@link #guard}). */
  #kept(tid: number): [bigint, bigint] | undefined {
    const known = this.#keptRanges.get(tid);
    if (known) return known;
    let lo: bigint | undefined;
    if (tid === this.pid && this.scratch !== 0n && this.mainArea !== undefined) {
      lo = this.scratch + BigInt(SCRATCH_BYTES);
    } else {
      lo = this.#threads.get(tid)?.area;
    }
    if (lo === undefined) return undefined;
    const vma = this.areas ? holding(this.areas, lo) : mappingAt(this.pid, lo);
    if (!vma) return undefined;
    const range: [bigint, bigint] = [lo, vma.end];
    this.#keptRanges.set(tid, range);
    return range;
  }

  /** Each thread's range found by {@link #kept}. */
  readonly #keptRanges = new Map<number, [bigint, bigint]>();

  /** How many steps a batch table below thread `t`'s area (or the scratch page) has room for. */
  #tableRoom(t: CrashSafeThread): number {
    const top = this.#tableTop(t);
    const vma = this.areas ? holding(this.areas, top - 1n) : mappingAt(this.pid, top - 1n);
    if (!vma || vma.perms[0] !== "r" || vma.perms[1] !== "w") return 0;
    // batchTableBytes(n) + 64 (alignment) bytes must fit between the mapping's start and `top`.
    return Math.max(0, Math.floor((Number(top - vma.start) - 64 - 8) / 64) - 3);
  }

  /** Where batch tables of thread `t` end (they lie below it). */
  #tableTop(t: CrashSafeThread): bigint {
    return t.tid === this.pid && this.scratch !== 0n && this.scratch < t.area
      ? this.scratch
      : t.area;
  }

  /**
   * Runs each job's batch in its thread, all threads at once (one resume
   * each, all stops awaited together); returns each job's raw results and
   * the `outBytes` bytes of its own output area, whose address the job's
   * steps are built with (`steps(out)`: below the thread's table, in its
   * own stack, saved and put back on close). The jobs' threads must be
   * distinct; the first must be the main thread. Undefined, with nothing
   * run, when a thread cannot take part (no crash-safe injection, no quiet
   * signal, no room) or no pages can be mapped: the caller goes one thread
   * at a time instead.
   *
   * Each thread runs its own copy of the batch code, in its own page of one
   * mapping, and holds the munmap of that page alone as its undo: a cryo
   * killed at any instant leaves each thread to finish its table and unmap
   * its own page once it left it, so no thread unmaps code another one
   * still runs. Before and after the batches the main thread holds the
   * munmap of the whole mapping, which it finally runs.
   */
  callsTogether(
    jobs: readonly {
      tid: number;
      steps: (out: bigint) => BatchStep[];
      outBytes: number;
    }[],
  ): { r: bigint[]; out: Uint8Array }[] | undefined {
    if (!this.safeSites || jobs.length < 2 || jobs[0].tid !== this.pid) return undefined;
    this.endBatches();
    pausePoint("inject");
    this.#current?.close();
    this.#current = undefined;
    const plan: {
      t: CrashSafeThread;
      stop: BatchStop;
      table: bigint;
      out: bigint;
      steps: BatchStep[];
      tableBytes: number;
      outBytes: number;
    }[] = [];
    // What the threads' areas and the tables overwrite is saved for every
    // thread in one call (put back on close), then every frame is written in one.
    const from = this.#chainSaved.length;
    const io = { reads: [] as VmPiece[], writes: [] as VmPiece[] };
    const flush = () => {
      const tables = this.#chainSaved.slice(from).map((c) => ({ addr: c.at, buf: c.bytes }));
      processVmReadPieces(this.pid, [...io.reads, ...tables]);
      processVmWritePieces(this.pid, io.writes);
    };
    for (const job of jobs) {
      const t = this.#thread(job.tid, true, io);
      const stop = t && batchStop(this.pid, job.tid, t.mask, this.#status(job.tid));
      if (!t || !stop) {
        flush();
        return undefined;
      }
      // The step count does not depend on the output address: size the table first.
      // 64 more bytes above the output: the park slot (CrashSafeThread.parkAt).
      const count = job.steps(0n).length;
      const tableBytes = (batchTableBytes(count) + 63) & ~63;
      const table = this.#tableArea(t, tableBytes + job.outBytes + 64, false);
      if (table === undefined) {
        flush();
        return undefined;
      }
      const out = table + BigInt(tableBytes);
      plan.push({ t, stop, table, out, steps: job.steps(out), tableBytes, outBytes: job.outBytes });
    }
    const n = plan.length;
    flush();
    // Nothing run yet: a step pointing into a thread's own stack is refused here.
    for (const p of plan) this.#guard(p.t.tid, p.steps);
    const at = freePage(this.pid, n, this.areas);
    if (at === undefined) return undefined;
    const bytes = n * PAGE;
    const main = plan[0].t;
    // The main thread holds the munmap of the whole mapping while it is made.
    this.#current = main;
    if (!this.#mapCode(main, this.pid, at, bytes)) return undefined;
    const page = (k: number) => at + BigInt(k * PAGE);
    let first: unknown;
    let started = 0;
    try {
      installBatchCode(this.pid, at, n);
      processVmWritePieces(
        this.pid,
        plan.map((p) => ({
          addr: p.table,
          buf: encodeBatchTable(p.table, p.steps, p.stop, p.t.site),
        })),
      );
      // Each other thread takes its own page's munmap (parked: let go, it runs
      // it first), then the main thread keeps only its own page's. Each is
      // parked on a slot below its frame that holds the call site's `ret`
      // (CrashSafeThread.parkAt), then its page's address: it starts with no
      // register change (all slots written in one call).
      const slot = (k: number) => plan[k].t.area - 8n;
      const word = (v: bigint) => new Uint8Array(new BigUint64Array([v]).buffer);
      processVmWritePieces(this.pid, [
        ...plan.slice(1).map((p, i) => p.t.undoPiece(SYS.munmap, page(i + 1), PAGE)),
        ...plan.slice(1).map((p, i) => ({ addr: slot(i + 1), buf: word(p.t.site + 2n) })),
      ]);
      for (let k = 1; k < n; k++) {
        plan[k].t.useUndo();
        plan[k].t.parkAt(slot(k), plan[k].table);
      }
      main.armUndo(SYS.munmap, page(0), PAGE);
      processVmWritePieces(
        this.pid,
        plan.slice(1).map((_, i) => ({ addr: slot(i + 1), buf: word(page(i + 1)) })),
      );
      main.startBatch(page(0), plan[0].table);
      started++;
      for (let k = 1; k < n; k++) {
        plan[k].t.startParked();
        started++;
      }
    } catch (e) {
      first = e;
    }
    for (let k = 0; k < started; k++) {
      try {
        // The others are closed right after the main thread takes the mapping's munmap back.
        plan[k].t.finishBatch(page(k), plan[k].stop.signal, k > 0);
      } catch (e) {
        first ??= e;
      }
    }
    // The main thread takes the whole mapping's munmap back, the others let
    // theirs go (closed in place), then the main thread unmaps it.
    try {
      main.armUndo(SYS.munmap, at, bytes);
      for (let k = 1; k < n; k++) {
        try {
          plan[k].t.disarmUndo();
          plan[k].t.close();
        } catch (e) {
          first ??= e;
        }
      }
      main.disarmUndo();
      this.#current = main;
      this.call(this.pid, SYS.munmap, at, bytes);
    } catch (e) {
      first ??= e;
    }
    if (first !== undefined) throw first;
    const bufs = plan.map((p) => new Uint8Array(p.tableBytes + p.outBytes));
    processVmReadPieces(this.pid, plan.map((p, k) => ({ addr: p.table, buf: bufs[k] })));
    return plan.map((p, k) => {
      const buf = bufs[k];
      return {
        r: batchResults(buf, p.steps.length),
        out: buf.subarray(p.tableBytes),
      };
    });
  }

  /**
   * Maps `bytes` of code pages at `at` from `tid` (run by `t`, the current
   * thread), with their munmap armed as `t`'s undo first; false (undo
   * disarmed, nothing left mapped) when the kernel put them elsewhere or
   * refused (EEXIST: the pages there are not ours).
   */
  #mapCode(t: CrashSafeThread, tid: number, at: bigint, bytes: number): boolean {
    t.armUndo(SYS.munmap, at, bytes);
    let r: bigint;
    try {
      r = this.call(tid, SYS.mmap, at, bytes, PROT_READ | PROT_EXEC, MAP_BATCH, -1, 0);
    } catch (e) {
      t.disarmUndo();
      this.call(tid, SYS.munmap, at, bytes);
      throw e;
    }
    if (r === at) return true;
    t.disarmUndo();
    if (r >= 0n) this.call(tid, SYS.munmap, r, bytes);
    return false;
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
    const at = this.#batchAt ??= freePage(this.pid, 1, this.areas) ?? 0n;
    if (at === 0n) return undefined;
    if (!this.#mapCode(t, t.tid, at, PAGE)) {
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
  #tableArea(t: CrashSafeThread, bytes: number, read = true): bigint | undefined {
    const top = this.#tableTop(t);
    const at = (top - BigInt(bytes)) & ~63n;
    // The mapping the table lies in: the one holding the byte below `top` (start < top <= end).
    const vma = this.areas ? holding(this.areas, top - 1n) : mappingAt(this.pid, top - 1n);
    if (!vma || at < vma.start || vma.perms[0] !== "r" || vma.perms[1] !== "w") return undefined;
    const saved = new Uint8Array(Number(top - at));
    // Without `read`, the caller fills `saved` (with other threads' in one call) before any use.
    if (read) processVmReadFully(t.tid, at, saved);
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
    const saved = this.#chainSaved.splice(0).reverse();
    const threads = [...this.#threads.values()].filter((t) => t !== undefined);
    try {
      // Every stack area back in one call (tables first, in reverse, then the threads' areas).
      processVmWritePieces(this.pid, [
        ...saved.map((c) => ({ addr: c.at, buf: c.bytes })),
        ...threads.map((t) => ({ addr: t.area, buf: t.savedArea })),
      ]);
    } catch {
      // One at a time, as far as possible; the first failure is reported.
      for (const c of saved) {
        try {
          processVmWriteFully(c.tid, c.at, c.bytes);
        } catch (e) {
          first ??= e;
        }
      }
      for (const t of threads) {
        try {
          t.restoreArea();
        } catch (e) {
          first ??= e;
        }
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

  /** Refuses (an {@link InjectionLimitError}) `length` bytes at `offset` not all in the scratch page. */
  #inScratch(offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > SCRATCH_BYTES) {
      throw new InjectionLimitError(
        `process ${this.pid}: ${length} bytes at offset ${offset} of the scratch page ` +
          `(${SCRATCH_BYTES} bytes)`,
      );
    }
  }

  /** Reads `length` bytes of the scratch page from `offset`. */
  read(offset: number, length: number): Uint8Array {
    this.#inScratch(offset, length);
    const buf = new Uint8Array(length);
    processVmReadFully(this.pid, this.scratch + BigInt(offset), buf);
    return buf;
  }

  /** Writes `bytes` into the scratch page at `offset` (arguments for a syscall). */
  write(offset: number, bytes: Uint8Array): void {
    this.#inScratch(offset, bytes.length);
    processVmWriteFully(this.pid, this.scratch + BigInt(offset), bytes);
  }
}

/**
 * Called with the pid before an injection session into it opens: a copy of
 * its pages made ahead on another thread (engine/dump/copy_ahead.ts) waits
 * for its reads there, before the session writes the process's memory.
 */
export const beforeInjection: { hook?: (pid: number) => void } = {};

/**
 * Injection sessions opened since cryo started whose safe sites were found
 * before (`remembered`: their bytes checked again) or searched for then
 * (`searched`: the executable areas' lines listed and read; tests).
 */
export const sessionSites = { remembered: 0, searched: 0 };

/**
 * Opens an injection session on the stopped process `pid`, runs `fn`, and
 * puts the threads and the scratch space back (also when `fn` throws).
 */
export function withInjection<T>(
  pid: number,
  fn: (s: InjectionSession) => T,
  /** Each thread's status, read once after the freeze (see {@link InjectionSession.statuses}). */
  statuses?: ReadonlyMap<number, ProcStatus>,
  /** The process's mappings read at this freeze, if the caller has them ({@link InjectionSession.areas}). */
  areas?: readonly MapEntry[],
  /**
   * Run instead when the main thread's stack has no room for the session
   * (then nothing is mapped in the process): for a caller whose readers of
   * the mappings may be running on other threads.
   */
  withoutRoom?: () => T,
): T {
  beforeInjection.hook?.(pid);
  const s = new InjectionSession(pid, statuses, areas);
  s.areas = areas;
  const rsp = getRegs(pid).rsp;
  const areaBytes = s.safeSites ? CrashSafeThread.bytesFor(xsaveSize(pid)) : 0;
  const area = areaBelow(pid, rsp, areaBytes, SCRATCH_BYTES, areas);
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
  if (withoutRoom) return withoutRoom();
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
  // The mapping holding rsp: one PROCMAP_QUERY, or a binary search of `maps` when given.
  let vma: Pick<MapEntry, "start" | "end" | "perms"> | null | undefined;
  if (maps) {
    vma = lastBelow(maps, rsp, true);
    if (vma && rsp >= vma.end) return undefined;
  } else vma = mappingAt(tid, rsp);
  if (!vma || vma.perms[0] !== "r" || vma.perms[1] !== "w" || low < vma.start) return undefined;
  return area;
}

/**
 * The last of `maps` (sorted by start, as /proc lists them) that starts
 * below `addr` (or at it, with `orAt`), by binary search: one lookup per
 * thread instead of a scan of every mapping.
 */
function lastBelow(
  maps: readonly MapEntry[],
  addr: bigint,
  orAt: boolean,
): MapEntry | undefined {
  let lo = 0;
  let hi = maps.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const s = maps[mid].start;
    if (s < addr || (orAt && s === addr)) lo = mid + 1;
    else hi = mid;
  }
  return lo > 0 ? maps[lo - 1] : undefined;
}

/**
 * Whether the `bytes` at `addr` lie in one readable executable area of
 * `maps` (sorted by start), [vsyscall] aside: ffi/safe_inject.ts
 * `findSafeSites`'s areas, found by binary search.
 */
function inExecArea(maps: readonly MapEntry[], addr: bigint, bytes: number): boolean {
  const m = holding(maps, addr);
  return m !== undefined && m.perms[0] === "r" && m.perms[2] === "x" &&
    m.path !== "[vsyscall]" && addr + BigInt(bytes) <= m.end;
}

/** The one of `maps` (sorted by start) that holds `addr`, by binary search. */
function holding(maps: readonly MapEntry[], addr: bigint): MapEntry | undefined {
  const m = lastBelow(maps, addr, true);
  return m && addr < m.end ? m : undefined;
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
function freePage(pid: number, pages = 1, known?: readonly MapEntry[]): bigint | undefined {
  const { start: bestAt, size: best } = largestGap(pid, known);
  // The middle of a gap with room for twice the pages and a guard page on either side.
  if (best < BigInt((2 * pages + 2) * PAGE)) return undefined;
  return (bestAt + best / 2n) & ~BigInt(PAGE - 1);
}

/**
 * A signal to end a batch in thread `tid` with: its action is the default
 * (ignore), it is neither pending nor blocked by the thread's own mask
 * `mask` (so the stop takes nothing the thread would have seen), with the
 * ids of the target's own pid namespace; undefined if there is none.
 * `status`: the thread's status read after the freeze, if at hand (a
 * signal that became pending since makes the batch stop early, at a place
 * runBatch refuses: the dump fails, nothing is lost).
 */
function batchStop(
  pid: number,
  tid: number,
  mask: bigint,
  status?: ProcStatus,
): BatchStop | undefined {
  let st = status;
  try {
    st ??= readStatus(pid, tid);
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
  thread: 64 * 32 + 3 * 32, // one thread's results (OUT) when threads go one by one
  attrs: 64 * 32 + 3 * 32 + 192, // the subreaper flag (an int) of processAttrSteps
} as const;

/**
 * The part of the scratch page {@link queryInjectedState} leaves to the
 * `extra` steps a caller adds to the main thread's batch (from `at` on,
 * `bytes` long): engine/memory/mempolicy.ts reads mapping policies there.
 */
export const EXTRA_SCRATCH = { at: AT.attrs + 64, bytes: SCRATCH_BYTES - (AT.attrs + 64) };

/** One thread's results of {@link queryInjectedState}. */
const OUT = {
  altstack: 0, // stack_t (24 bytes)
  tidAddress: 32, // 8 bytes
  pdeathsig: 40, // int
  tsc: 44, // int
  mempolicy: 48, // int (get_mempolicy's mode)
  mempolicyMask: 64, // its node mask, MASK_BYTES (128)
  end: 64 + MASK_BYTES,
} as const;

/**
 * Reads sigactions, itimers, the program break, the process's dumpable,
 * subreaper, THP disable and membarrier flags, and each thread's
 * sigaltstack, clear_child_tid, parent-death signal, securebits, timer slack, TSC mode,
 * personality and NUMA policy mode: the
 * syscalls of each thread in one batch ({@link InjectionSession.calls}).
 */
export function queryInjectedState(
  s: InjectionSession,
  tids: readonly number[],
  /** The iterator's records when read already for this freeze (engine/dump/thread_state.ts). */
  read?: { bpf: BpfThreadStates | undefined },
  /**
   * More steps for the main thread's batch (their results in `extraResults`),
   * writing only in {@link EXTRA_SCRATCH}: no round trip of their own.
   */
  extra: readonly BatchStep[] = [],
): InjectedState {
  const main = s.pid;
  const sc = s.scratch;
  /** The per-thread queries, their results written at `out` (layout {@link OUT}). */
  const threadSteps = (out: bigint): BatchStep[] => [
    { nr: SYS.sigaltstack, args: [0, out + BigInt(OUT.altstack)] },
    { nr: SYS.prctl, args: [PR_GET_TID_ADDRESS, out + BigInt(OUT.tidAddress)] },
    { nr: SYS.prctl, args: [PR_GET_PDEATHSIG, out + BigInt(OUT.pdeathsig)] },
    { nr: SYS.prctl, args: [PR_GET_SECUREBITS] },
    { nr: SYS.prctl, args: [PR_GET_TIMERSLACK] },
    { nr: SYS.prctl, args: [PR_GET_TSC, out + BigInt(OUT.tsc), 0, 0, 0] },
    { nr: SYS.personality, args: [0xffffffff] },
    {
      nr: SYS.get_mempolicy,
      args: [out + BigInt(OUT.mempolicy), out + BigInt(OUT.mempolicyMask), MAX_NODES, 0, 0],
    },
    ...[0, 1, 2].map((i) => ({ nr: SYS.prctl, args: [PR_GET_SPECULATION_CTRL, i, 0, 0, 0] })),
    // Not the session keyring: asking for it installs one in a thread that has none.
    { nr: SYS.keyctl, args: [KEYCTL_GET_KEYRING_ID, KEY_SPEC_THREAD_KEYRING, 0] },
  ];
  const names = ["sigaltstack", "prctl(PR_GET_TID_ADDRESS)", "prctl(PR_GET_PDEATHSIG)"];
  const threads = new Map<number, InjectedThreadState>();
  /** Records thread `tid` from its results `own` and its output area `out`. */
  const record = (tid: number, own: bigint[], out: Uint8Array) => {
    own.forEach((v, i) => {
      if (v < 0n) {
        // Timer slack: read from /proc instead (-1 below); TSC mode, mempolicy: below.
        if (i >= 4) return;
        const what = names[i] ?? "prctl(PR_GET_SECUREBITS)";
        throw new CryoError(
          `process ${s.pid}: ${what} in the target failed: ${errnoName(Number(-v))}`,
        );
      }
    });
    const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
    const st = stackT.decode(out.subarray(OUT.altstack, OUT.altstack + stackT.size));
    const policy = own[7] === 0n
      ? policyOf(
        dv.getInt32(OUT.mempolicy, true),
        out.subarray(OUT.mempolicyMask, OUT.mempolicyMask + MASK_BYTES),
      )
      : undefined;
    threads.set(tid, {
      sigaltstack: { sp: hex(st.sp), flags: st.flags, size: Number(st.size) },
      clearChildTid: hex(dv.getBigUint64(OUT.tidAddress, true)),
      pdeathsig: dv.getInt32(OUT.pdeathsig, true),
      securebits: Number(own[3]),
      timerSlackNs: own[4] >= 0n ? Number(own[4]) : -1,
      // EINVAL: no TSC mode on this machine (the default).
      tsc: own[5] >= 0n ? dv.getInt32(OUT.tsc, true) : PR_TSC_ENABLE,
      personality: Number(BigInt.asUintN(32, own[6])),
      // ENOSYS: a kernel without NUMA (the default policy).
      mempolicy: own[7] >= 0n ? dv.getInt32(OUT.mempolicy, true) : own[7] === -38n ? 0 : -1,
      speculation: own.slice(8, 11).map(Number),
      threadKeyring: Number(own[11]),
      ...(policy ? { numaPolicy: policy } : {}),
      own: s.ownState(tid),
    });
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
  // Whether the main thread has a session keyring, when a record tells (asking installs one).
  const session = mainSessionKeyring(main, read?.bpf);
  processSteps.push(...processAttrSteps(sc + BigInt(AT.attrs), session));
  const attrsEnd = processSteps.length;
  processSteps.push(...extra);
  const own = processSteps.length;
  // Every thread at once when they all can (one round trip for the process);
  // otherwise one thread after the other, results in the scratch page.
  const others = tids.filter((tid) => tid !== main);
  const visit = (tid: number, first: BatchStep[]) => {
    const all = s.calls(tid, [...first, ...threadSteps(sc + BigInt(AT.thread))]);
    record(tid, all.slice(first.length), s.read(AT.thread, OUT.end));
    return all.slice(0, first.length);
  };
  // The other threads' state from a BPF task iterator, once trusted (engine/dump/thread_state.ts).
  const bpf = others.length === 0 ? undefined : read ? read.bpf : bpfThreadStates(main, tids);
  const together = others.length === 0 || bpf?.trusted ? undefined : s.callsTogether([
    { tid: main, steps: (o) => [...processSteps, ...threadSteps(o)], outBytes: OUT.end },
    ...others.map((tid) => ({ tid, steps: threadSteps, outBytes: OUT.end })),
  ]);
  let r: bigint[];
  if (together) {
    r = together[0].r.slice(0, own);
    record(main, together[0].r.slice(own), together[0].out);
    others.forEach((tid, i) => record(tid, together[i + 1].r, together[i + 1].out));
  } else {
    r = visit(main, processSteps);
    // The iterator's records cannot tell a thread's L1D flush control: where
    // the process may set it (PR_SPEC_PRCTL), every thread reads its own.
    const l1d = r[PROCESS_ATTRS_AT + L1D_FLUSH_AT];
    const l1dPerThread = l1d >= 0n && (l1d & PR_SPEC_PRCTL) !== 0n;
    if (!bpf?.trusted || l1dPerThread || !takeThreadStates(bpf, threads)) {
      for (const tid of others) visit(tid, []);
    } else {
      // Only a thread itself reads its NUMA policy: those whose task->mempolicy is set are visited.
      for (const tid of others) if (bpf.withPolicy?.has(tid)) visit(tid, []);
    }
  }
  if (bpf && !bpf.trusted) checkThreadStates(bpf, threads);
  const mlockFuture = bpf && mlockFutureOf(bpf, threadStatePaths.get(main) === "bpf");
  const out = s.read(0, AT.thread);
  const outView = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const sigactions: SigAction[] = [];
  for (let sig = 1; sig <= 64; sig++) {
    if (r[sig - 1] < 0n) {
      // 32 and 33 are reserved by glibc but valid for the kernel; EINVAL means no such signal.
      sigactions.push({ handler: "0x0", flags: "0x0", restorer: "0x0", mask: "0x0" });
      continue;
    }
    // struct kernel_sigaction (ffi/structs.ts kernelSigaction), read in place: 64 per dump, in its freeze.
    const at = AT.sigactions + (sig - 1) * kernelSigaction.size;
    sigactions.push({
      handler: hex(outView.getBigUint64(at, true)),
      flags: hex(outView.getBigUint64(at + 8, true)),
      restorer: hex(outView.getBigUint64(at + 16, true)),
      mask: hex(outView.getBigUint64(at + 24, true)),
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
  const processAttrs = processAttrsFrom(
    s.pid,
    r.slice(PROCESS_ATTRS_AT, attrsEnd),
    s.read(AT.attrs, 8),
    session,
  );
  s.endBatches();
  return {
    brk: BigInt.asUintN(64, r[67]),
    sigactions,
    itimers: { real: timers[0], virtual: timers[1], prof: timers[2] },
    threads,
    processAttrs,
    ...(mlockFuture ? { mlockFuture } : {}),
    ...(extra.length ? { extraResults: r.slice(attrsEnd) } : {}),
  };
}

const PR_GET_PDEATHSIG = 2;
const PR_GET_SECUREBITS = 27;
const PR_GET_TID_ADDRESS = 40;
const PR_GET_TIMERSLACK = 30;
const PR_GET_TSC = 25;
const PR_TSC_ENABLE = 1;
const PR_GET_SPECULATION_CTRL = 52;
const KEYCTL_GET_KEYRING_ID = 0;
const KEY_SPEC_THREAD_KEYRING = -1;
const PR_SPEC_PRCTL = 1n;
/** Where processAttrSteps' results begin in the main thread's process steps (64 sigactions, 3 itimers, brk). */
const PROCESS_ATTRS_AT = 68;
/** The L1D flush control's PR_GET_SPECULATION_CTRL among them (the third control). */
const L1D_FLUSH_AT = SPECULATION_STEPS_AT + 2;
