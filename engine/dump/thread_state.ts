/**
 * Whether the per-thread state that injected syscalls report (sigaltstack,
 * clear_child_tid, parent-death signal, securebits, timer slack) comes
 * from the BPF task iterator instead (engine/proc/thread_state_bpf.ts): the
 * threads but the main one then need no injection at all.
 *
 * The iterator's values are used for a process only when
 * - it has {@link threadStateBpf}.minThreads threads or more (or
 *   `CRYO_THREADSTATE=bpf`; `=inject` never), the program was loaded before
 *   the freeze ({@link warmUpThreadStates}: when the root process has that
 *   many threads), cryo runs in the initial pid
 *   namespace (the records carry tids of that namespace) and the records
 *   are exactly the process's threads;
 * - no thread's stack pointer lies on or just above its alternate stack
 *   (where the SS_ONSTACK flag an injected sigaltstack reports could differ
 *   from the one derived from the thread's own stack pointer);
 * - a check on this boot found the iterator's values equal to the injected
 *   ones thread by thread in a real process, and saw every field the
 *   process sets (a value other than 0) with a value other than 0 there
 *   (remembered per boot: engine/proc/vm_flags_memo.ts). Until then the
 *   process is injected as before and the iterator's values are compared
 *   with the injected ones: that comparison is the check (one difference
 *   and the iterator is not used again on this boot);
 * - the main thread, injected anyway for the process-wide state, shows the
 *   same values in both.
 * Otherwise every thread is injected as before. The reason is kept in
 * {@link threadStatePaths}, which the tests read.
 *
 * The same records give the process's mlockall(MCL_FUTURE) state (the main
 * thread's mm->def_flags: VM_LOCKED, VM_LOCKONFAULT): taken instead of the
 * injected probe (engine/memory/flags.ts `probeMlockFuture`: an mmap, an
 * munmap and two status reads in the freeze) when the thread states are;
 * otherwise the probe is made and compared with it, as part of the check.
 *
 * @module
 */

import { getRegs } from "../../ffi/ptrace.ts";
import {
  credRange,
  decodeTaskRecords,
  TASK_RECORD_SIZE,
  type TaskRecord,
  type TaskStateLayout,
  TIF_FLAGS_AT,
} from "../../ffi/bpf_task.ts";
import { bytesEqual } from "../../ffi/libc.ts";
import type { ProcStatus } from "../proc/status.ts";
import {
  flagsNeedStackPointer,
  inInitialPidNamespace,
  loadThreadIterator,
  nearAltStack,
  noTscBit,
  readThreadRecordBytes,
  readThreadRecords,
  recordHasChildren,
  sigaltstackFlags,
  threadIteratorLoaded,
  threadIteratorUnavailable,
} from "../proc/thread_state_bpf.ts";
import {
  type RecalledThreadState,
  recallThreadState,
  rememberThreadCheck,
  rememberThreadRefuted,
} from "../proc/vm_flags_memo.ts";
import { readStat } from "../proc/stat.ts";
import { listTids, readChildrenOfThreads } from "../proc/tasks.ts";
import { isIoFlusher } from "../task/attrs.ts";
import type { LoginIdsOfThread } from "../task/thread_sharing.ts";
import type { InjectedThreadState } from "./injected.ts";
import { warmUpLandlock } from "../task/landlock.ts";

/** From how many threads the iterator is used (tests may change it). */
export const threadStateBpf = { minThreads: 8 };

/** Per process of the last dumps: where its threads' state came from ("bpf", "bpf: checked", "inject: <why>"). */
export const threadStatePaths = new Map<number, string>();

/** The memo as read by {@link warmUpThreadStates} before this dump's freeze (null: not read). */
let recalled: RecalledThreadState | undefined | null = null;

/**
 * Before the freeze: when root process `root` has threads enough, loads
 * the task program (the verifier: ~0.5 ms, or the BTF read too: ~30 ms,
 * once per boot), reads the memo, so that the freeze does neither, and the
 * root's records once (compiled in the freeze); on a host with Landlock
 * enabled (every process's domains are read in the freeze), the small
 * Landlock program when the task program is not loaded
 * (engine/task/landlock.ts `warmUpLandlock`). Never throws.
 */
export function warmUpThreadStates(root: number): void {
  recalled = null;
  predicted = undefined;
  warmUpIterator(root);
  // Every process's Landlock domains are read in the freeze: the program loaded above serves,
  // else a small one is loaded now (engine/task/landlock.ts).
  warmUpLandlock();
}

