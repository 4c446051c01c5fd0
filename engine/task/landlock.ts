/**
 * Landlock domains (landlock_restrict_self): a domain is part of a
 * thread's credentials, cannot be read back and cannot be given to a
 * process from outside, so a restored process would run unrestricted. The
 * dump refuses any process with a thread in one (task.landlock).
 *
 * No /proc file shows a domain, and no credential /proc shows rules one
 * out: restricting oneself needs no_new_privs or CAP_SYS_ADMIN, but a
 * domain outlives a later drop of CAP_SYS_ADMIN (capset, setuid, execve)
 * and is inherited by every child, which then has neither (the
 * landlock target's cap-drop mode). So every process is looked at: the
 * BPF task iterator's records carry the domain pointer of each thread's
 * cred (its offset in the LSM blob found once per boot:
 * engine/task/landlock_probe.ts), read while the process is frozen
 * (~0.1-0.3 ms for a small process). The program that reads them is loaded
 * before the freeze ({@link warmUpLandlock}): the regular task program
 * when the dump loads it anyway (processes of many threads), else a small
 * one that reads only the domain and the session keyring
 * (ffi/bpf_landlock.ts: a verifier run of ~55 instructions, not ~240).
 * Where the domains cannot be read (no BPF task iterator, no BTF, the
 * offset not found) on a host with Landlock enabled, a process with a
 * thread that has no_new_privs is refused instead
 * (task.landlock-unchecked): this catches every sandbox but those set up
 * with CAP_SYS_ADMIN and no no_new_privs. On a kernel without Landlock (or
 * with it disabled) nothing is looked at. `CRYO_LANDLOCK=unread` (tests)
 * takes the path where they cannot be read.
 *
 * @module
 */

import { landlockDomain, type TaskRecord } from "../../ffi/bpf_task.ts";
import { type CredRecord, loadLandlockProgram, readCredRecords } from "../../ffi/bpf_landlock.ts";
import { type ProcStatus, readStatus } from "../proc/status.ts";
import {
  landlockOffsetUnfound,
  loadThreadIterator,
  readThreadRecords,
  threadIteratorLayout,
  threadIteratorLoaded,
  threadIteratorUnavailable,
} from "../proc/thread_state_bpf.ts";
import { recallThreadState } from "../proc/vm_flags_memo.ts";
import type { Refusals } from "../support.ts";
import { landlockAbi } from "./landlock_probe.ts";

/** The small program (ffi/bpf_landlock.ts) once loaded in this cryo process, or why it was not. */
let credProgram: { fd: number } | { unavailable: string } | undefined;

/** How this cryo process's Landlock checks read the domains (tests). */
export const landlockReadStats = {
  /** Checks that took the records read in the freeze already. */
  known: 0,
  /** Checks that read the regular task program's records. */
  taskProgram: 0,
  /** Checks that read the small program's records. */
  credProgram: 0,
  /** Warm-ups that loaded the small program, and those that needed the regular one. */
  credLoads: 0,
  taskLoads: 0,
};

/**
 * Before the freeze, on a host with Landlock enabled: makes sure a program
 * that reads the domains is loaded ({@link landlockReader}). The regular
 * task program serves when loaded (the dump loads it for processes of
 * many threads); else the small one is loaded, with the layout and offset
 * remembered on this boot; the first dump of a boot loads the regular
 * one (its BTF read and the offset's probe, remembered). Nothing when the
 * offset's probe failed on this boot (the domains are unread: the
 * no_new_privs rule). Never throws.
 */
export function warmUpLandlock(): void {
  if (landlockAbi() <= 0 || threadIteratorLoaded() || credProgram) return;
  const recalled = recallThreadState();
  const layout = recalled?.layout;
  if (layout?.landlockOffset !== undefined && layout.credSecurity >= 0) {
    try {
      credProgram = { fd: loadLandlockProgram(layout) };
      landlockReadStats.credLoads++;
    } catch (e) {
      credProgram = { unavailable: e instanceof Error ? e.message : String(e) };
    }
    return;
  }
  if (recalled?.landlockUnfound !== undefined) return; // remembered: not found on this boot
  landlockReadStats.taskLoads++;
  loadThreadIterator();
}

/**
 * A reader of the domains of a process's threads (one iterator read): the
 * regular task program's when loaded, else the small one's (loaded now if
 * the warm-up did not), or why there is none.
 */
