/**
 * Process attributes outside scheduling: oom_score_adj, dumpable, child
 * subreaper, THP disable, membarrier registrations, login uid and session
 * id; and per thread the parent-death signal and no_new_privs.
 *
 * Dump reads what /proc shows (oom_score_adj, loginuid, sessionid,
 * NoNewPrivs) from outside and the rest by injected prctl/membarrier calls.
 * Restore sets subreaper, THP disable and membarrier in the restore program
 * (process-wide, no privilege needed); oom_score_adj from cryo and the
 * per-thread values by injection in the engine's finalize. A session id
 * cannot be given to a process (writing a login uid gets a new one):
 * restored processes inherit the restorer's login ids, or the launcher
 * writes the image's login uid (the unset value exactly; a set one only
 * with `--new-audit-session`, as it comes with a new session id).
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { errnoName } from "../../ffi/errno.ts";
import type { BatchStep } from "../../ffi/syscall_batch.ts";
import { CryoError } from "../errors.ts";
import type { InjectionSession } from "../dump/injected.ts";
import type { ProcessImage } from "../model.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import { readProcText } from "../proc/io.ts";
import { type ProcStatus, readStatus } from "../proc/status.ts";
import { readStat } from "../proc/stat.ts";
import { speculationCtrl } from "../../ffi/probe.ts";
import { RestoreError } from "../errors.ts";
import type { Refusals } from "../support.ts";
import type { TaskInjector } from "./seccomp.ts";
import type { LoginIdsOfThread } from "./thread_sharing.ts";
import {
  collectKeyrings,
  type KeyringIds,
  keyringIdsFrom,
  keyringSteps,
  type SessionKeyringKnown,
} from "./keyrings.ts";

/** Process-wide attributes. */
export interface ProcessAttrs {
  /** /proc/<pid>/oom_score_adj (-1000..1000). */
  oomScoreAdj: number;
  /** PR_GET_DUMPABLE (0 or 1; 2 is refused at dump). */
  dumpable: number;
  /** PR_GET_CHILD_SUBREAPER. */
  childSubreaper: boolean;
  /** PR_GET_THP_DISABLE as returned (bit 0 disabled, higher bits its flags). */
  thpDisable: number;
  /** MEMBARRIER_CMD_GET_REGISTRATIONS: the register commands in effect. */
  membarrier: number;
  /** PR_GET_MDWE (memory-deny-write-execute flags), absent when 0 or from older images. */
  mdwe?: number;
  /**
   * In images written before they were saved per thread ({@link ThreadAttrs}):
   * the main thread's PR_GET_TSC (1 enable, 2 SIGSEGV) and PR_MCE_KILL_GET
   * (0 late, 1 early, 2 default), absent when the default; restore gives
   * them to the threads that have none of their own.
   */
  tsc?: number;
  mceKill?: number;
  /**
   * The main thread's speculation controls (PR_GET_SPECULATION_CTRL) that a
   * process can set, where they differ from cryo's own (which restored
   * tasks inherit): the PR_SPEC_* value to set; absent in older images.
   */
  speculation?: Partial<Record<SpeculationControl, number>>;
  /** The session keyring's serial when not the user's fallback (keyrings.ts). */
  sessionKeyring?: number;
  /** /proc/<pid>/coredump_filter (hex), absent in older images. */
  coredumpFilter?: string;
  /** /proc/<pid>/loginuid (4294967295 = unset). */
  loginuid: number;
  /** /proc/<pid>/sessionid (4294967295 = unset). */
  sessionid: number;
  /**
   * The nice value of its scheduler autogroup (/proc/<pid>/autogroup, one
   * per session), when not 0; set again once the restored session exists.
   */
  autogroupNice?: number;
}

/** Per-thread attributes. */
export interface ThreadAttrs {
  /** PR_GET_PDEATHSIG (0 = none). */
  pdeathsig: number;
  /** no_new_privs (NoNewPrivs of the thread's status). */
  noNewPrivs: boolean;
  /** PR_SET_IO_FLUSHER in effect (PF_MEMALLOC_NOIO and PF_LOCAL_THROTTLE in its stat flags). */
  ioFlusher?: true;
  /** PR_GET_TSC when not the default (2: SIGSEGV), read in the thread. */
  tsc?: number;
  /**
   * PR_MCE_KILL_GET when not the default (0 late, 1 early): PF_MCE_PROCESS
   * and PF_MCE_EARLY in its stat flags.
   */
  mceKill?: number;
  /** The thread's personality where it is not the process's (its main thread's). */
  personality?: number;
}