/** {@link warmUpThreadStates}'s load of the task program and read of `root`'s records, when it has threads enough. */
function warmUpIterator(root: number): void {
  const mode = override();
  if (mode === "inject") return;
  try {
    if (mode !== "bpf" && readStat(root).numThreads < threadStateBpf.minThreads) return;
  } catch {
    return;
  }
  if (!loadThreadIterator()) return;
  recalled = recallThreadState();
  warmUpRecords(root);
}

/**
 * engine/proc/tasks.ts `readChildren` of running process `pid`, for the
 * dump's estimate of its tree: for a process whose threads' records the
 * dump reads ({@link warmUpThreadStates}'s rule; the task program loaded
 * now, as it would be a moment later), only the children files of the
 * threads whose record says they have children (their task->children list
 * not empty, as {@link childrenByIterator} reads them in the freeze): 64
 * threads, one iterator read, instead of 64 files. Every thread's file
 * otherwise, or when the records are not the threads listed. Of a running
 * tree this is a guess, as a read of every file is: a child made meanwhile
 * is the freeze's to find. ProcessGoneError if `pid` is gone.
 */
export function childrenOfRunning(pid: number): number[] {
  const tids = listTids(pid);
  const mode = override();
  if (
    mode !== "inject" && (mode === "bpf" || tids.length >= threadStateBpf.minThreads) &&
    inInitialPidNamespace() && loadThreadIterator()
  ) {
    try {
      const records = readThreadRecords(pid);
      const listed = new Set(tids);
      if (
        records.length === listed.size && records.every((r) => r.tgid === pid && listed.has(r.tid))
      ) {
        childrenIteratorStats.running++;
        const parents = records.filter(recordHasChildren).map((r) => r.tid);
        return parents.length ? readChildrenOfThreads(pid, parents) : [];
      }
    } catch { /* every thread's file, as below */ }
  }
  return readChildrenOfThreads(pid, tids);
}

/** The threads whose statuses the next freeze of `pid` will read, as the warm-up predicted them. */
let predicted: { pid: number; read: Set<number> } | undefined;

/**
 * Before the freeze of `pid`: whether the status of thread `tid` will be
 * read in it (engine/proc/status_ahead.ts opens only those): all of them
 * unless the warm-up found the status facts trusted, then the main thread
 * and any with credentials of its own (engine/dump/thread_facts.ts). Only
 * a prediction: a status the freeze needs and was not opened is read then.
 */
export function statusNeeded(pid: number): (tid: number) => boolean {
  const p = predicted?.pid === pid ? predicted : undefined;
  return (tid) => !p || p.read.has(tid);
}

/**
 * The records {@link childrenByIterator} read in the current freeze (every
 * thread of `pid` stopped): {@link bpfThreadStates} takes them instead of
 * reading again. Forgotten at each freeze's start and thaw
 * ({@link forgetFrozenRecords}).
 */
let frozenRecords: { pid: number; records: TaskRecord[]; converted?: Converted } | undefined;

/**
 * The records of the running process read by the warm-up just before the
 * freeze ({@link warmUpRecords}), their bytes, and what
 * {@link bpfThreadStates} makes of them when that needs no frozen thread's
 * register: in the freeze, records read again that are the same bytes
 * (but for the thread_info flags' bits other than the TSC mode's: a
 * stopped thread has TIF_SIGPENDING set) are these, and so is what is made
 * of them ({@link frozenRecordsOf}). Taken once.
 */
let speculated:
  | { pid: number; bytes: Uint8Array<ArrayBuffer>; records: TaskRecord[]; converted?: Converted }
  | undefined;

/** Freezes whose records were the warm-up's (every record the same but for its other TIF bits), in this process (tests). */
export const speculatedRecordsStats = { taken: 0, missed: 0 };

/**
 * The records of the threads of frozen process `pid` read now, and what
 * {@link bpfThreadStates} makes of them if the warm-up made it already:
 * when the bytes read are the warm-up's ({@link speculated}) but for TIF
 * bits other than the TSC mode's, the warm-up's records (their `tifFlags`
 * set to the ones read now) and conversion, else the records decoded.
 */
