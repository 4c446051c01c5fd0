/**
 * Seccomp of each thread: strict mode, or its chain of filters (the
 * classic BPF programs as they were installed, read with
 * PTRACE_SECCOMP_GET_FILTER, and their flags).
 *
 * While cryo injects syscalls into a thread that has seccomp, the thread's
 * seccomp is suspended (PTRACE_O_SUSPEND_SECCOMP), at dump and at restore:
 * a filter can neither kill the target for cryo's own syscalls nor block
 * the restore's. At restore the filters are installed in the engine's
 * finalize, after every other piece of the thread's state; filters that
 * all threads share are installed once with SECCOMP_FILTER_FLAG_TSYNC so
 * they are shared again. They act from the moment cryo detaches.
 *
 * @module
 */

import { SyscallError } from "../../ffi/libc.ts";
import {
  PTRACE_O_SUSPEND_SECCOMP,
  seccompFilter,
  seccompFilterFlags,
  setTraceOptions,
} from "../../ffi/seccomp.ts";
import { sockFprog } from "../../ffi/structs.ts";
import { SYS } from "../../ffi/sysno.ts";
import { errnoName } from "../../ffi/errno.ts";
import { decodeBase64, encodeBase64 } from "../base64.ts";
import { type ProcStatus, readStatus } from "../proc/status.ts";
import { CryoError, RestoreError } from "../errors.ts";
import type { Refusals } from "../support.ts";

/** One installed seccomp filter. */
export interface SeccompFilter {
  /** SECCOMP_FILTER_FLAG_* it was installed with, as far as the kernel tells (LOG). */
  flags: number;
  /** The classic BPF program (struct sock_filter array), base64. */
  prog: string;
}

/** The seccomp state of one thread. */
export interface SeccompState {
  /** 0 none, 1 strict, 2 filters. */
  mode: number;
  /** The filters, oldest first (mode 2). */
  filters: SeccompFilter[];
}

/** Runs syscalls inside the restored threads of one process (by injection). */
export interface TaskInjector {
  /** Runs syscall `nr` in thread `tid`; returns the raw result (-errno on failure). */
  call(tid: number, nr: number, ...args: (number | bigint)[]): bigint;
  /** Writes `bytes` at `addr` in the process. */
  write(addr: bigint, bytes: Uint8Array): void;
}

const SECCOMP_MODE_STRICT = 1;
const SECCOMP_MODE_FILTER = 2;
const SECCOMP_SET_MODE_FILTER = 1;
const SECCOMP_FILTER_FLAG_TSYNC = 1;
const SECCOMP_FILTER_FLAG_LOG = 2;
const PR_SET_SECCOMP = 22;
const SECCOMP_RET_USER_NOTIF = 0x7fc00000;

/** The seccomp mode of thread `tid` of `pid` (0, 1 strict, 2 filter), from `status` when read. */
export function seccompMode(pid: number, tid: number, status?: ProcStatus): number {
  return (status ?? readStatus(pid, tid)).seccomp;
}

/**
 * Suspends seccomp for every stopped thread of `pid` that has it, so that
 * syscalls injected by cryo are not filtered; `options` are the tracee's
 * other PTRACE_O_* options (SETOPTIONS replaces them all).
 */
export function suspendSeccomp(
  pid: number,
  tids: readonly number[],
  options = 0,
  /** Each thread's status when already read (engine/proc/status.ts readThreadStatuses). */
  statuses?: ReadonlyMap<number, ProcStatus>,
): void {
  for (const tid of tids) {
    if (seccompMode(pid, tid, statuses?.get(tid)) !== 0) suspend(pid, tid, options);
  }
}

/** PTRACE_O_SUSPEND_SECCOMP on `tid`, with a clear error when cryo may not. */
function suspend(pid: number, tid: number, options: number): void {
  try {
    setTraceOptions(tid, options | PTRACE_O_SUSPEND_SECCOMP);
  } catch (e) {
    if (!(e instanceof SyscallError)) throw e;
    throw new CryoError(
      `process ${pid} thread ${tid} uses seccomp, which cryo cannot suspend while it works ` +
        `(PTRACE_O_SUSPEND_SECCOMP: ${e.code}; cryo needs CAP_SYS_ADMIN and no seccomp of its own)`,
    );
  }
}

/** Whether a BPF program may return SECCOMP_RET_USER_NOTIF (needs a listener fd). */
function usesUserNotif(prog: Uint8Array): boolean {
  const dv = new DataView(prog.buffer, prog.byteOffset, prog.byteLength);
  for (let i = 0; i + 8 <= prog.length; i += 8) {
    const code = dv.getUint16(i, true);
    const k = dv.getUint32(i + 4, true);
    if (code === 0x06 /* BPF_RET|BPF_K */ && (k & 0xffff0000) >>> 0 === SECCOMP_RET_USER_NOTIF) {
      return true;
    }
  }
  return false;
}

/**
 * Reads the seccomp state of stopped thread `tid` of `pid`. A filter that
 * hands syscalls to a user-space listener is refused (the listener is an
 * fd somewhere else; cryo cannot re-connect it).
 */