/** What each thread's injected batch (or the task iterator) read for {@link ThreadAttrs}. */
export interface ThreadCpuValues {
  /** PR_GET_TSC. */
  tsc: number;
  /** personality(0xffffffff). */
  personality: number;
  /** get_mempolicy's mode (0: the default; -1: not the default, mode unknown). */
  mempolicy: number;
  /** PR_GET_SPECULATION_CTRL of each control, when read by injection. */
  speculation?: number[];
  /** Its thread keyring's serial (-errno: none), when read by injection. */
  threadKeyring?: number;
}

/** What the task iterator's records say per thread (engine/dump/thread_state.ts). */
export interface ThreadRecordValues {
  /** task->nsproxy, task->fs, task->files. */
  nsproxy: ReadonlyMap<number, bigint>;
  fs: ReadonlyMap<number, bigint>;
  files: ReadonlyMap<number, bigint>;
  /** The speculation-control bits of task->atomic_flags. */
  specFlags: ReadonlyMap<number, number>;
  /** cred->thread_keyring (0: none). */
  threadKeyring: ReadonlyMap<number, bigint>;
  /** task->loginuid and task->sessionid (engine/task/thread_sharing.ts). */
  loginIds?: ReadonlyMap<number, LoginIdsOfThread>;
}

/**
 * Refuses the threads of `pid` whose speculation controls differ from the
 * main thread's (restore gives the main thread's to every thread):
 * compared by their PR_GET_SPECULATION_CTRL values where each thread read
 * its own (`cpu`), else by the speculation bits of the task iterator's
 * atomic_flags (store bypass, indirect branch; the iterator is not used
 * for the threads where the L1D flush control is per task: engine/dump/injected.ts).
 */
export function checkThreadSpeculation(
  pid: number,
  tids: readonly number[],
  refusals: Refusals,
  cpu?: ReadonlyMap<number, ThreadCpuValues>,
  records?: ThreadRecordValues,
): void {
  const mine = cpu?.get(pid)?.speculation;
  const mineFlags = records?.specFlags.get(pid);
  for (const tid of tids) {
    if (tid === pid) continue;
    const theirs = cpu?.get(tid)?.speculation;
    let detail: string | undefined;
    if (mine && theirs) {
      const i = theirs.findIndex((v, i) => v !== mine[i]);
      if (i >= 0) {
        detail = `its ${SPECULATION_CONTROLS[i]} control is ${theirs[i]}, the main thread's ${
          mine[i]
        }`;
      }
    } else {
      const flags = records?.specFlags.get(tid);
      if (flags !== undefined && mineFlags !== undefined && flags !== mineFlags) {
        detail = `its speculation flags are 0x${flags.toString(16)}, the main thread's 0x${
          mineFlags.toString(16)
        }`;
      }
    }
    if (detail) refusals.use("task.thread-speculation", `process ${pid} thread ${tid}`, detail);
  }
}

/** The speculation controls of PR_SET_SPECULATION_CTRL, in the kernel's order (0, 1, 2). */
export const SPECULATION_CONTROLS = ["storeBypass", "indirectBranch", "l1dFlush"] as const;
/** One of {@link SPECULATION_CONTROLS}. */
export type SpeculationControl = typeof SPECULATION_CONTROLS[number];

/** What the injected queries of {@link queryAttrs} found. */
export interface InjectedAttrs {
  dumpable: number;
  childSubreaper: boolean;
  thpDisable: number;
  /** Registrations, or -errno when the kernel cannot tell. */
  membarrier: number;
  /** PR_GET_MDWE of the main thread (0 when not read). */
  mdwe?: number;
  /** PR_GET_SPECULATION_CTRL of each control in the main thread (-errno when unsupported). */
  speculation?: number[];
  /** The special keyrings' serials (keyrings.ts), when read. */
  keyrings?: KeyringIds;
  /** Parent-death signal by tid. */
  pdeathsig: Map<number, number>;
  /** Timer slack by tid (PR_GET_TIMERSLACK in each thread), when read by injection. */
  timerSlackNs?: ReadonlyMap<number, number>;
  /** TSC mode, personality and NUMA policy by tid, when read (engine/dump/injected.ts). */
  cpu?: ReadonlyMap<number, ThreadCpuValues>;
}