function frozenRecordsOf(pid: number): { records: TaskRecord[]; converted?: Converted } {
  const bytes = readThreadRecordBytes(pid);
  const spec = speculated?.pid === pid ? speculated : undefined;
  if (spec) speculated = undefined; // (a rehearsal's helper's read leaves it be)
  const bit = noTscBit();
  if (spec && bit !== undefined && spec.bytes.length === bytes.length) {
    const n = bytes.length / TASK_RECORD_SIZE;
    const now = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const then = new DataView(spec.bytes.buffer, spec.bytes.byteOffset, spec.bytes.byteLength);
    const tif: number[] = new Array(n);
    let same = true;
    for (let i = 0; i < n && same; i++) {
      const at = i * TASK_RECORD_SIZE + TIF_FLAGS_AT;
      const a = now.getUint32(at, true), b = then.getUint32(at, true);
      tif[i] = a;
      same = ((a ^ b) >>> bit & 1) === 0;
      now.setUint32(at, b, true); // compared below without it
    }
    if (same && bytesEqual(bytes, spec.bytes)) {
      speculatedRecordsStats.taken++;
      spec.records.forEach((r, i) => r.tifFlags = tif[i]);
      return { records: spec.records, converted: spec.converted };
    }
    for (let i = 0; i < n; i++) {
      if (tif[i] !== undefined) now.setUint32(i * TASK_RECORD_SIZE + TIF_FLAGS_AT, tif[i], true);
    }
  }
  if (spec) speculatedRecordsStats.missed++;
  return { records: decodeTaskRecords(bytes) };
}

/** Freezes started or thawed so far in this process (see {@link freezeEpoch}). */
let epoch = 0;

/**
 * A number that changes at each freeze's start and thaw: what was read
 * from a frozen thread under one value may be completed from /proc only
 * while it holds (engine/dump/thread_facts.ts).
 */
export function freezeEpoch(): number {
  return epoch;
}

/** Forgets the records read in a freeze (engine/dump/freeze.ts: at its start and at the thaw). */
export function forgetFrozenRecords(): void {
  frozenRecords = undefined;
  epoch++;
}

/** Freezes whose children came from the iterator (`running`: estimates of a running tree), in this process (tests). */
export const childrenIteratorStats = { used: 0, recordsTaken: 0, running: 0 };

/**
 * Whether the freeze of a process of `threads` threads takes its children
 * from the iterator ({@link childrenByIterator}) instead of opening every
 * thread's children file: as for the thread states, from
 * {@link threadStateBpf}.minThreads threads (`CRYO_THREADSTATE`), the
 * program loaded before the freeze, cryo in the initial pid namespace.
 */
export function childrenIteratorServes(threads: number): boolean {
  const mode = override();
  if (mode === "inject") return false;
  if (mode !== "bpf" && threads < threadStateBpf.minThreads) return false;
  return threadIteratorLoaded() && inInitialPidNamespace();
}

/**
 * The children of process `pid` whose threads `tids` are all stopped (by
 * this tracer): the iterator's records say which threads have any (their
 * task->children list not empty), and only their children files are read
 * (a stopped, traced thread's tid names it until its tracer waits for it).
 * A stopped thread makes no child; a child could only be added to a list
 * by that list's own children (CLONE_PARENT) or by reparenting from a
 * descendant, and a thread with an empty list has neither. Undefined when
 * the records are not exactly `tids` or cannot be read: the caller reads
 * every thread's file.
 */
export function childrenByIterator(
  pid: number,
  tids: readonly number[],
  read: (tids: readonly number[]) => number[],
): number[] | undefined {
  try {
    const { records, converted } = frozenRecordsOf(pid);
    const want = new Set(tids);
    if (records.length !== want.size || records.some((r) => r.tgid !== pid || !want.has(r.tid))) {
      return undefined;
    }
    const parents = records.filter(recordHasChildren).map((r) => r.tid);
    childrenIteratorStats.used++;
    frozenRecords = { pid, records, converted }; // read with every thread stopped: the collect's too

    return parents.length ? read(parents) : [];
  } catch {
    return undefined;
  }
}

/** The values of one thread, as {@link InjectedThreadState} holds them. */
export type ThreadValues = Omit<InjectedThreadState, "own">;

/** The name a check of the status facts is remembered by (engine/dump/thread_facts.ts). */
export const STATUS_FACTS = "status_facts";

