/**
 * The per-thread reads of a frozen process's threads, all of them in one
 * synchronous FFI call: a syscall table run on the calling thread (the
 * tracer: ptrace requests must come from it), no JavaScript per request.
 * Per thread: PTRACE_GETREGS, PTRACE_GETREGSET (NT_X86_XSTATE),
 * PTRACE_GETSIGMASK, PTRACE_PEEKSIGINFO (its private queue, the first
 * {@link PEEK_BATCH}), get_robust_list, sched_getattr, sched_getaffinity
 * and ioprio_get (the rseq registration is the one the freeze's rseq check
 * read, passed in: engine/task/rseq.ts); the same requests, with
 * the same arguments, as ffi/ptrace.ts and ffi/sched.ts make one FFI call
 * each. A thread whose reads did not all succeed (gone, not stopped) or
 * whose private queue may hold more signals than were read is left out:
 * the caller reads it the usual way, which reports the failure as before.
 *
 * @module
 */

import { addressOf, SyscallError } from "./libc.ts";
import {
  getRegs,
  getRseqConfig,
  NT,
  PTRACE,
  type RseqConfig,
  SIGINFO_SIZE,
  syscallUserDispatchMode,
} from "./ptrace.ts";
import { decodeUserRegs, USER_REGS_FIELDS, USER_REGS_SIZE, type UserRegs } from "./regs.ts";
import { CPU_MASK_BYTES, cpusOfMask, IOPRIO_WHO_PROCESS } from "./sched.ts";
import { type SchedAttr, schedAttr } from "./structs.ts";
import { SYS } from "./sysno.ts";
import { SyscallTable, tablesRunHere } from "./syscall_table.ts";
import { __WALL, decodeWaitStatus, type WaitStatus, WNOHANG } from "./wait.ts";

/** Signals of a private queue read by the table (more: the thread is read the usual way). */
export const PEEK_BATCH = 8;

/** What {@link readThreadsHere} read of one thread. */
export interface ThreadReads {
  /** PTRACE_GETREGS. */
  regs: UserRegs;
  /** The XSAVE area (NT_X86_XSTATE), as long as the kernel filled it. */
  xstate: Uint8Array;
  /** PTRACE_GETSIGMASK. */
  sigmask: bigint;
  /** The private pending signals' raw siginfo (PTRACE_PEEKSIGINFO), in queue order. */
  pending: Uint8Array[];
  /**
   * PTRACE_GET_RSEQ_CONFIGURATION as the caller read it in this freeze
   * (not read again: a stopped thread's registration cannot change);
   * undefined when it was not (the caller reads it then).
   */
  rseq?: RseqConfig;
  /** get_robust_list, or undefined when it failed (the caller's default then). */
  robustList?: { head: bigint; len: number };
  /** sched_getattr, sched_getaffinity's CPUs, ioprio_get. */
  sched: { attr: SchedAttr; cpus: number[]; ioprio: number };
}

// The layout of one thread's slot (bytes from its start).
const REGS = 0;
const IOV = REGS + USER_REGS_SIZE; // 216
const MASK = IOV + 16;
const PEEK_ARGS = MASK + 8;
const ROBUST = PEEK_ARGS + 16; // head, then len
const ATTR = ROBUST + 16;
const CPUS = ATTR + 64;
const SIGINFO = CPUS + CPU_MASK_BYTES;
const XSTATE = SIGINFO + PEEK_BATCH * SIGINFO_SIZE; // 64-byte aligned below
/** Entries per thread. */
const ENTRIES = 8;

/** Whether {@link readThreadsHere} can run here. */
export function threadReadsAvailable(): boolean {
  return tablesRunHere();
}

/** A table of the reads of some threads, built ({@link prepareThreadReads}) and not run yet. */
interface Built {
  tids: readonly number[];
  xsaveBytes: number;
  table: SyscallTable;
  /** The slots (64-byte aligned), and a view of them. */
  bytes: Uint8Array<ArrayBuffer>;
  view: DataView<ArrayBuffer>;
  stride: number;
  xstateAt: number;
}

/** The table built ahead, for the next {@link readThreadsHere} of the same threads. */
let prepared: Built | undefined;

