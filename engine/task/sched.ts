/**
 * Scheduling of each thread: policy (with SCHED_RESET_ON_FORK), RT
 * priority, deadline parameters, nice, CPU affinity, timer slack and I/O
 * priority.
 *
 * Everything is read from outside the target (sched_getattr, getpriority,
 * sched_getaffinity and ioprio_get by tid; the thread's timer slack from
 * /proc/<tid>/timerslack_ns) and set again from cryo itself once the
 * restored threads exist (engine finalize, before detach). A thread whose
 * scheduling reads as recorded is left as it is; otherwise every value is
 * set and read back: a restore where the kernel refused or changed one
 * fails, naming the thread, instead of running with other scheduling.
 *
 * @module
 */

import {
  getAffinity,
  getIoprio,
  getNice,
  schedGetattr,
  schedSetattr,
  setAffinity,
  setIoprio,
  setNice,
} from "../../ffi/sched.ts";
import { errnoName } from "../../ffi/errno.ts";
import type { SchedAttr } from "../../ffi/structs.ts";
import { readProcText } from "../proc/io.ts";
import { RestoreError } from "../errors.ts";

/** The scheduling state of one thread. */
export interface ThreadSched {
  /** SCHED_OTHER 0, FIFO 1, RR 2, BATCH 3, IDLE 5, DEADLINE 6. */
  policy: number;
  /** sched_attr flags as sched_getattr reports them (RESET_ON_FORK 1, RECLAIM 2, DL_OVERRUN 4). */
  flags: number;
  /** Real-time priority (FIFO, RR), 0 otherwise. */
  priority: number;
  /** Nice value (-20..19); kept for every policy. */
  nice: number;
  /** SCHED_DEADLINE runtime, deadline and period in ns (decimal strings), "0" otherwise. */
  runtime: string;
  deadline: string;
  period: string;
  /** Utilization clamps as sched_getattr reports them (0 when the kernel has none). */
  utilMin: number;
  utilMax: number;
  /** CPUs the thread may run on. */
  cpus: number[];
  /** Timer slack in ns. */
  timerSlackNs: number;
  /** I/O priority (class << 13 | level), 0 when never set. */
  ioprio: number;
}

/** Policy names for messages. */
const POLICY_NAMES: Record<number, string> = {
  0: "SCHED_OTHER",
  1: "SCHED_FIFO",
  2: "SCHED_RR",
  3: "SCHED_BATCH",
  5: "SCHED_IDLE",
  6: "SCHED_DEADLINE",
};
/** SCHED_OTHER, SCHED_BATCH, SCHED_IDLE: sched_getattr's `sched_nice` is their nice value. */
const FAIR_POLICIES = new Set([0, 3, 5]);
/** sched_attr flags kept across a restore. */
const KEPT_FLAGS = 0x1 | 0x2 | 0x4;
/** SCHED_FLAG_UTIL_CLAMP_MIN | SCHED_FLAG_UTIL_CLAMP_MAX. */
const UTIL_CLAMP_FLAGS = 0x20n | 0x40n;

/** The name of scheduling policy `policy`. */
export function policyName(policy: number): string {
  return POLICY_NAMES[policy] ?? `policy ${policy}`;
}

function timerSlack(tid: number): number {
  // /proc/<tid> is the thread itself (the per-process file reads the leader's).
  return Number(readProcText(tid, "timerslack_ns").trim());
}

/**
 * Reads the scheduling state of thread `tid` (any thread cryo may inspect);
 * `timerSlackNs`: its timer slack when already read (PR_GET_TIMERSLACK in the thread);
 * `read`: its sched_getattr, CPUs and I/O priority when already read (ffi/thread_reads.ts).
 */
export function collectSched(
  tid: number,
  timerSlackNs?: number,
  read?: { attr: SchedAttr; cpus: number[]; ioprio: number },
): ThreadSched {
  return schedOf(
    read?.attr ?? schedGetattr(tid),
    () => getNice(tid),
    read?.cpus ?? getAffinity(tid),
    timerSlackNs !== undefined && timerSlackNs >= 0 ? timerSlackNs : timerSlack(tid),
    read?.ioprio ?? getIoprio(tid),
  );
}

/**
 * A thread's scheduling state from what was read of it: its sched_getattr
 * `a`, its nice value when `a` does not hold it (`nice`, called for the
 * real-time and deadline policies only), its CPUs, timer slack and I/O
 * priority. The one decoding of {@link collectSched} and of the reads a
 * restored thread makes in its own run (engine/task/sched_run.ts).
 */