/** The iterator's values for the threads of one process. */
export interface BpfThreadStates {
  pid: number;
  /** Each thread's values. */
  states: Map<number, ThreadValues>;
  /** The fields some thread sets (a value other than 0). */
  set: Set<string>;
  /** Whether the values may be used without injecting (else: injected, and compared: the check). */
  trusted: boolean;
  /** mlockall(MCL_FUTURE) from the main thread's mm->def_flags, when it had an mm. */
  mlockFuture?: { value: MlockFuture };
  /** Each thread's status facts (engine/dump/thread_facts.ts). */
  facts: Map<number, ThreadFacts>;
  /** The facts some thread sets ("no_new_privs", "seccomp_mode"). */
  factsSet: Set<string>;
  /** Whether the facts may stand in for the statuses (the check passed on this boot for them). */
  factsTrusted: boolean;
  /**
   * Each thread's task->nsproxy, task->fs and task->files (exact: no check
   * needed; engine/task/thread_sharing.ts).
   */
  nsproxy: Map<number, bigint>;
  fs: Map<number, bigint>;
  files: Map<number, bigint>;
  /**
   * Each thread's task->cgroups (its css_set; 0 without cgroups): threads
   * with the main thread's are in its cgroups in every hierarchy (exact).
   */
  cssSets: Map<number, bigint>;
  /** Each thread's login uid and session id (engine/task/thread_sharing.ts). */
  loginIds: Map<number, LoginIdsOfThread>;
  /** Each thread's speculation bits of task->atomic_flags (engine/task/attrs.ts `checkThreadSpeculation`). */
  specFlags: Map<number, number>;
  /** Each thread's cred->thread_keyring (exact; engine/task/keyrings.ts `checkThreadKeyrings`). */
  threadKeyring: Map<number, bigint>;
  /** The records themselves (engine/task/landlock.ts reads each thread's Landlock domain from them). */
  records: TaskRecord[];
  /**
   * Whether the facts' task flags may stand in for the threads' stat files
   * (a check on this boot found them equal, with every flag the process
   * sets that the dump uses seen set there: engine/dump/task_flags.ts).
   */
  flagsTrusted?: boolean;
  /**
   * The threads whose task->mempolicy is set (a NUMA policy of their own):
   * only the thread itself reads it, so these are injected even when the
   * rest is taken from here (engine/memory/mempolicy.ts).
   */
  withPolicy?: Set<number>;
  /**
   * Whether the main thread's task->cred has a session keyring (its record;
   * undefined when not read): engine/task/keyrings.ts asks for it only then.
   */
  sessionKeyring?: "none" | "set";
}

/** What a thread's status shows that the iterator reads too (engine/dump/thread_facts.ts). */
export interface ThreadFacts {
  /** task->real_cred: threads with the same one have the same ids, groups and capabilities. */
  realCred: bigint;
  noNewPrivs: boolean;
  /** The seccomp mode (0, 1 strict, 2 filter). */
  seccomp: number;
  /** The comm as the status's Name line holds it ("\\" and "\n" escaped). */
  name: string;
  /** task->flags (PF_*: what the thread's stat file shows); undefined: not read. */
  taskFlags?: number;
  /** PR_SET_IO_FLUSHER from `taskFlags`; undefined: not read. */
  ioFlusher?: boolean;
  /**
   * The bytes of its real_cred's ids and capabilities, its group_info
   * pointer and group count (ffi/bpf_task.ts), when all were read.
   */
  cred?: { bytes: Uint8Array; groupInfo: bigint; ngroups: number };
}

/** The name a check of the task flags against the stat files is remembered by (task_flags.ts). */
export const TASK_FLAGS = "task_flags";
/** The name of the I/O flusher flags seen set in such a check. */
export const IO_FLUSHER_FACT = "io_flusher";

const commDecoder = new TextDecoder();

/** The status facts of a record (the comm escaped as the status's Name line escapes it). */
export function factsOf(r: TaskRecord): ThreadFacts {
  return {
    realCred: r.realCred,
    noNewPrivs: (r.atomicFlags & 1n) !== 0n, // PFA_NO_NEW_PRIVS
    seccomp: r.seccompMode,
    name: commName(r.comm),
    taskFlags: r.flags,
    ioFlusher: isIoFlusher(r.flags),
    ...(r.credBytesRead && r.groupsRead
      ? { cred: { bytes: r.credBytes, groupInfo: r.groupInfo, ngroups: r.ngroups } }
      : {}),
  };
}

/** A comm's bytes as the status's Name line shows them, decoded ("\\" and "\n" escaped). */
function commName(comm: Uint8Array): string {
  // Printable ASCII without a backslash (most names): the bytes are the text.
  if (comm.every((b) => b >= 0x20 && b < 0x7f && b !== 0x5c)) {
    return String.fromCharCode(...comm);
  }
  return commDecoder.decode(comm).replace(/[\\\n]/g, (c) => c === "\n" ? "\\n" : "\\\\");
}

/** What mlockall(MCL_FUTURE) leaves (the image's `memoryFlags.mlockFuture`). */
export type MlockFuture = "locked" | "onfault" | undefined;

/** mm->def_flags' VM_LOCKED and VM_LOCKONFAULT (include/linux/mm.h; set by mlockall(MCL_FUTURE[|MCL_ONFAULT])). */
const VM_LOCKED = 0x2000n, VM_LOCKONFAULT = 0x80000n;

/** The mlockall(MCL_FUTURE) state of an mm's def_flags, as the injected probe reports it. */
export function mlockFutureOfFlags(defFlags: bigint): MlockFuture {
  if ((defFlags & VM_LOCKED) === 0n) return undefined;
  return (defFlags & VM_LOCKONFAULT) !== 0n ? "onfault" : "locked";
}