const PR_SET_PDEATHSIG = 1;
const PR_GET_PDEATHSIG = 2;
const PR_GET_DUMPABLE = 3;
const PR_SET_DUMPABLE = 4;
const PR_SET_CHILD_SUBREAPER = 36;
const PR_GET_CHILD_SUBREAPER = 37;
const PR_SET_NO_NEW_PRIVS = 38;
const PR_SET_THP_DISABLE = 41;
const PR_GET_THP_DISABLE = 42;
const MEMBARRIER_CMD_GET_REGISTRATIONS = 1 << 9;
const PR_SET_TSC = 26;
const PR_TSC_ENABLE = 1;
const PR_MCE_KILL = 33;
const PR_MCE_KILL_SET = 1;
const PR_MCE_KILL_DEFAULT = 2;
const PR_SET_MDWE = 65;
const PR_GET_MDWE = 66;
const PR_GET_SPECULATION_CTRL = 52;
const PR_SET_SPECULATION_CTRL = 53;
/** PR_SPEC_PRCTL: the process may change the control. */
const PR_SPEC_PRCTL = 1;
/** PR_SPEC_FORCE_DISABLE: cannot be undone, so set last. */
const PR_SPEC_FORCE_DISABLE = 8;
const PR_SET_IO_FLUSHER = 57;
/** PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE: what PR_SET_IO_FLUSHER sets. */
const PF_IO_FLUSHER = 0x00080000 | 0x00100000;
/** PF_MCE_PROCESS: the thread has its own MCE kill policy (PR_MCE_KILL_SET). */
const PF_MCE_PROCESS = 0x00000080;
/** PF_MCE_EARLY: that policy is early kill. */
const PF_MCE_EARLY = 0x08000000;
const PR_MCE_KILL_LATE = 0;
const PR_MCE_KILL_EARLY = 1;
const SUID_DUMP_ROOT = 2;

/** The process-wide attributes {@link queryAttrs} reads in the main thread. */
export type ProcessAttrValues = Pick<
  InjectedAttrs,
  | "dumpable"
  | "childSubreaper"
  | "thpDisable"
  | "membarrier"
  | "mdwe"
  | "speculation"
  | "keyrings"
>;

/**
 * The process-wide queries of {@link queryAttrs} as steps of the main
 * thread's batch (engine/dump/injected.ts `queryInjectedState`), instead of
 * one injected round trip each; `out`: 4 bytes of the target's scratch
 * for the subreaper flag. Decoded by {@link processAttrsFrom}. (TSC mode
 * and MCE kill policy are read per thread: engine/dump/injected.ts.)
 */
export function processAttrSteps(
  out: bigint,
  /** Whether the main thread has a session keyring, when known (engine/task/keyrings.ts). */
  session?: SessionKeyringKnown,
): BatchStep[] {
  return [
    { nr: SYS.prctl, args: [PR_GET_CHILD_SUBREAPER, out] },
    { nr: SYS.prctl, args: [PR_GET_DUMPABLE] },
    { nr: SYS.prctl, args: [PR_GET_THP_DISABLE, 0, 0, 0, 0] },
    { nr: SYS.membarrier, args: [MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0] },
    { nr: SYS.prctl, args: [PR_GET_MDWE, 0, 0, 0, 0] },
    ...SPECULATION_CONTROLS.map((_, i) => ({
      nr: SYS.prctl,
      args: [PR_GET_SPECULATION_CTRL, i, 0, 0, 0],
    })),
    ...keyringSteps(session),
  ];
}

/** Where the speculation controls' results stand among {@link processAttrSteps}' results. */
export const SPECULATION_STEPS_AT = 5;

/** MDWE from its prctl's result: a kernel without it (EINVAL) has none. */
function mdweFrom(r: bigint): number {
  return r >= 0n ? Number(r) : 0;
}

/**
 * The values of {@link processAttrSteps}' results `r` (in order) and of
 * the 4 bytes at its `out`; a failed prctl throws as {@link queryAttrs}'
 * own calls do.
 */