export function schedOf(
  a: SchedAttr,
  nice: () => number,
  cpus: number[],
  timerSlackNs: number,
  ioprio: number,
): ThreadSched {
  return {
    policy: a.policy,
    flags: Number(a.flags) & KEPT_FLAGS,
    priority: a.priority,
    // sched_getattr reports the nice value (task_nice, as getpriority) for the fair
    // policies only; a real-time or deadline thread's is read by getpriority.
    nice: FAIR_POLICIES.has(a.policy) ? a.nice : nice(),
    runtime: a.runtime.toString(),
    deadline: a.deadline.toString(),
    period: a.period.toString(),
    utilMin: a.utilMin,
    utilMax: a.utilMax,
    cpus,
    timerSlackNs,
    ioprio,
  };
}

/** Whether `policy` is a fair one (OTHER, BATCH, IDLE): sched_getattr gives its nice value. */
export function isFairPolicy(policy: number): boolean {
  return FAIR_POLICIES.has(policy);
}

/** A one-line description of a thread's scheduling, for messages. */
export function describeSched(s: ThreadSched): string {
  const rt = s.policy === 1 || s.policy === 2 ? ` priority ${s.priority}` : "";
  const dl = s.policy === 6
    ? ` runtime ${s.runtime} deadline ${s.deadline} period ${s.period}`
    : "";
  const rof = s.flags & 1 ? "|SCHED_RESET_ON_FORK" : "";
  return `${policyName(s.policy)}${rof}${rt}${dl}`;
}

/** The differences between two scheduling states, as "field is X, the image has Y". */
export function schedDifferences(now: ThreadSched, want: ThreadSched): string[] {
  const out: string[] = [];
  const show = (v: unknown) => Array.isArray(v) ? `[${v.join(",")}]` : String(v);
  for (const key of Object.keys(want) as (keyof ThreadSched)[]) {
    if (show(now[key]) !== show(want[key])) {
      out.push(`${key} is ${show(now[key])}, the image has ${show(want[key])}`);
    }
  }
  return out;
}

/**
 * Sets the scheduling of restored thread `tid` (of process `pid`) to
 * `want`, from cryo. Throws a RestoreError naming the thread and the call
 * when the kernel refuses (e.g. SCHED_DEADLINE or an RT policy this host
 * does not allow, a CPU it does not have), or when a value read back
 * differs from the image. `slackLater`: the thread reads its timer slack
 * in its own run afterwards (engine/restore/thread_state.ts), checked by
 * {@link checkTimerSlacks}: when the rest reads as recorded, the slack is
 * not read here.
 */
export function restoreSched(
  pid: number,
  tid: number,
  want: ThreadSched,
  slackLater = false,
): void {
  // A restored thread starts with its creator's scheduling, most often the
  // recorded one: what is read equal to the image needs no call (this read is its check).
  const first = collectSched(tid, slackLater ? want.timerSlackNs : undefined);
  if (schedDifferences(first, want).length === 0) return;
  const where = `thread ${tid} of process ${pid}`;
  const fail = (what: string, r: bigint): never => {
    throw new RestoreError(
      `cannot restore the scheduling of ${where}: ${what} failed: ${errnoName(Number(-r))}`,
    );
  };
  // Affinity first: SCHED_DEADLINE refuses a thread whose affinity is narrower than its domain.
  let r = setAffinity(tid, want.cpus);
  if (r < 0n) fail(`sched_setaffinity(CPUs ${want.cpus.join(",")})`, r);
  // The nice value of an RT or deadline thread is only set by setpriority.
  r = setNice(tid, want.nice);
  if (r < 0n) fail(`setpriority(nice ${want.nice})`, r);
  const attr = {
    size: 0,
    policy: want.policy,
    flags: BigInt(want.flags & KEPT_FLAGS),
    nice: want.nice,
    priority: want.priority,
    runtime: BigInt(want.runtime),
    deadline: BigInt(want.deadline),
    period: BigInt(want.period),
    utilMin: want.utilMin,
    utilMax: want.utilMax,
  };
  r = schedSetattr(tid, attr);
  if (r < 0n) fail(`sched_setattr(${describeSched(want)})`, r);
  let now = schedGetattr(tid);
  if (now.utilMin !== want.utilMin || now.utilMax !== want.utilMax) {
    r = schedSetattr(tid, { ...attr, flags: attr.flags | UTIL_CLAMP_FLAGS });
    if (r < 0n) fail(`sched_setattr(util clamp ${want.utilMin}..${want.utilMax})`, r);
    now = schedGetattr(tid);
  }
  r = setIoprio(tid, want.ioprio);
  if (r < 0n) fail(`ioprio_set(0x${want.ioprio.toString(16)})`, r);
  setTimerSlack(tid, want.timerSlackNs, where);
  const diff = schedDifferences(collectSched(tid), want);
  if (diff.length) {
    throw new RestoreError(`cannot restore the scheduling of ${where}: ${diff.join("; ")}`);
  }
}