/**
 * The iterator's mlockall(MCL_FUTURE) for a process (engine/memory/flags.ts
 * `probeMlockFuture` otherwise): `trusted` when this process's thread
 * states were taken from the iterator (the check passed on this boot and
 * the main thread agreed); otherwise the probe is made and compared with
 * it ({@link checkMlockFuture}).
 */
export interface IteratorMlockFuture {
  value: MlockFuture;
  trusted: boolean;
}

/** `bpf`'s mlockall(MCL_FUTURE) (`taken`: its thread states were used), or undefined. */
export function mlockFutureOf(
  bpf: BpfThreadStates,
  taken: boolean,
): IteratorMlockFuture | undefined {
  if (!bpf.mlockFuture) return undefined;
  return { value: bpf.mlockFuture.value, trusted: bpf.trusted && taken };
}

/**
 * mlockall(MCL_FUTURE) of process `pid`: the iterator's when trusted,
 * else `probe()`'s, compared with the iterator's when it read one (the
 * check: {@link checkMlockFuture}).
 */
export function takeMlockFuture(
  pid: number,
  iterator: IteratorMlockFuture | undefined,
  probe: () => MlockFuture,
): MlockFuture {
  if (iterator?.trusted) return iterator.value;
  const probed = probe();
  if (iterator) checkMlockFuture(pid, iterator.value, probed);
  return probed;
}

/**
 * The check of the iterator's mlockall(MCL_FUTURE) against the probe's
 * (`probed`) for process `pid`: a difference is remembered for the boot
 * (the iterator is not used again) and returned.
 */
export function checkMlockFuture(
  pid: number,
  iterator: MlockFuture,
  probed: MlockFuture,
): string | undefined {
  if (iterator === probed) return undefined;
  const d = `mlockall(MCL_FUTURE) ${iterator ?? "none"} (iterator) != ${probed ?? "none"} (probe)`;
  threadStatePaths.set(pid, `inject: ${d}`);
  rememberThreadRefuted(`process ${pid}: ${d}`);
  return d;
}

/** `CRYO_THREADSTATE`: "inject" (never the iterator), "bpf" (whatever the thread count), or unset. */
function override(): string | undefined {
  return Deno.env.get("CRYO_THREADSTATE") || undefined;
}

/** How far above an alternate stack a stack pointer makes the derived flags doubtful. */
const ALTSTACK_MARGIN = 64n * 1024n;

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** The fields of a record other than 0 (as far as sigaltstack and prctl show them). */
function fieldsSet(r: TaskRecord): string[] {
  const out: string[] = [];
  if (r.sasSsSp !== 0n) out.push("sas_ss_sp");
  if (r.sasSsSize !== 0n) out.push("sas_ss_size");
  if ((r.sasSsFlags & 0x80000000) !== 0) out.push("sas_ss_flags");
  if (r.clearChildTid !== 0n) out.push("clear_child_tid");
  if (r.pdeathSignal !== 0) out.push("pdeath_signal");
  if (r.timerSlackNs !== 0n) out.push("timer_slack_ns");
  if (r.securebits !== 0) out.push("securebits");
  if ((r.defFlags & VM_LOCKED) !== 0n) out.push("mlock_future");
  if ((r.defFlags & VM_LOCKONFAULT) !== 0n) out.push("mlock_onfault");
  if (tscOf(r) !== PR_TSC_ENABLE) out.push("tsc");
  if (r.personality !== 0) out.push("personality");
  if (r.mempolicy !== 0n) out.push("mempolicy");
  return out;
}

/** What {@link bpfThreadStates} makes of a process's records, thread by thread. */
type Converted = Pick<
  BpfThreadStates,
  | "states"
  | "set"
  | "facts"
  | "factsSet"
  | "nsproxy"
  | "specFlags"
  | "threadKeyring"
  | "fs"
  | "files"
  | "cssSets"
  | "loginIds"
>;

/**
 * {@link Converted} of `records`, or why they are not used (a string);
 * `rspOf`: a thread's stack pointer, asked only for a record whose
 * sigaltstack flags depend on it (undefined: none may, the records are
 * converted before the freeze: a string then).
 */
