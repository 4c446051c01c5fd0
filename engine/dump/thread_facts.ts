/**
 * The statuses of a frozen process's threads, most of them without
 * reading their status files: what the dump takes from a thread's status
 * (its Name, ids, groups, capabilities, no_new_privs, seccomp mode) comes
 * from the BPF task iterator's records (engine/dump/thread_state.ts) where
 * that is known to be the same.
 *
 * The main thread's status is always read. Another thread's is not when
 * the facts are trusted and its task->real_cred is the main thread's
 * (`pthread_create` shares the creator's credentials: the same struct
 * cred, so the same ids, groups and capabilities as the main thread's
 * status shows): its name, no_new_privs and seccomp mode come from its
 * record, everything else the dump could ask of it (signal masks, the
 * shadow stack feature: for a thread injected into) is read from its
 * status on first use, in the freeze. Threads that share a real_cred other
 * than the main thread's have one status read, the lowest tid's, standing
 * for the others' ids, groups and capabilities in the same way (cryo's
 * injected keyctl of the session keyring gives a main thread without one
 * a new struct cred, so after a first dump the other threads share the old
 * one); a thread alone with its real_cred is read as before.
 *
 * The facts are trusted once a check on this boot found them equal to the
 * statuses, thread by thread, in a real process, with every fact the
 * process sets (no_new_privs, a seccomp mode) seen set there
 * (engine/proc/vm_flags_memo.ts); until then every status is read and
 * compared: that is the check (one difference and the iterator is not used
 * again on this boot). A trusted process's main thread is compared too.
 *
 * @module
 */

import { type ProcStatus, readStatus, readThreadStatuses } from "../proc/status.ts";
import { threadIteratorLayout } from "../proc/thread_state_bpf.ts";
import {
  recallThreadState,
  rememberThreadCheck,
  rememberThreadRefuted,
} from "../proc/vm_flags_memo.ts";
import {
  type BpfThreadStates,
  credKeyOf,
  credReferences,
  credsAreStatus,
  freezeEpoch,
  STATUS_FACTS,
  type ThreadFacts,
} from "./thread_state.ts";

/** Per process of the last dumps: where its threads' statuses came from ("bpf", "bpf: checked", "status: <why>"). */
export const statusFactPaths = new Map<number, string>();

/**
 * The status of each thread `tids` of frozen process `pid` (`bpf`: its
 * iterator records, if read), as {@link readThreadStatuses} gives them;
 * most of them stand-ins made from the records (see the module's doc).
 */
export function threadStatuses(
  pid: number,
  tids: readonly number[],
  bpf: BpfThreadStates | undefined,
): Map<number, ProcStatus> {
  if (!bpf || tids.length < 2) return readThreadStatuses(pid, tids);
  if (!bpf.factsTrusted) {
    const all = readThreadStatuses(pid, tids);
    checkStatusFacts(bpf, all);
    return all;
  }
  const main = readThreadStatuses(pid, [pid]).get(pid)!;
  const mine = bpf.facts.get(pid);
  const d = mine ? factsDiffer(mine, main, main, true) : "main thread not read";
  if (d) {
    statusFactPaths.set(pid, `status: main thread: ${d}`);
    if (mine) rememberThreadRefuted(`process ${pid} main thread status: ${d}`);
    const all = readThreadStatuses(pid, tids.filter((t) => t !== pid));
    all.set(pid, main);
    return all;
  }
  const out = new Map<number, ProcStatus>();
  // One status read per struct cred: the main thread's, and for the threads with another one
  // (after a restore each thread has its own; an injected keyctl gives the main thread a new
  // one), the lowest tid's, whose ids, groups and capabilities the others of it share.
  // A thread with its own struct cred whose contents are the main thread's (each restored thread
  // has one) stands in from the main thread's status too, once the main thread's bytes are found
  // to be its status's ids, capabilities and group count (credKeyOf, credsAreStatus).
  const layout = threadIteratorLayout();
  const contents = layout !== undefined && mine!.cred !== undefined &&
    credsAreStatus(mine!.cred, main, layout);
  const keyOf = (f: ThreadFacts) => contents ? credKeyOf(f, mine!) : f.realCred;
  const refs = credReferences(
    tids.flatMap((t) => {
      const f = bpf.facts.get(t);
      return f ? [[t, keyOf(f)] as const] : [];
    }),
    mine!.realCred,
  );
  const byCred = new Map<bigint, ProcStatus>([[mine!.realCred, main]]);
  for (const tid of refs) {
    byCred.set(keyOf(bpf.facts.get(tid)!), readThreadStatuses(pid, [tid]).get(tid)!);
  }
  for (const tid of tids) {
    const f = tid === pid ? undefined : bpf.facts.get(tid);
    const ref = f && byCred.get(keyOf(f));
    if (tid === pid) out.set(tid, main);
    else if (refs.has(tid)) out.set(tid, ref!);
    else if (f && ref) out.set(tid, statusFromFacts(pid, tid, ref, f));
    else out.set(tid, readThreadStatuses(pid, [tid]).get(tid)!);
  }
  statusFactPaths.set(pid, "bpf");
  return out;
}

/**
 * The first difference between thread facts `f` and the thread's status
 * `st` (`main`: the main thread's status; `sameCred`: the thread has the
 * main thread's real_cred, so its ids, groups and capabilities must be
 * the main thread's), or undefined.
 */