export function processAttrsFrom(
  pid: number,
  r: readonly bigint[],
  out: Uint8Array,
  /** What {@link processAttrSteps} was given. */
  session?: SessionKeyringKnown,
): ProcessAttrValues {
  ["prctl(PR_GET_CHILD_SUBREAPER)", "prctl(PR_GET_DUMPABLE)", "prctl(PR_GET_THP_DISABLE)"]
    .forEach((what, i) => {
      if (r[i] < 0n) {
        throw new CryoError(
          `process ${pid}: ${what} in the target failed: ${errnoName(Number(-r[i]))}`,
        );
      }
    });
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  return {
    dumpable: Number(r[1]),
    childSubreaper: dv.getInt32(0, true) !== 0,
    thpDisable: Number(r[2]),
    membarrier: membarrierRegistrations(r[3]),
    mdwe: mdweFrom(r[4]),
    speculation: r.slice(SPECULATION_STEPS_AT, SPECULATION_STEPS_AT + SPECULATION_CONTROLS.length)
      .map(Number),
    keyrings: keyringIdsFrom(r.slice(SPECULATION_STEPS_AT + SPECULATION_CONTROLS.length), session),
  };
}

/** Reads dumpable, subreaper, THP disable, membarrier and each thread's pdeathsig by injection. */
export function queryAttrs(
  s: InjectionSession,
  tids: readonly number[],
  /** Each thread's parent-death signal when already read (engine/dump/injected.ts). */
  known?: ReadonlyMap<number, number>,
  /** The process-wide values when already read in the main thread's batch ({@link processAttrSteps}). */
  read?: ProcessAttrValues,
): InjectedAttrs {
  const main = s.pid;
  const int32 = (off: number) => new DataView(s.read(off, 4).buffer).getInt32(0, true);
  if (!read) {
    s.check(main, "prctl(PR_GET_CHILD_SUBREAPER)", SYS.prctl, PR_GET_CHILD_SUBREAPER, s.scratch);
  }
  const childSubreaper = read ? read.childSubreaper : int32(0) !== 0;
  const pdeathsig = new Map<number, number>();
  for (const tid of tids) {
    const k = known?.get(tid);
    if (k !== undefined) {
      pdeathsig.set(tid, k);
      continue;
    }
    s.check(tid, "prctl(PR_GET_PDEATHSIG)", SYS.prctl, PR_GET_PDEATHSIG, s.scratch + 8n);
    pdeathsig.set(tid, int32(8));
  }
  if (read) return { ...read, pdeathsig };
  return {
    dumpable: Number(s.check(main, "prctl(PR_GET_DUMPABLE)", SYS.prctl, PR_GET_DUMPABLE)),
    childSubreaper,
    thpDisable: Number(
      s.check(main, "prctl(PR_GET_THP_DISABLE)", SYS.prctl, PR_GET_THP_DISABLE, 0, 0, 0, 0),
    ),
    membarrier: membarrierRegistrations(
      s.call(main, SYS.membarrier, MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0),
    ),
    mdwe: mdweFrom(s.call(main, SYS.prctl, PR_GET_MDWE, 0, 0, 0, 0)),
    speculation: SPECULATION_CONTROLS.map((_, i) =>
      Number(s.call(main, SYS.prctl, PR_GET_SPECULATION_CTRL, i, 0, 0, 0))
    ),
    keyrings: keyringIdsFrom(
      keyringSteps().map((step) => s.call(main, step.nr, ...step.args)),
    ),
    pdeathsig,
  };
}

/** A kernel without membarrier (ENOSYS) has no registrations; other errors mean it cannot tell. */
function membarrierRegistrations(r: bigint): number {
  return r === -38n /* ENOSYS */ ? 0 : Number(r);
}

/**
 * The speculation controls to save: those the process may set
 * (PR_SPEC_PRCTL; an unsupported control, EINVAL or ENODEV, or one the
 * kernel fixes, has no per-process state) whose value differs from cryo's
 * own, which restored tasks inherit; undefined when none.
 */
