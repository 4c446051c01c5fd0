/**
 * Landlock domains (landlock_restrict_self): a domain is part of a
 * thread's credentials, cannot be read back and cannot be given to a
 * process from outside, so a restored process would run unrestricted. The
 * dump refuses any process with a thread in one (task.landlock).
 *
 * No /proc file shows a domain. The BPF task iterator's record carries
 * the domain pointer of each thread's cred (its offset in the LSM blob
 * found once per boot: engine/task/landlock_probe.ts), read while the
 * process is frozen (~0.1-0.3 ms for a small process). Where that cannot
 * be read (no BPF task iterator, no BTF, the offset not found) on a host
 * with Landlock enabled, a process with a thread that has no_new_privs
 * is refused instead (task.landlock-unchecked): restricting oneself needs
 * no_new_privs unless one holds CAP_SYS_ADMIN, so this catches every
 * sandbox but those set up with CAP_SYS_ADMIN and no no_new_privs. On a
 * kernel without Landlock (or with it disabled) nothing is looked at.
 * `CRYO_LANDLOCK=unread` (tests) takes the path where they cannot be read.
 *
 * @module
 */

import { landlockDomain, type TaskRecord } from "../../ffi/bpf_task.ts";
import { type ProcStatus, readStatus } from "../proc/status.ts";
import {
  loadThreadIterator,
  readThreadRecords,
  threadIteratorLayout,
  threadIteratorUnavailable,
} from "../proc/thread_state_bpf.ts";
import type { Refusals } from "../support.ts";
import { landlockAbi } from "./landlock_probe.ts";

/** Each thread's domain pointer (0n: none) from `records`, or why they cannot tell. */
function domainsOf(
  tids: readonly number[],
  records: readonly TaskRecord[],
): Map<number, bigint> | string {
  const want = new Set(tids);
  if (records.length !== want.size) return `the iterator lists ${records.length} threads`;
  const domains: bigint[] = [];
  for (const r of records) {
    const d = landlockDomain(r);
    if (d === undefined) return `thread ${r.tid}'s credentials could not be read`;
    domains.push(d);
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
 * domain pointer: from `known` (records read in this freeze) or read now
 * (the task program loaded, normally before the freeze: the dump's warm-up).
 */
export function readLandlockDomains(
  pid: number,
  tids: readonly number[],
  known?: readonly TaskRecord[],
): Map<number, bigint> | string {
  // Tests take the path of a host where they cannot be read.
  if (Deno.env.get("CRYO_LANDLOCK") === "unread") return "CRYO_LANDLOCK=unread";
  if (!loadThreadIterator()) return `no BPF task iterator (${threadIteratorUnavailable()})`;
  if (threadIteratorLayout()?.landlockOffset === undefined) {
    return "Landlock's place in the credentials was not found";
  }
  try {
    return domainsOf(tids, known ?? readThreadRecords(pid));
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