export function factsDiffer(
  f: ThreadFacts,
  st: ProcStatus,
  main: ProcStatus,
  sameCred: boolean,
): string | undefined {
  if (f.name !== st.name) return `name ${JSON.stringify(f.name)} != ${JSON.stringify(st.name)}`;
  if (f.noNewPrivs !== st.noNewPrivs) return `no_new_privs ${f.noNewPrivs} != ${st.noNewPrivs}`;
  if (f.seccomp !== st.seccomp) return `seccomp ${f.seccomp} != ${st.seccomp}`;
  if (!sameCred) return undefined;
  const same = (a: readonly unknown[], b: readonly unknown[]) =>
    a.length === b.length && a.every((x, i) => x === b[i]);
  if (!same(st.uid, main.uid) || !same(st.gid, main.gid) || !same(st.groups, main.groups)) {
    return "ids or groups other than the main thread's with its real_cred";
  }
  const caps = (s: ProcStatus) => [s.capInh, s.capPrm, s.capEff, s.capBnd, s.capAmb];
  if (!same(caps(st), caps(main))) {
    return "capabilities other than the main thread's with its real_cred";
  }
  return undefined;
}

/**
 * The check: compares every thread's facts with its status; when all are
 * equal, remembers for the boot that they were (with the facts seen set),
 * else remembers the difference (the iterator is not used again on this
 * boot). Returns the first difference, if any.
 */
export function checkStatusFacts(
  bpf: BpfThreadStates,
  statuses: ReadonlyMap<number, ProcStatus>,
): string | undefined {
  const main = statuses.get(bpf.pid);
  const mine = bpf.facts.get(bpf.pid);
  for (const [tid, f] of bpf.facts) {
    const st = statuses.get(tid);
    const d = !st || !main || !mine
      ? "not read"
      : factsDiffer(f, st, main, credKeyOf(f, mine) === mine.realCred);
    if (d) {
      statusFactPaths.set(bpf.pid, `status: thread ${tid}: ${d}`);
      rememberThreadRefuted(`process ${bpf.pid} thread ${tid} status: ${d}`);
      return `thread ${tid}: ${d}`;
    }
  }
  statusFactPaths.set(bpf.pid, "bpf: checked");
  const memo = recallThreadState();
  const want = [STATUS_FACTS, ...bpf.factsSet];
  if (!memo?.checked || want.some((f) => !memo.confirmed.has(f))) rememberThreadCheck(want);
  return undefined;
}

/**
 * The status of thread `tid` of `pid` made from its facts and its main
 * thread's status `main` (the same real_cred): the fields the records
 * hold are set, any other is read from the thread's status file on first
 * use (once).
 */
export function statusFromFacts(
  pid: number,
  tid: number,
  main: ProcStatus,
  f: ThreadFacts,
): ProcStatus {
  return new StandInStatus(pid, tid, main, f);
}

/** A status made from a thread's facts (see {@link statusFromFacts}); its getters on one prototype. */
class StandInStatus implements ProcStatus {
  name: string;
  tgid: number;
  pid: number;
  uid: [number, number, number, number];
  gid: [number, number, number, number];
  groups: number[];
  capInh: bigint;
  capPrm: bigint;
  capEff: bigint;
  capBnd: bigint;
  capAmb: bigint;
  noNewPrivs: boolean;
  seccomp: number;
  #process: number;
  #real: ProcStatus | undefined;
  /** The freeze it was made in: its own status may be read only while that lasts. */
  #epoch = freezeEpoch();

  constructor(pid: number, tid: number, main: ProcStatus, f: ThreadFacts) {
    this.name = f.name;
    this.tgid = main.tgid;
    this.pid = tid;
    this.uid = [...main.uid];
    this.gid = [...main.gid];
    this.groups = [...main.groups];
    this.capInh = main.capInh;
    this.capPrm = main.capPrm;
    this.capEff = main.capEff;
    this.capBnd = main.capBnd;
    this.capAmb = main.capAmb;
    this.noNewPrivs = f.noNewPrivs;
    this.seccomp = f.seccomp;
    this.#process = pid;
  }

  /** The thread's own status, read once, on first use (in the freeze it was made in). */
  #r(): ProcStatus {
    if (this.#real === undefined && this.#epoch !== freezeEpoch()) {
      // (A field read now would be the running thread's, not the frozen state.)
      throw new Error(`internal: thread ${this.pid}'s status asked for after its freeze ended`);
    }
    return this.#real ??= readStatus(this.#process, this.pid);
  }
  get umask() {
    return this.#r().umask;
  }
  get state() {
    return this.#r().state;
  }
  get ppid() {
    return this.#r().ppid;
  }
  get tracerPid() {
    return this.#r().tracerPid;
  }
  get nstgid() {
    return this.#r().nstgid;
  }
  get nspid() {
    return this.#r().nspid;
  }
  get nspgid() {
    return this.#r().nspgid;
  }
  get nssid() {
    return this.#r().nssid;
  }
  get threads() {
    return this.#r().threads;
  }
  get sigQ() {
    return this.#r().sigQ;
  }
  get sigPnd() {
    return this.#r().sigPnd;
  }
  get shdPnd() {
    return this.#r().shdPnd;
  }
  get sigBlk() {
    return this.#r().sigBlk;
  }
  get sigIgn() {
    return this.#r().sigIgn;
  }
  get sigCgt() {
    return this.#r().sigCgt;
  }
  get kthread() {
    return this.#r().kthread;
  }
  get threadFeatures() {
    return this.#r().threadFeatures;
  }
  get fields() {
    return this.#r().fields;
  }
}