function speculationToSave(read: readonly number[] | undefined) {
  const out: Partial<Record<SpeculationControl, number>> = {};
  SPECULATION_CONTROLS.forEach((name, i) => {
    const v = read?.[i] ?? -1;
    if (v < 0 || !(v & PR_SPEC_PRCTL)) return;
    if (v === Number(speculationCtrl(i))) return;
    out[name] = v & ~PR_SPEC_PRCTL;
  });
  return Object.keys(out).length ? { speculation: out } : {};
}

/** `{ [key]: value }`, or nothing when `value` is undefined. */
function optional<K extends string>(key: K, value: number | undefined) {
  return value === undefined ? {} : { [key]: value } as Record<K, number>;
}

function procNumber(pid: number, name: string): number {
  return Number(readProcText(pid, name).trim());
}

/**
 * The process attributes of `pid` (from /proc and `injected`); reports
 * what cannot be restored to `refusals`.
 */
export function collectProcessAttrs(
  pid: number,
  injected: InjectedAttrs,
  refusals: Refusals,
): ProcessAttrs {
  if (injected.dumpable === SUID_DUMP_ROOT) {
    refusals.use("task.dumpable-root", `process ${pid}`);
  }
  if (injected.membarrier < 0) {
    refusals.use(
      "task.membarrier-unknown",
      `process ${pid}`,
      `this kernel cannot tell (${errnoName(-injected.membarrier)})`,
    );
  }
  return {
    oomScoreAdj: procNumber(pid, "oom_score_adj"),
    dumpable: injected.dumpable,
    childSubreaper: injected.childSubreaper,
    thpDisable: injected.thpDisable,
    membarrier: Math.max(0, injected.membarrier),
    ...(injected.mdwe ? { mdwe: injected.mdwe } : {}),
    ...speculationToSave(injected.speculation),
    coredumpFilter: readProcText(pid, "coredump_filter").trim(),
    ...optional("sessionKeyring", collectKeyrings(pid, injected.keyrings, refusals)),
    loginuid: procNumber(pid, "loginuid"),
    sessionid: procNumber(pid, "sessionid"),
    ...optional("autogroupNice", autogroupNice(pid)),
  };
}

/** The nice value of `pid`'s autogroup when not 0 (undefined without autogroups). */
function autogroupNice(pid: number): number | undefined {
  let text: string;
  try {
    text = readProcText(pid, "autogroup");
  } catch {
    return undefined; // a kernel without CONFIG_SCHED_AUTOGROUP
  }
  const nice = Number(text.match(/ nice (-?\d+)/)?.[1] ?? 0);
  return nice === 0 ? undefined : nice;
}

/**
 * Dump: refuses an autogroup nice value of a process whose session leader
 * is not in the tree: the restored process joins the restorer's session
 * (its autogroup), whose nice value is not the image's to set.
 */
export function checkAutogroups(images: readonly ProcessImage[], refusals: Refusals): void {
  const pids = new Set(images.map((p) => p.pid));
  for (const p of images) {
    const nice = p.attrs?.autogroupNice;
    if (nice === undefined || pids.has(p.sid)) continue;
    refusals.use(
      "task.autogroup-outside",
      `process ${p.pid}`,
      `its session ${p.sid} (outside the tree) has autogroup nice ${nice}`,
    );
  }
}

/**
 * The attributes of thread `tid` of `pid` (`status`: its status when
 * already read; `taskFlags`: its task->flags when already known, from the
 * BPF task iterator, else its stat file is read); reports a NUMA memory
 * policy whose mode could not be read to `refusals` (one that was read is
 * saved: engine/memory/mempolicy.ts).
 */