function convertRecords(
  records: readonly TaskRecord[],
  rspOf?: (tid: number) => bigint,
): Converted | string {
  const states = new Map<number, ThreadValues>();
  const set = new Set<string>();
  const facts = new Map<number, ThreadFacts>();
  const factsSet = new Set<string>();
  const nsproxy = new Map<number, bigint>();
  const specFlags = new Map<number, number>();
  const threadKeyring = new Map<number, bigint>();
  const fs = new Map<number, bigint>(), files = new Map<number, bigint>();
  const cssSets = new Map<number, bigint>();
  const loginIds = new Map<number, LoginIdsOfThread>();
  for (const r of records) {
    const f = factsOf(r);
    facts.set(r.tid, f);
    nsproxy.set(r.tid, r.nsproxy);
    specFlags.set(r.tid, Number(r.atomicFlags & PFA_SPEC_BITS));
    threadKeyring.set(r.tid, r.threadKeyring);
    fs.set(r.tid, r.fs);
    files.set(r.tid, r.files);
    cssSets.set(r.tid, r.cgroups);
    loginIds.set(r.tid, { loginuid: r.loginuid, sessionid: r.sessionid });
    if (f.noNewPrivs) factsSet.add("no_new_privs");
    if (f.seccomp !== 0) factsSet.add("seccomp_mode");
    let rsp: bigint | undefined;
    if (flagsNeedStackPointer(r)) {
      if (!rspOf) return "a stack pointer is needed";
      rsp = rspOf(r.tid);
      if (nearAltStack(r, rsp, ALTSTACK_MARGIN)) {
        return `thread ${r.tid}'s stack pointer is on or near its sigaltstack`;
      }
    }
    states.set(r.tid, valuesOf(r, rsp));
    for (const f of fieldsSet(r)) set.add(f);
  }
  return {
    states,
    set,
    facts,
    factsSet,
    nsproxy,
    specFlags,
    threadKeyring,
    fs,
    files,
    cssSets,
    loginIds,
  };
}

/**
 * The iterator's values for the threads `tids` of frozen process `pid`,
 * or undefined when they are not to be read or used (the reason in
 * {@link threadStatePaths}). Never throws.
 */
export function bpfThreadStates(pid: number, tids: readonly number[]): BpfThreadStates | undefined {
  const mode = override();
  const no = (why: string) => {
    threadStatePaths.set(pid, `inject: ${why}`);
    return undefined;
  };
  if (mode === "inject") return no("forced");
  if (mode !== "bpf" && tids.length < threadStateBpf.minThreads) return no("few threads");
  if (!inInitialPidNamespace()) return no("cryo is not in the initial pid namespace");
  // Loaded before the freeze (warmUpThreadStates), never in it (the verifier, maybe the BTF read).
  if (!threadIteratorLoaded()) {
    return no(threadIteratorUnavailable() ?? "the program was not loaded before the freeze");
  }
  if (noTscBit() === undefined) return no("the TSC mode's bit in thread_info.flags is not known");
  // The warm-up's read serves this dump's first process; the next read again.
  const memo = recalled !== null ? recalled : recallThreadState();
  recalled = null;
  if (memo?.refuted) return no(`a check on this boot found a difference: ${memo.refuted}`);
  try {
    // Those read for the children in this freeze, if they were (all its threads stopped then).
    const taken = frozenRecords?.pid === pid ? frozenRecords : undefined;
    frozenRecords = undefined;
    if (taken) childrenIteratorStats.recordsTaken++;
    const records = taken?.records ?? readThreadRecords(pid);
    const want = new Set(tids);
    if (
      records.length !== want.size ||
      records.some((r) => r.tgid !== pid || !want.has(r.tid) || !r.credRead)
    ) {
      return no(`the iterator lists other threads (${records.map((r) => r.tid).join(",")})`);
    }
    const converted = taken?.converted ?? convertRecords(records, (tid) => getRegs(tid).rsp);
    if (typeof converted === "string") return no(converted);
    const { set, facts, factsSet } = converted;
    const trusted = memo !== undefined && memo.checked &&
      [...set].every((f) => memo.confirmed.has(f));
    const main = records.find((r) => r.tid === pid);
    const factsTrusted = memo !== undefined && memo.checked &&
      memo.confirmed.has(STATUS_FACTS) && [...factsSet].every((f) => memo.confirmed.has(f));
    return {
      pid,
      ...converted, // (exactly its fields: convertRecords makes it)
      trusted,
      factsTrusted,
      records,
      flagsTrusted: memo !== undefined && memo.confirmed.has(TASK_FLAGS) &&
        (![...facts.values()].some((f) => f.ioFlusher) || memo.confirmed.has(IO_FLUSHER_FACT)),
      withPolicy: new Set(records.filter((r) => r.mempolicy !== 0n).map((r) => r.tid)),
      ...(main?.sessionKeyring ? { sessionKeyring: main.sessionKeyring } : {}),
      ...(main?.mmRead ? { mlockFuture: { value: mlockFutureOfFlags(main.defFlags) } } : {}),
    };
  } catch (e) {
    return no(`the iterator failed: ${e instanceof Error ? e.message : e}`);
  }
}