export function collectSeccomp(
  pid: number,
  tid: number,
  refusals: Refusals,
  /** The thread's status when already read. */
  status?: ProcStatus,
): SeccompState {
  const state = readSeccomp(pid, tid, status);
  state.filters.forEach((f, i) => {
    if (usesUserNotif(decodeBase64(f.prog))) {
      refusals.use("task.seccomp-notify", `process ${pid} thread ${tid} seccomp filter ${i}`);
    }
  });
  return state;
}

/** The seccomp mode and filter chain (oldest first) of stopped thread `tid` of `pid`. */
function readSeccomp(pid: number, tid: number, status?: ProcStatus): SeccompState {
  const mode = seccompMode(pid, tid, status);
  const filters: SeccompFilter[] = [];
  if (mode === SECCOMP_MODE_FILTER) {
    for (let index = 0;; index++) {
      const prog = seccompFilter(tid, index);
      if (!prog) break;
      const flags = Number(seccompFilterFlags(tid, index)) & SECCOMP_FILTER_FLAG_LOG;
      filters.push({ flags, prog: encodeBase64(prog) });
    }
  }
  return { mode, filters };
}

const sameFilter = (a: SeccompFilter, b: SeccompFilter) => a.flags === b.flags && a.prog === b.prog;

/** How many filters, from the oldest, every thread of `states` has in common. */
function commonPrefix(states: readonly SeccompState[]): number {
  if (states.some((s) => s.mode !== SECCOMP_MODE_FILTER)) return 0;
  let n = 0;
  for (;;) {
    const first = states[0].filters[n];
    if (!first || states.some((s) => !s.filters[n] || !sameFilter(s.filters[n], first))) return n;
    n++;
  }
}

/**
 * Re-installs the seccomp state of every thread of restored process `pid`
 * (threads as `[tid, state]`, the main thread first) by injection: filters
 * in their original order, shared ones once for all threads (TSYNC), then
 * each thread's own, then strict mode. `options` are the tracees' other
 * PTRACE_O_* options: seccomp is suspended until cryo detaches. Throws a
 * RestoreError naming the thread when the kernel refuses, or when the
 * chain read back differs from the image.
 */
export function restoreSeccomp(
  pid: number,
  threads: readonly [number, SeccompState][],
  inj: TaskInjector,
  options: number,
): void {
  const used = threads.filter(([, s]) => s.mode !== 0);
  if (used.length === 0) return;
  for (const [tid] of threads) suspend(pid, tid, options);
  const fail = (tid: number, what: string, r: bigint): never => {
    throw new RestoreError(
      `cannot restore seccomp of thread ${tid} of process ${pid}: ${what} failed: ${
        r > 0n ? `thread ${r} could not be synchronized` : errnoName(Number(-r))
      }`,
    );
  };
  const largest = Math.max(
    0,
    ...used.flatMap(([, s]) => s.filters.map((f) => decodeBase64(f.prog).length)),
  );
  let area = 0n;
  const areaSize = largest + 4096;
  if (largest > 0) {
    area = inj.call(pid, SYS.mmap, 0, areaSize, 3, 0x22, -1, 0);
    if (area < 0n) fail(pid, "mmap(filter area)", area);
  }
  const install = (tid: number, f: SeccompFilter, extraFlags: number, what: string) => {
    const prog = decodeBase64(f.prog);
    inj.write(area + 64n, prog);
    inj.write(area, sockFprog.encode({ len: prog.length / 8, filter: area + 64n }));
    const r = inj.call(tid, SYS.seccomp, SECCOMP_SET_MODE_FILTER, f.flags | extraFlags, area);
    if (r !== 0n) fail(tid, what, r);
  };
  const all = threads.map(([, s]) => s);
  const shared = threads.length > 1 ? commonPrefix(all) : 0;
  for (let i = 0; i < shared; i++) {
    install(pid, all[0].filters[i], SECCOMP_FILTER_FLAG_TSYNC, `seccomp filter ${i} (all threads)`);
  }
  for (const [tid, s] of threads) {
    for (let i = shared; i < s.filters.length; i++) {
      install(tid, s.filters[i], 0, `seccomp filter ${i}`);
    }
  }
  if (area !== 0n) inj.call(pid, SYS.munmap, area, areaSize);
  for (const [tid, s] of threads) {
    if (s.mode !== SECCOMP_MODE_STRICT) continue;
    const r = inj.call(tid, SYS.prctl, PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0);
    if (r !== 0n) fail(tid, "prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT)", r);
  }
  for (const [tid, want] of threads) {
    const now = readSeccomp(pid, tid);
    const same = now.mode === want.mode && now.filters.length === want.filters.length &&
      now.filters.every((f, i) => sameFilter(f, want.filters[i]));
    if (!same) {
      throw new RestoreError(
        `cannot restore seccomp of thread ${tid} of process ${pid}: mode ${now.mode} with ${now.filters.length} filters after restore differs from the image's mode ${want.mode} with ${want.filters.length}`,
      );
    }
  }
}