export function collectThreadAttrs(
  pid: number,
  tid: number,
  injected: InjectedAttrs,
  status?: ProcStatus,
  refusals?: Refusals,
  taskFlags?: number,
): ThreadAttrs {
  const flags = taskFlags ?? readStat(pid, tid).flags;
  const cpu = injected.cpu?.get(tid);
  const main = injected.cpu?.get(pid);
  // A policy whose mode was read is saved (engine/memory/mempolicy.ts); one the
  // iterator saw but no call read (-1: the call failed) cannot be.
  if (cpu && cpu.mempolicy < 0) {
    refusals?.use("task.mempolicy", `process ${pid} thread ${tid}`, "its mode could not be read");
  }
  const mce = (flags & PF_MCE_PROCESS) === 0
    ? PR_MCE_KILL_DEFAULT
    : (flags & PF_MCE_EARLY) !== 0
    ? PR_MCE_KILL_EARLY
    : PR_MCE_KILL_LATE;
  return {
    pdeathsig: injected.pdeathsig.get(tid) ?? 0,
    noNewPrivs: (status ?? readStatus(pid, tid)).noNewPrivs,
    ...(isIoFlusher(flags) ? { ioFlusher: true } : {}),
    ...(cpu && cpu.tsc !== PR_TSC_ENABLE ? { tsc: cpu.tsc } : {}),
    ...(mce !== PR_MCE_KILL_DEFAULT ? { mceKill: mce } : {}),
    ...(cpu && main && cpu.personality !== main.personality
      ? { personality: cpu.personality }
      : {}),
  };
}

/** Whether a task's PF_* flags (task->flags, stat's ninth field) hold PR_SET_IO_FLUSHER's two bits. */
export function isIoFlusher(flags: number): boolean {
  return (flags & PF_IO_FLUSHER) === PF_IO_FLUSHER;
}

/** Emits the restore-program ops of the process-wide attributes (main thread, no privilege). */
export function emitProcessAttrs(p: ProgramBuilder, a: ProcessAttrs): void {
  p.op(SYS.prctl, [PR_SET_CHILD_SUBREAPER, a.childSubreaper ? 1 : 0, 0, 0, 0], {
    comment: "child subreaper",
  });
  p.op(SYS.prctl, [PR_SET_THP_DISABLE, a.thpDisable & 1, a.thpDisable & ~1, 0, 0], {
    comment: "THP disable",
  });
  for (let bit = 0; bit < 31; bit++) {
    const cmd = 1 << bit;
    if (a.membarrier & cmd) {
      p.op(SYS.membarrier, [cmd, 0, 0], { comment: `membarrier register 0x${cmd.toString(16)}` });
    }
  }
}

/** Runs prctl in thread `tid` by injection; throws a RestoreError naming it on failure. */
function prctlIn(inj: TaskInjector, pid: number, tid: number, what: string, ...args: number[]) {
  const r = inj.call(tid, SYS.prctl, ...args);
  if (r < 0n) {
    throw new RestoreError(
      `cannot restore thread ${tid} of process ${pid}: ${what} failed: ${errnoName(Number(-r))}`,
    );
  }
}

/**
 * Sets oom_score_adj (from cryo, read back) and each thread's no_new_privs
 * (by injection): what must be in place before credentials are dropped
 * and before seccomp filters are installed.
 */