/** Builds the table of the reads of `tids` (no request is made). */
function build(tids: readonly number[], xsaveBytes: number): Built {
  const xstateAt = (XSTATE + 63) & ~63;
  const stride = (xstateAt + xsaveBytes + 63) & ~63;
  const buf = new Uint8Array(stride * tids.length + 64);
  const base0 = addressOf(buf);
  const skew = Number((64n - (base0 & 63n)) & 63n);
  const base = base0 + BigInt(skew);
  const bytes = new Uint8Array(buf.buffer, skew, stride * tids.length);
  const view = new DataView(buf.buffer, skew, stride * tids.length);
  const table = new SyscallTable(ENTRIES * tids.length);
  table.keep(buf);
  for (let i = 0; i < tids.length; i++) {
    const tid = tids[i], at = i * stride, a = base + BigInt(at);
    // The iovec of GETREGSET and the arguments of PEEKSIGINFO.
    view.setBigUint64(at + IOV, a + BigInt(xstateAt), true);
    view.setBigUint64(at + IOV + 8, BigInt(xsaveBytes), true);
    view.setBigUint64(at + PEEK_ARGS, 0n, true); // offset 0
    view.setUint32(at + PEEK_ARGS + 8, 0, true); // the thread's own queue
    view.setInt32(at + PEEK_ARGS + 12, PEEK_BATCH, true);
    table.syscall(SYS.ptrace, PTRACE.GETREGS, tid, 0, a + BigInt(REGS));
    table.syscall(SYS.ptrace, PTRACE.GETREGSET, tid, NT.X86_XSTATE, a + BigInt(IOV));
    table.syscall(SYS.ptrace, PTRACE.GETSIGMASK, tid, 8, a + BigInt(MASK));
    table.syscall(SYS.ptrace, PTRACE.PEEKSIGINFO, tid, a + BigInt(PEEK_ARGS), a + BigInt(SIGINFO));
    table.syscall(SYS.get_robust_list, tid, a + BigInt(ROBUST), a + BigInt(ROBUST + 8));
    table.syscall(SYS.sched_getattr, tid, a + BigInt(ATTR), schedAttr.size, 0);
    table.syscall(SYS.sched_getaffinity, tid, CPU_MASK_BYTES, a + BigInt(CPUS));
    table.syscall(SYS.ioprio_get, IOPRIO_WHO_PROCESS, tid);
  }
  return { tids: [...tids], xsaveBytes, table, bytes, view, stride, xstateAt };
}

/**
 * Builds, before a freeze, the table of the reads of threads `tids` (the
 * threads of the process as listed then): the next {@link readThreadsHere}
 * of the same threads, in the same order, with the same XSAVE size, only
 * runs it. Replaces any table built before; makes no request.
 */
export function prepareThreadReads(tids: readonly number[], xsaveBytes: number): void {
  prepared = undefined;
  if (tids.length === 0 || !tablesRunHere()) return;
  prepared = build(tids, xsaveBytes);
}