const PR_TSC_ENABLE = 1;
const PR_TSC_SIGSEGV = 2;
/**
 * PFA_SPEC_SSB_DISABLE, _SSB_FORCE_DISABLE, _IB_DISABLE, _IB_FORCE_DISABLE
 * and _SSB_NOEXEC (bits 3 to 7 of task->atomic_flags): a thread's own
 * store-bypass and indirect-branch speculation controls.
 */
const PFA_SPEC_BITS = 0xf8n;

/** The TSC mode (PR_GET_TSC) of the thread of record `r` (its TIF_NOTSC bit, which must be known). */
function tscOf(r: TaskRecord): number {
  const bit = noTscBit();
  if (bit === undefined) throw new Error("the TSC mode's bit is not known");
  return (r.tifFlags >>> bit) & 1 ? PR_TSC_SIGSEGV : PR_TSC_ENABLE;
}

/** The values of a thread from its record (`rsp`: its stack pointer, when the flags need it). */
function valuesOf(r: TaskRecord, rsp: bigint | undefined): ThreadValues {
  return {
    tsc: tscOf(r),
    personality: r.personality,
    // A policy the record cannot tell (a pointer): refused as any other.
    mempolicy: r.mempolicy === 0n ? 0 : -1,
    sigaltstack: { sp: hex(r.sasSsSp), flags: sigaltstackFlags(r, rsp), size: Number(r.sasSsSize) },
    clearChildTid: hex(r.clearChildTid),
    pdeathsig: r.pdeathSignal,
    securebits: r.securebits,
    timerSlackNs: Number(r.timerSlackNs),
  };
}

/**
 * Reads the records of running process `pid` once and converts them as
 * {@link bpfThreadStates} does: kept with their bytes ({@link speculated})
 * for the freeze, which takes them when it reads the same bytes, else
 * decodes and converts what it reads (then with compiled code). Nothing is
 * decided from them before the freeze. Never throws.
 */
function warmUpRecords(pid: number): void {
  predicted = undefined;
  speculated = undefined;
  try {
    // Read again here (not the estimate's): the nearer the freeze, the likelier the same bytes.
    const bytes = readThreadRecordBytes(pid);
    const records = decodeTaskRecords(bytes);
    const converted = convertRecords(records);
    speculated = { pid, bytes, records, ...(typeof converted === "string" ? {} : { converted }) };
    const factsSet = typeof converted === "string" ? new Set<string>() : converted.factsSet;
    if (typeof converted === "string") {
      for (const r of records) {
        const f = factsOf(r);
        if (f.noNewPrivs) factsSet.add("no_new_privs");
        if (f.seccomp !== 0) factsSet.add("seccomp_mode");
      }
    }
    const main = records.find((r) => r.tid === pid);
    const memo = recalled;
    if (
      main && memo && !memo.refuted && memo.checked && memo.confirmed.has(STATUS_FACTS) &&
      [...factsSet].every((f) => memo.confirmed.has(f))
    ) {
      const mine = factsOf(main);
      const read = credReferences(
        records.map((r) => [r.tid, credKeyOf(factsOf(r), mine)]),
        main.realCred,
      );
      predicted = { pid, read: read.add(pid) };
    }
  } catch { /* only a warm-up */ }
}

/**
 * The struct cred whose status stands for thread facts `f`'s credentials:
 * the main thread's (`mine`) when `f`'s real_cred is it, or when its ids,
 * capabilities (the same bytes) and groups (the same group_info, or none in
 * either) are the main thread's (a restored thread has its own struct cred
 * with the same contents); else `f`'s own real_cred. The caller checks
 * first that the main thread's bytes are its status's ({@link credsAreStatus}).
 */
export function credKeyOf(f: ThreadFacts, mine: ThreadFacts): bigint {
  const a = f.cred, b = mine.cred;
  if (f.realCred === mine.realCred || !a || !b) return f.realCred;
  const groups = a.groupInfo === b.groupInfo || (a.ngroups === 0 && b.ngroups === 0);
  if (!groups || a.bytes.length !== b.bytes.length) return f.realCred;
  for (let i = 0; i < a.bytes.length; i++) if (a.bytes[i] !== b.bytes[i]) return f.realCred;
  return mine.realCred;
}

/**
 * Whether cred bytes `c` (read with `layout`) hold exactly the ids,
 * capabilities and group count of status `st` (the same thread's): the
 * check that the bytes are what their offsets say, made on the main thread
 * at each freeze before any other thread's bytes stand for a status.
 */