export function restoreAttrsBeforeCredentials(image: ProcessImage, inj: TaskInjector): void {
  const pid = image.pid;
  const a = image.attrs!;
  try {
    Deno.writeTextFileSync(`/proc/${pid}/oom_score_adj`, String(a.oomScoreAdj));
  } catch (e) {
    throw new RestoreError(
      `cannot restore oom_score_adj ${a.oomScoreAdj} of process ${pid}: ${(e as Error).message}`,
    );
  }
  const now = procNumber(pid, "oom_score_adj");
  if (now !== a.oomScoreAdj) {
    throw new RestoreError(
      `cannot restore oom_score_adj of process ${pid}: it is ${now}, the image has ${a.oomScoreAdj}`,
    );
  }
  if (a.coredumpFilter !== undefined) restoreCoredumpFilter(pid, a.coredumpFilter);
  if (a.autogroupNice !== undefined) restoreAutogroupNice(pid, a.autogroupNice);
  for (const t of image.threads) {
    if (t.attrs!.noNewPrivs) {
      prctlIn(inj, pid, t.tid, "prctl(PR_SET_NO_NEW_PRIVS)", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    }
    if (t.attrs!.ioFlusher) {
      // Needs CAP_SYS_RESOURCE: before credentials are dropped.
      prctlIn(inj, pid, t.tid, "prctl(PR_SET_IO_FLUSHER, 1)", PR_SET_IO_FLUSHER, 1, 0, 0, 0);
    }
  }
}

/** Writes the nice value of `pid`'s autogroup (its session's) and reads it back. */
function restoreAutogroupNice(pid: number, nice: number): void {
  try {
    Deno.writeTextFileSync(`/proc/${pid}/autogroup`, String(nice));
  } catch (e) {
    throw new RestoreError(
      `cannot restore the autogroup nice ${nice} of process ${pid}: ${(e as Error).message}`,
    );
  }
  const now = autogroupNice(pid) ?? 0;
  if (now !== nice) {
    throw new RestoreError(
      `cannot restore the autogroup nice of process ${pid}: it is ${now}, the image has ${nice}`,
    );
  }
}

/** Writes /proc/<pid>/coredump_filter and reads it back. */
function restoreCoredumpFilter(pid: number, filter: string): void {
  try {
    Deno.writeTextFileSync(`/proc/${pid}/coredump_filter`, `0x${filter}`);
  } catch (e) {
    throw new RestoreError(
      `cannot restore coredump_filter ${filter} of process ${pid}: ${(e as Error).message}`,
    );
  }
  const now = readProcText(pid, "coredump_filter").trim();
  if (now !== filter) {
    throw new RestoreError(
      `cannot restore coredump_filter of process ${pid}: it is ${now}, the image has ${filter}`,
    );
  }
}

/**
 * Sets each thread's TSC mode and MCE kill policy (its own; in older images
 * the main thread's, given to every thread) and personality where it is
 * not the process's, then the process's memory-deny-write-execute flags,
 * last: MDWE cannot be undone and refuses executable mappings made writable.
 */
export function restoreCpuAndMdwe(image: ProcessImage, inj: TaskInjector): void {
  const pid = image.pid;
  const a = image.attrs!;
  for (const t of image.threads) {
    const tsc = t.attrs?.tsc ?? a.tsc;
    if (tsc !== undefined) {
      prctlIn(inj, pid, t.tid, `prctl(PR_SET_TSC, ${tsc})`, PR_SET_TSC, tsc, 0, 0, 0);
    }
    const mceKill = t.attrs?.mceKill ?? a.mceKill;
    if (mceKill !== undefined) {
      prctlIn(
        inj,
        pid,
        t.tid,
        `prctl(PR_MCE_KILL, ${mceKill})`,
        PR_MCE_KILL,
        PR_MCE_KILL_SET,
        mceKill,
        0,
        0,
      );
    }
    const personality = t.attrs?.personality;
    if (personality !== undefined) {
      // Returns the previous personality: check by reading it back.
      inj.call(t.tid, SYS.personality, personality);
      const now = Number(BigInt.asUintN(32, inj.call(t.tid, SYS.personality, 0xffffffff)));
      if (now !== personality) {
        throw new RestoreError(
          `cannot restore thread ${t.tid} of process ${pid}: its personality is 0x${
            now.toString(16)
          }, the image has 0x${personality.toString(16)}`,
        );
      }
    }
  }
  // A forced disable cannot be undone: after the others.
  const spec = Object.entries(a.speculation ?? {}) as [SpeculationControl, number][];
  spec.sort(([, x], [, y]) =>
    Number(x === PR_SPEC_FORCE_DISABLE) - Number(y === PR_SPEC_FORCE_DISABLE)
  );
  for (const [name, v] of spec) {
    const which = SPECULATION_CONTROLS.indexOf(name);
    for (const t of image.threads) {
      const what = `prctl(PR_SET_SPECULATION_CTRL, ${which}, ${v})`;
      prctlIn(inj, pid, t.tid, what, PR_SET_SPECULATION_CTRL, which, v, 0, 0);
    }
  }
  if (a.mdwe) prctlIn(inj, pid, pid, `prctl(PR_SET_MDWE, ${a.mdwe})`, PR_SET_MDWE, a.mdwe, 0, 0, 0);
}

/**
 * Sets each thread's parent-death signal and the process's dumpable flag
 * (by injection). The kernel resets both when euid, egid, fsuid or fsgid
 * change, so this comes after credentials are restored.
 */
export function restoreAttrsAfterCredentials(image: ProcessImage, inj: TaskInjector): void {
  const pid = image.pid;
  for (const t of image.threads) {
    const sig = t.attrs!.pdeathsig;
    // Every restored task starts with none (a new task's is 0; nothing in a restore sets it).
    if (sig === 0) continue;
    prctlIn(inj, pid, t.tid, `prctl(PR_SET_PDEATHSIG, ${sig})`, PR_SET_PDEATHSIG, sig);
  }
  const dumpable = image.attrs!.dumpable;
  prctlIn(inj, pid, pid, `prctl(PR_SET_DUMPABLE, ${dumpable})`, PR_SET_DUMPABLE, dumpable);
}

/** The value /proc shows for a login uid or session id never set. */
export const LOGIN_ID_UNSET = 4294967295;

/** A login uid and session id (/proc/<pid>/loginuid, /proc/<pid>/sessionid). */
export interface LoginIds {
  loginuid: number;
  sessionid: number;
}

/**
 * The restorer's own login ids: what every process it creates inherits.
 * They are per thread, and a child inherits its creator thread's: read for
 * the thread that runs cryo's JavaScript, which spawns the launcher.
 */
export function ownLoginIds(): LoginIds {
  const read = (name: string) => Number(Deno.readTextFileSync(`/proc/thread-self/${name}`).trim());
  return { loginuid: read("loginuid"), sessionid: read("sessionid") };
}

/** The one login id pair of the images, or the pids of two processes whose pairs differ. */
function imageLoginIds(
  processes: readonly ProcessImage[],
): LoginIds | undefined | { differ: [number, number] } {
  let first: ProcessImage | undefined;
  for (const p of processes) {
    if (!p.attrs) continue;
    if (!first) first = p;
    else if (
      p.attrs.loginuid !== first.attrs!.loginuid || p.attrs.sessionid !== first.attrs!.sessionid
    ) return { differ: [first.pid, p.pid] };
  }
  return first && { loginuid: first.attrs!.loginuid, sessionid: first.attrs!.sessionid };
}

/**
 * The login uid the restore writes (in the launcher, before the root is
 * created, so that the whole tree inherits it) where the images' login ids
 * are not the restorer's; undefined where they are. Writing the unset
 * value gives back an unset login uid and session id exactly; writing a
 * set one makes the kernel give a new audit session id, which only
 * `newAuditSession` accepts. Assumes {@link checkLoginIds} passed.
 */
export function loginuidToWrite(
  processes: readonly ProcessImage[],
  self: LoginIds = ownLoginIds(),
): number | undefined {
  const ids = imageLoginIds(processes);
  if (!ids || "differ" in ids) return undefined;
  if (ids.loginuid === self.loginuid && ids.sessionid === self.sessionid) return undefined;
  return ids.loginuid;
}

/**
 * Restore pre-flight: login uid and session id are inherited from the
 * restorer, and a process can only set its own login uid (the kernel then
 * gives it a new session id, or none for the unset value). Refuses images
 * whose processes had different login ids, and a set login uid and session
 * id other than the restorer's unless `newAuditSession` (the tree then gets
 * its login uid back with a new session id). `launcherless`: the root
 * exists already (a cryo launch namespace), no launcher writes anything.
 */
export function checkLoginIds(
  processes: readonly ProcessImage[],
  newAuditSession: boolean,
  launcherless = false,
  self: LoginIds = ownLoginIds(),
): void {
  const ids = imageLoginIds(processes);
  if (!ids) return;
  if ("differ" in ids) {
    const [a, b] = ids.differ;
    throw new RestoreError(
      `cannot restore: processes ${a} and ${b} had different login uids or session ids ` +
        `(a restore gives every process of the tree the same)`,
    );
  }
  if (ids.loginuid === self.loginuid && ids.sessionid === self.sessionid) return;
  const pid = processes.find((p) => p.attrs)!.pid;
  const had = `process ${pid} had login uid ${ids.loginuid} and session id ${ids.sessionid}`;
  if (launcherless) {
    throw new RestoreError(
      `cannot restore: ${had}, and a restore into its own pid namespace gives the tree ` +
        `the restorer's (login uid ${self.loginuid}, session id ${self.sessionid})`,
    );
  }
  const unset = ids.loginuid === LOGIN_ID_UNSET && ids.sessionid === LOGIN_ID_UNSET;
  if (unset || newAuditSession) return;
  throw new RestoreError(
    `cannot restore: ${had}; restored processes get the restorer's session id ` +
      `(${self.sessionid}): --new-audit-session gives them login uid ${ids.loginuid} ` +
      `with a new session id`,
  );
}