/** Writes thread `tid`'s timer slack when it reads otherwise (an RT or deadline thread's is 0). */
function setTimerSlack(tid: number, ns: number, where: string): void {
  // An RT or deadline thread's slack is fixed at 0 by the kernel (and reads so).
  if (timerSlack(tid) === ns || ns === 0) return;
  try {
    Deno.writeTextFileSync(`/proc/${tid}/timerslack_ns`, String(ns));
  } catch (e) {
    throw new RestoreError(
      `cannot restore the scheduling of ${where}: timer slack ${ns} ns: ${(e as Error).message}`,
    );
  }
}

/**
 * Checks the timer slack each thread of `image` in `read` read in its own
 * run (after {@link restoreSched} with `slackLater`): a value other than
 * the recorded one is set from cryo and read back from /proc, and a
 * restore where it still differs fails, naming the thread.
 */
export function checkTimerSlacks(
  image: { pid: number; threads: readonly { tid: number; sched?: ThreadSched }[] },
  read: ReadonlyMap<number, bigint>,
): void {
  for (const t of image.threads) {
    const now = read.get(t.tid);
    const want = t.sched?.timerSlackNs;
    if (now === undefined || want === undefined || now === BigInt(want)) continue;
    const where = `thread ${t.tid} of process ${image.pid}`;
    setTimerSlack(t.tid, want, where);
    const after = timerSlack(t.tid);
    if (after !== want) {
      throw new RestoreError(
        `cannot restore the scheduling of ${where}: timerSlackNs is ${after}, the image has ${want}`,
      );
    }
  }
}

const CAP_SYS_NICE = 23n;

/** Whether this (cryo's) process has CAP_SYS_NICE in its effective set. */
function haveSysNice(): boolean {
  const m = Deno.readTextFileSync("/proc/self/status").match(/^CapEff:\s+([0-9a-f]+)/m);
  return ((BigInt(`0x${m?.[1] ?? "0"}`) >> CAP_SYS_NICE) & 1n) === 1n;
}

/** The CPUs of a list such as "0-3,8" (/sys/devices/system/cpu/online). */
export function parseCpuList(text: string): Set<number> {
  const out = new Set<number>();
  for (const part of text.trim().split(",").filter((p) => p !== "")) {
    const [a, b] = part.split("-").map(Number);
    for (let c = a; c <= (b ?? a); c++) out.add(c);
  }
  return out;
}

/** rt_runtime_us of cryo's own cgroup (v1 cpu controller), or undefined where there is none. */
function rtRuntimeOfOwnCgroup(): number | undefined {
  try {
    const line = Deno.readTextFileSync("/proc/self/cgroup").split("\n")
      .find((l) => /^\d+:([^:]*,)?cpu(,[^:]*)?:/.test(l));
    if (!line) return undefined;
    const path = line.slice(line.indexOf(":", line.indexOf(":") + 1) + 1);
    const text = Deno.readTextFileSync(`/sys/fs/cgroup/cpu${path}/cpu.rt_runtime_us`);
    return Number(text.trim());
  } catch {
    return undefined;
  }
}

/**
 * Restore pre-flight: refuses, naming the first thread, scheduling this
 * host cannot give (CPUs it does not have online; RT or deadline policies,
 * negative nice or real-time I/O class without CAP_SYS_NICE; RT policies in
 * a cgroup without RT runtime). What only the kernel can judge (deadline
 * admission, cpusets) fails at finalize, also naming the thread.
 */
export function checkSchedulable(
  processes: readonly { pid: number; threads: { tid: number; sched?: ThreadSched }[] }[],
): void {
  let online: Set<number> | undefined;
  try {
    online = parseCpuList(Deno.readTextFileSync("/sys/devices/system/cpu/online"));
  } catch { /* no sysfs: the kernel judges at finalize */ }
  const nice = haveSysNice();
  const rtRuntime = rtRuntimeOfOwnCgroup();
  for (const p of processes) {
    for (const t of p.threads) {
      const s = t.sched;
      if (!s) continue;
      const where = `thread ${t.tid} of process ${p.pid}`;
      const missing = online ? s.cpus.filter((c) => !online.has(c)) : [];
      if (missing.length && missing.length === s.cpus.length) {
        throw new RestoreError(
          `cannot restore: ${where} may only run on CPUs ${s.cpus.join(",")}, ` +
            "which this host does not have online",
        );
      }
      const rt = s.policy === 1 || s.policy === 2 || s.policy === 6;
      const privileged = rt || s.nice < 0 || s.ioprio >> 13 === 1;
      if (privileged && !nice) {
        const what = rt
          ? describeSched(s)
          : s.nice < 0
          ? `nice ${s.nice}`
          : "the real-time I/O class";
        throw new RestoreError(`cannot restore: ${where} has ${what}, which needs CAP_SYS_NICE`);
      }
      if ((s.policy === 1 || s.policy === 2) && rtRuntime === 0) {
        throw new RestoreError(
          `cannot restore: ${where} has ${
            describeSched(s)
          }, but the restorer's cgroup has no real-time runtime (cpu.rt_runtime_us 0)`,
        );
      }
    }
  }
}
