/**
 * Reader of /proc/<pid>/status (and of a thread's), and a kernel-thread test.
 *
 * @module
 */

import { ProcFormatError } from "./errors.ts";
import { hexToBigInt, procPath, readProcText } from "./io.ts";
import { PF_KTHREAD, readStat } from "./stat.ts";

/** The fields of /proc/<pid>/status that cryo uses; everything is also in `fields`. */
export interface ProcStatus {
  /** Name (comm, escaped by the kernel: "\n" shows as "\\n", "\\" as "\\\\"). */
  name: string;
  /** File mode creation mask, or null on kernels without the line. */
  umask: number | null;
  /** State letter (R, S, D, T, t, Z, X, I, ...). */
  state: string;
  /** Thread group id (= pid of the process). */
  tgid: number;
  /** Thread id. */
  pid: number;
  /** Parent process id. */
  ppid: number;
  /** Pid of the tracer, 0 if not traced. */
  tracerPid: number;
  /** Real, effective, saved set and filesystem uid. */
  uid: [number, number, number, number];
  /** Real, effective, saved set and filesystem gid. */
  gid: [number, number, number, number];
  /** Supplementary groups. */
  groups: number[];
  /** Thread group id in each nested pid namespace, outermost first. */
  nstgid: number[];
  /** Thread id in each nested pid namespace, outermost first. */
  nspid: number[];
  /** Process group id per namespace (empty if the line is absent). */
  nspgid: number[];
  /** Session id per namespace (empty if the line is absent). */
  nssid: number[];
  /** Number of threads. */
  threads: number;
  /** Queued signals and the queue limit (SigQ: "queued/limit"). */
  sigQ: { queued: number; limit: number };
  /** Signals pending for this thread. Bit n-1 is signal n. */
  sigPnd: bigint;
  /** Signals pending for the whole process. */
  shdPnd: bigint;
  /** Blocked signals. */
  sigBlk: bigint;
  /** Ignored signals. */
  sigIgn: bigint;
  /** Caught signals (a handler is installed). */
  sigCgt: bigint;
  /** Inheritable capabilities. */
  capInh: bigint;
  /** Permitted capabilities. */
  capPrm: bigint;
  /** Effective capabilities. */
  capEff: bigint;
  /** Bounding set. */
  capBnd: bigint;
  /** Ambient capabilities. */
  capAmb: bigint;
  /** The no_new_privs bit. */
  noNewPrivs: boolean;
  /** Seccomp mode: 0 off, 1 strict, 2 filter. */
  seccomp: number;
  /** Kthread line (kernel 6.x), null when absent. */
  kthread: boolean | null;
  /** Every "Key:\tvalue" line, value trimmed. */
  fields: Record<string, string>;
}

function ints(text: string | undefined): number[] {
  if (text === undefined) return [];
  return text.split(/\s+/).filter((s) => s !== "").map(Number);
}

/** Parses the text of a status file. */
export function parseStatus(text: string, pid = 0, path = "status"): ProcStatus {
  const fields: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    fields[line.slice(0, colon)] = line.slice(colon + 1).trim();
  }
  const need = (key: string): string => {
    const v = fields[key];
    if (v === undefined) throw new ProcFormatError(pid, path, `no ${key} line`);
    return v;
  };
  const num = (key: string) => Number(need(key));
  const mask = (key: string) => hexToBigInt(need(key));
  const four = (key: string): [number, number, number, number] => {
    const v = ints(need(key));
    if (v.length !== 4) throw new ProcFormatError(pid, path, `${key} has ${v.length} values`);
    return [v[0], v[1], v[2], v[3]];
  };
  const [queued, limit] = need("SigQ").split("/").map(Number);
  // Name may legitimately be anything (even end in spaces): take it raw.
  const nameLine = text.match(/^Name:\t(.*)$/m);
  return {
    name: nameLine ? nameLine[1] : need("Name"),
    umask: fields.Umask === undefined ? null : parseInt(fields.Umask, 8),
    state: need("State").charAt(0),
    tgid: num("Tgid"),
    pid: num("Pid"),
    ppid: num("PPid"),
    tracerPid: num("TracerPid"),
    uid: four("Uid"),
    gid: four("Gid"),
    groups: ints(fields.Groups),
    nstgid: ints(fields.NStgid),
    nspid: ints(fields.NSpid),
    nspgid: ints(fields.NSpgid),
    nssid: ints(fields.NSsid),
    threads: num("Threads"),
    sigQ: { queued, limit },
    sigPnd: mask("SigPnd"),
    shdPnd: mask("ShdPnd"),
    sigBlk: mask("SigBlk"),
    sigIgn: mask("SigIgn"),
    sigCgt: mask("SigCgt"),
    capInh: mask("CapInh"),
    capPrm: mask("CapPrm"),
    capEff: mask("CapEff"),
    capBnd: mask("CapBnd"),
    capAmb: fields.CapAmb === undefined ? 0n : mask("CapAmb"),
    noNewPrivs: fields.NoNewPrivs === "1",
    seccomp: fields.Seccomp === undefined ? 0 : Number(fields.Seccomp),
    kthread: fields.Kthread === undefined ? null : fields.Kthread === "1",
    fields,
  };
}

/** Reads /proc/<pid>/status, or /proc/<pid>/task/<tid>/status when `tid` is given. */
export function readStatus(pid: number, tid?: number): ProcStatus {
  return parseStatus(readProcText(pid, "status", tid), pid, procPath(pid, "status", tid));
}

/**
 * The status of every thread `tids` of `pid`, each read once
 * (/proc/<pid>/task/<tid>/status). For a frozen process: what only the
 * thread itself changes (credentials, capabilities, no_new_privs, seccomp,
 * its signal mask, the process's signal actions while every thread is
 * stopped) holds until it runs again; pending signals may change meanwhile.
 */
export function readThreadStatuses(pid: number, tids: readonly number[]): Map<number, ProcStatus> {
  const out = new Map<number, ProcStatus>();
  for (const tid of tids) out.set(tid, readStatus(pid, tid));
  return out;
}

/** The comm of a status (its Name line with the kernel's escapes of "\n" and "\\" undone). */
export function statusComm(st: ProcStatus): string {
  return st.name.replace(/\\([n\\])/g, (_, c) => c === "n" ? "\n" : "\\");
}

/** Whether a thread uses a user shadow stack (the `shstk` feature of x86_Thread_features). */
export function usesShadowStack(st: ProcStatus): boolean {
  const f = st.fields["x86_Thread_features"];
  return f !== undefined && /\bshstk\b/.test(f);
}

/**
 * True when `pid` is a kernel thread (Kthread line of status, else the
 * PF_KTHREAD flag of stat).
 */
export function isKernelThread(pid: number): boolean {
  const st = readStatus(pid);
  if (st.kthread !== null) return st.kthread;
  return (readStat(pid).flags & PF_KTHREAD) !== 0;
}

/** True when signal `signo` (1..64) is set in a status mask. */
export function sigmaskHas(mask: bigint, signo: number): boolean {
  return ((mask >> BigInt(signo - 1)) & 1n) === 1n;
}