/** Whether `a` and `b` hold the same numbers in the same order. */
function sameList(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Reads the threads `tids` (each in a ptrace stop of this thread) in one
 * table run on this thread; `xsaveBytes`: the size NT_X86_XSTATE has here
 * (ffi/ptrace.ts `xsaveSize`). Returns what was read of each thread whose
 * reads all succeeded (see the module comment for the ones left out). The
 * table built ahead for these threads ({@link prepareThreadReads}) is run
 * if there is one (once), else one is built now. `rseq`: each thread's
 * registration read already in this freeze (engine/task/rseq.ts
 * `frozenRseqConfigs`), handed out as its `rseq`.
 */
export function readThreadsHere(
  tids: readonly number[],
  xsaveBytes: number,
  rseq?: ReadonlyMap<number, RseqConfig>,
): Map<number, ThreadReads> {
  const out = new Map<number, ThreadReads>();
  const ahead = prepared;
  prepared = undefined; // run once: its slots are handed out below
  if (tids.length === 0) return out;
  const b = ahead && ahead.xsaveBytes === xsaveBytes && sameList(ahead.tids, tids)
    ? ahead
    : build(tids, xsaveBytes);
  const { table, bytes, view, stride, xstateAt } = b;
  table.runHere();
  for (let i = 0; i < tids.length; i++) {
    const e = i * ENTRIES, at = i * stride;
    const r = (k: number) => table.result(e + k);
    // Every ptrace request, the scheduling reads: 0 (the affinity: its mask's size, the
    // I/O priority: the value); a queue of PEEK_BATCH may have more.
    const peeked = r(3), mask = r(6);
    if (
      r(0) !== 0n || r(1) !== 0n || r(2) !== 0n || peeked < 0n || peeked >= BigInt(PEEK_BATCH) ||
      r(5) !== 0n || mask <= 0n || mask > BigInt(CPU_MASK_BYTES) || r(7) < 0n
    ) continue;
    const xlen = Number(view.getBigUint64(at + IOV + 8, true));
    if (xlen > xsaveBytes) continue;
    const pending: Uint8Array[] = [];
    for (let k = 0; k < Number(peeked); k++) {
      const from = at + SIGINFO + k * SIGINFO_SIZE;
      pending.push(bytes.slice(from, from + SIGINFO_SIZE));
    }
    const robust = r(4) >= 0n;
    out.set(tids[i], {
      regs: decodeUserRegs(bytes.subarray(at + REGS, at + REGS + USER_REGS_SIZE)),
      // The slots are this call's alone (a table is run once): views, not copies.
      xstate: bytes.subarray(at + xstateAt, at + xstateAt + xlen),
      sigmask: view.getBigUint64(at + MASK, true),
      pending,
      rseq: rseq?.get(tids[i]),
      robustList: robust
        ? {
          head: view.getBigUint64(at + ROBUST, true),
          len: Number(view.getBigUint64(at + ROBUST + 8, true)),
        }
        : undefined,
      sched: {
        attr: schedAttr.decode(bytes.subarray(at + ATTR)),
        cpus: cpusOfMask(bytes.subarray(at + CPUS, at + CPUS + CPU_MASK_BYTES), Number(mask)),
        ioprio: Number(r(7)),
      },
    });
  }
  return out;
}

/**
 * PTRACE_INTERRUPT (or another request whose address and data are 0, such
 * as PTRACE_DETACH without a signal) of every thread of `tids`, in one table
 * run on this thread (the tracer); each thread's result in order: 0, or
 * -errno as the one-call path (ffi/ptrace.ts) would have thrown it. Only
 * where {@link threadReadsAvailable}.
 */
export function ptraceEach(request: number, tids: readonly number[]): bigint[] {
  const table = new SyscallTable(tids.length);
  for (const tid of tids) table.syscall(SYS.ptrace, request, tid, 0, 0);
  table.runHere();
  return tids.map((_, i) => table.result(i));
}

/** From how many threads {@link rseqConfigsEach} uses one table run. */
export const RSEQ_TABLE_FROM = 8;

/**
 * PTRACE_GET_RSEQ_CONFIGURATION of every thread of `tids` (each in a ptrace
 * stop of this thread): each one's registration (all zero without one),
 * undefined for a thread whose read failed. One table run on this thread
 * for {@link RSEQ_TABLE_FROM} threads or more where
 * {@link threadReadsAvailable}, else one call each.
 */
export function rseqConfigsEach(tids: readonly number[]): (RseqConfig | undefined)[] {
  // A table run costs ~30 us more than one request (measured): for fewer threads, one each.
  if (tids.length < RSEQ_TABLE_FROM || !tablesRunHere()) {
    return tids.map((tid) => {
      try {
        return getRseqConfig(tid);
      } catch {
        return undefined;
      }
    });
  }
  const buf = new Uint8Array(32 * tids.length);
  const base = addressOf(buf);
  const table = new SyscallTable(tids.length);
  table.keep(buf);
  tids.forEach((tid, i) => {
    table.syscall(SYS.ptrace, PTRACE.GET_RSEQ_CONFIGURATION, tid, 24, base + BigInt(32 * i));
  });
  table.runHere();
  const view = new DataView(buf.buffer);
  return tids.map((_, i) =>
    table.result(i) < 0n ? undefined : {
      addr: view.getBigUint64(32 * i, true),
      len: view.getUint32(32 * i + 8, true),
      sig: view.getUint32(32 * i + 12, true),
      flags: view.getUint32(32 * i + 16, true),
    }
  );
}

/**
 * A thread's syscall registers: orig_rax (the syscall, -1 for none), rax
 * (its result) and r8 (its fifth argument).
 */
export interface SyscallRegs {
  origRax: bigint;
  rax: bigint;
  r8: bigint;
}

const RAX = USER_REGS_FIELDS.indexOf("rax") * 8;
const ORIG_RAX = USER_REGS_FIELDS.indexOf("orig_rax") * 8;
const R8 = USER_REGS_FIELDS.indexOf("r8") * 8;

/**
 * PTRACE_GETREGS of every thread of `tids` (each in a ptrace stop of this
 * thread), keeping orig_rax and rax (signed); undefined for a thread whose
 * read failed. One table run on this thread for {@link RSEQ_TABLE_FROM}
 * threads or more where {@link threadReadsAvailable}, else one call each.
 */
export function syscallRegsEach(tids: readonly number[]): (SyscallRegs | undefined)[] {
  if (tids.length < RSEQ_TABLE_FROM || !tablesRunHere()) {
    return tids.map((tid) => {
      try {
        const r = getRegs(tid);
        return {
          origRax: BigInt.asIntN(64, r.orig_rax),
          rax: BigInt.asIntN(64, r.rax),
          r8: r.r8,
        };
      } catch {
        return undefined;
      }
    });
  }
  const buf = new Uint8Array(USER_REGS_SIZE * tids.length);
  const base = addressOf(buf);
  const table = new SyscallTable(tids.length);
  table.keep(buf);
  tids.forEach((tid, i) => {
    table.syscall(SYS.ptrace, PTRACE.GETREGS, tid, 0, base + BigInt(USER_REGS_SIZE * i));
  });
  table.runHere();
  const view = new DataView(buf.buffer);
  return tids.map((_, i) =>
    table.result(i) < 0n ? undefined : {
      origRax: view.getBigInt64(USER_REGS_SIZE * i + ORIG_RAX, true),
      rax: view.getBigInt64(USER_REGS_SIZE * i + RAX, true),
      r8: view.getBigUint64(USER_REGS_SIZE * i + R8, true),
    }
  );
}

/** From how many threads {@link syscallUserDispatchModesEach} uses one table run. */
export const DISPATCH_TABLE_FROM = 8;

/**
 * PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG of every thread of `tids` (each
 * in a ptrace stop of this thread): each one's mode as ffi/ptrace.ts
 * `syscallUserDispatchMode` gives it (undefined where the kernel cannot
 * tell), and a failure thrown as it throws it. One table run on this thread
 * for {@link DISPATCH_TABLE_FROM} threads or more where
 * {@link threadReadsAvailable} (64 FFI calls, each with its buffer, took
 * ~0.19 ms of a 64-thread freeze), else one call each.
 */
export function syscallUserDispatchModesEach(tids: readonly number[]): (number | undefined)[] {
  if (tids.length < DISPATCH_TABLE_FROM || !tablesRunHere()) {
    return tids.map((tid) => syscallUserDispatchMode(tid));
  }
  // struct ptrace_sud_config per thread: mode, selector, offset, len.
  const buf = new BigUint64Array(4 * tids.length);
  const base = addressOf(buf);
  const table = new SyscallTable(tids.length);
  table.keep(buf);
  tids.forEach((tid, i) => {
    table.syscall(
      SYS.ptrace,
      PTRACE.GET_SYSCALL_USER_DISPATCH_CONFIG,
      tid,
      32,
      base + BigInt(32 * i),
    );
  });
  table.runHere();
  return tids.map((tid, i) => {
    const r = table.result(i);
    if (r === -5n /* EIO: unknown request */ || r === -22n /* EINVAL */) return undefined;
    if (r < 0n) {
      throw new SyscallError("ptrace(PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG)", [tid], Number(-r));
    }
    return Number(buf[4 * i]);
  });
}

/**
 * wait4(tid, status, __WALL | WNOHANG) of every thread of `tids` (this
 * thread's tracees) in one table run on this thread: each one's status as
 * ffi/wait.ts `waitPid` decodes it, `{ kind: "none" }` when nothing is
 * ready (or the call was interrupted: the caller polls again), or the
 * errno of a failure (ECHILD: not a tracee of this thread any more). For a
 * poll of many threads' stops (engine/dump/freeze.ts), one FFI call a pass
 * instead of one per thread. Only where {@link threadReadsAvailable}.
 */
export function waitEachNoHang(tids: readonly number[]): (WaitStatus | number)[] {
  const status = new Int32Array(tids.length);
  const base = addressOf(status);
  const table = new SyscallTable(tids.length);
  table.keep(status);
  tids.forEach((tid, i) => {
    table.syscall(SYS.wait4, tid, base + BigInt(4 * i), __WALL | WNOHANG, 0);
  });
  table.runHere();
  return tids.map((_, i) => {
    const r = table.resultNumber(i);
    if (r === 0 || r === -4 /* EINTR */) return { kind: "none" };
    if (r < 0) return -r;
    return decodeWaitStatus(r, status[i]);
  });
}