export function credsAreStatus(
  c: { bytes: Uint8Array; ngroups: number },
  st: ProcStatus,
  layout: TaskStateLayout,
): boolean {
  const { start } = credRange(layout);
  const dv = new DataView(c.bytes.buffer, c.bytes.byteOffset, c.bytes.byteLength);
  const u = (o: number) => dv.getUint32(o - start, true);
  const q = (o: number) => dv.getBigUint64(o - start, true);
  const l = layout;
  return u(l.credUid) === st.uid[0] && u(l.credEuid) === st.uid[1] &&
    u(l.credSuid) === st.uid[2] && u(l.credFsuid) === st.uid[3] &&
    u(l.credGid) === st.gid[0] && u(l.credEgid) === st.gid[1] &&
    u(l.credSgid) === st.gid[2] && u(l.credFsgid) === st.gid[3] &&
    q(l.credCapInh) === st.capInh && q(l.credCapPrm) === st.capPrm &&
    q(l.credCapEff) === st.capEff && q(l.credCapBnd) === st.capBnd &&
    q(l.credCapAmb) === st.capAmb && c.ngroups === st.groups.length;
}

/**
 * The threads whose statuses stand for the others' credentials: of the
 * threads whose task->real_cred is not `mainCred` (the main thread's, whose
 * status is read anyway), the lowest tid of each real_cred (threads that
 * share one struct cred have the same ids, groups and capabilities).
 */
export function credReferences(
  threads: Iterable<readonly [number, bigint]>,
  mainCred: bigint,
): Set<number> {
  const ref = new Map<bigint, number>();
  for (const [tid, cred] of threads) {
    if (cred === mainCred) continue;
    const seen = ref.get(cred);
    if (seen === undefined || tid < seen) ref.set(cred, tid);
  }
  return new Set(ref.values());
}

/** The first difference between two threads' values, or undefined. */
export function differs(a: ThreadValues, b: ThreadValues): string | undefined {
  const fields: [string, unknown, unknown][] = [
    ["sigaltstack sp", a.sigaltstack.sp, b.sigaltstack.sp],
    ["sigaltstack size", a.sigaltstack.size, b.sigaltstack.size],
    ["sigaltstack flags", a.sigaltstack.flags, b.sigaltstack.flags],
    ["clear_child_tid", a.clearChildTid, b.clearChildTid],
    ["pdeath signal", a.pdeathsig, b.pdeathsig],
    ["securebits", a.securebits, b.securebits],
    ["timer slack", a.timerSlackNs, b.timerSlackNs],
    ["TSC mode", a.tsc, b.tsc],
    ["personality", a.personality, b.personality],
    ["NUMA policy set", a.mempolicy !== 0, b.mempolicy !== 0],
  ];
  const d = fields.find(([, x, y]) => x !== y);
  return d && `${d[0]} ${d[1]} (iterator) != ${d[2]} (injected)`;
}

/**
 * The check: compares the iterator's values with the injected ones of
 * every thread; when all are equal, remembers for the boot that they were
 * (with the fields seen other than 0); a difference is remembered too, and
 * the iterator is not used again on this boot. Returns the first
 * difference, if any.
 */
export function checkThreadStates(
  bpf: BpfThreadStates,
  injected: ReadonlyMap<number, ThreadValues>,
): string | undefined {
  for (const [tid, v] of bpf.states) {
    const inj = injected.get(tid);
    const d = inj ? differs(v, inj) : "not injected";
    if (d) {
      threadStatePaths.set(bpf.pid, `inject: thread ${tid}: ${d}`);
      rememberThreadRefuted(`process ${bpf.pid} thread ${tid}: ${d}`);
      return `thread ${tid}: ${d}`;
    }
  }
  threadStatePaths.set(bpf.pid, "bpf: checked");
  const memo = recallThreadState();
  if (!memo?.checked || [...bpf.set].some((f) => !memo.confirmed.has(f))) {
    rememberThreadCheck(bpf.set);
  }
  return undefined;
}

/**
 * For a trusted `bpf`: whether the main thread's injected values equal the
 * iterator's; if so, puts every other thread's values in `threads` and
 * returns true. Otherwise (the reason in {@link threadStatePaths}) false:
 * the caller injects the other threads, and the iterator is not used again
 * on this boot.
 */
export function takeThreadStates(
  bpf: BpfThreadStates,
  threads: Map<number, InjectedThreadState>,
): boolean {
  const main = threads.get(bpf.pid);
  const mine = bpf.states.get(bpf.pid);
  const d = main && mine ? differs(mine, main) : "main thread not read";
  if (d) {
    threadStatePaths.set(bpf.pid, `inject: main thread: ${d}`);
    if (main && mine) rememberThreadRefuted(`process ${bpf.pid} main thread: ${d}`);
    return false;
  }
  for (const [tid, v] of bpf.states) if (tid !== bpf.pid) threads.set(tid, { ...v });
  threadStatePaths.set(bpf.pid, "bpf");
  return true;
}