function landlockReader():
  | ((pid: number) => { tid: number; domain: bigint | undefined }[])
  | string {
  if (!threadIteratorLoaded()) warmUpLandlock();
  if (threadIteratorLoaded()) {
    if (threadIteratorLayout()?.landlockOffset === undefined) {
      return `Landlock's place in the credentials was not found (${
        landlockOffsetUnfound() ?? "?"
      })`;
    }
    return (pid) => {
      landlockReadStats.taskProgram++;
      return readThreadRecords(pid).map((r) => ({ tid: r.tid, domain: landlockDomain(r) }));
    };
  }
  if (credProgram && "fd" in credProgram) {
    const fd = credProgram.fd;
    return (pid) => {
      landlockReadStats.credProgram++;
      return readCredRecords(fd, pid).map((r) => ({ tid: r.tid, domain: r.landlockDomain }));
    };
  }
  if (credProgram) return `no BPF task iterator (${credProgram.unavailable})`;
  const unfound = recallThreadState()?.landlockUnfound;
  if (unfound !== undefined) {
    return `Landlock's place in the credentials was not found on this boot (${unfound})`;
  }
  return `no BPF task iterator (${threadIteratorUnavailable()})`;
}

/**
 * The small program's records of the threads of `pid` when it is loaded
 * and the regular task program is not (engine/task/keyrings.ts: the main
 * thread's session keyring), else undefined. Never throws.
 */
export function credRecordsIfLoaded(pid: number): CredRecord[] | undefined {
  if (threadIteratorLoaded() || !credProgram || !("fd" in credProgram)) return undefined;
  try {
    return readCredRecords(credProgram.fd, pid);
  } catch {
    return undefined;
  }
}

/** Each thread's domain pointer (0n: none) from `records`, or why they cannot tell. */
function domainsOf(
  tids: readonly number[],
  records: readonly { tid: number; domain: bigint | undefined }[],
): Map<number, bigint> | string {
  const want = new Set(tids);
  if (records.length !== want.size) return `the iterator lists ${records.length} threads`;
  const domains: bigint[] = [];
  for (const r of records) {
    if (r.domain === undefined) return `thread ${r.tid}'s credentials could not be read`;
    domains.push(r.domain);
  }
  if (records.every((r) => want.has(r.tid))) {
    return new Map(records.map((r, i) => [r.tid, domains[i]]));
  }
  // The records' tids are the initial pid namespace's, cryo is not there: the threads are
  // matched by count, and a domain in any of them is the whole process's (named as the process).
  const any = domains.find((d) => d !== 0n) ?? 0n;
  return new Map(tids.map((tid) => [tid, any]));
}

/**
 * Why the domains of the threads of `pid` cannot be read, or each thread's
 * domain pointer: from `known` (the regular program's records read in
 * this freeze) or read now (a program loaded, normally before the freeze:
 * {@link warmUpLandlock}).
 */
export function readLandlockDomains(
  pid: number,
  tids: readonly number[],
  known?: readonly TaskRecord[],
): Map<number, bigint> | string {
  // Tests take the path of a host where they cannot be read.
  if (Deno.env.get("CRYO_LANDLOCK") === "unread") return "CRYO_LANDLOCK=unread";
  if (known && threadIteratorLayout()?.landlockOffset !== undefined) {
    landlockReadStats.known++;
    return domainsOf(tids, known.map((r) => ({ tid: r.tid, domain: landlockDomain(r) })));
  }
  const reader = landlockReader();
  if (typeof reader === "string") return reader;
  try {
    return domainsOf(tids, reader(pid));
  } catch (e) {
    return `the task iterator failed: ${e instanceof Error ? e.message : String(e)}`;
  }
}

/**
 * Reports (task.landlock) each thread of frozen process `pid` that is in
 * a Landlock domain; where the domains cannot be read, each thread with
 * no_new_privs (task.landlock-unchecked, from `statuses` or its status).
 * Nothing on a kernel without Landlock enabled.
 */
export function checkLandlock(
  pid: number,
  tids: readonly number[],
  refusals: Refusals,
  statuses: ReadonlyMap<number, ProcStatus>,
  known?: readonly TaskRecord[],
): void {
  if (landlockAbi() <= 0) return;
  const domains = readLandlockDomains(pid, tids, known);
  if (typeof domains !== "string") {
    const restricted = tids.filter((tid) => (domains.get(tid) ?? 0n) !== 0n);
    if (restricted.length) refusals.use("task.landlock", where(pid, tids, restricted));
    return;
  }
  const nnp = tids.filter((tid) => (statuses.get(tid) ?? readStatus(pid, tid)).noNewPrivs);
  if (nnp.length) {
    refusals.use(
      "task.landlock-unchecked",
      where(pid, tids, nnp),
      `it may be in a Landlock domain, which cannot be read here (${domains}) ` +
        "nor given back: the restored process could run unrestricted",
    );
  }
}

/** "process P" when every thread is named, else "process P thread(s) ...". */
function where(pid: number, tids: readonly number[], named: readonly number[]): string {
  if (named.length === tids.length) return `process ${pid}`;
  return `process ${pid} thread${named.length > 1 ? "s" : ""} ${named.join(", ")}`;
}
