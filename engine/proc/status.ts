/**
 * Reader of /proc/<pid>/status (and of a thread's), and a kernel-thread test.
 *
 * @module
 */

import { ProcFormatError } from "./errors.ts";
import { hexToBigInt, procPath, readProcText } from "./io.ts";
import { PF_KTHREAD, readStat } from "./stat.ts";
import { takeStatusAhead } from "./status_ahead.ts";

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
  /** The x86_Thread_features line ("" when absent; set by {@link parseStatus}). */
  threadFeatures?: string;
}

function ints(text: string | undefined): number[] {
  if (text === undefined) return [];
  return text.split(/\s+/).filter((s) => s !== "").map(Number);
}

/** Every "Key:\tvalue" line of a status text, value trimmed. */
function statusFields(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    fields[line.slice(0, colon)] = line.slice(colon + 1).trim();
  }
  return fields;
}

/** The blocks of lines of a status that sibling threads most often share (see {@link parseStatus}). */
interface SharedBlocks {
  /** Uid, Gid, FDSize, Groups. */
  ids?: string;
  /** SigIgn, SigCgt (the process's signal actions). */
  actions?: string;
  /** CapInh ... CapAmb, NoNewPrivs, Seccomp. */
  caps?: string;
}

/** The blocks of each parsed status, for {@link parseStatus}'s `like`. */
const blocksOf = new WeakMap<ProcStatus, SharedBlocks>();

/**
 * Parses the text of a status file: each line it uses found by a native
 * search (a dump parses every thread's status while the tree is frozen, in
 * code too cold to be optimised); the table of every line, `fields`, is
 * made only when asked for. With `like` (the parsed status of a sibling
 * thread), a block of lines whose text is the same as in `like` (ids and
 * groups; signal actions; capabilities, no_new_privs and seccomp mode:
 * what threads of a process most often share) takes its values from it
 * instead of parsing them again: the same text gives the same values.
 */
export function parseStatus(
  text: string,
  pid = 0,
  path = "status",
  like?: ProcStatus,
): ProcStatus {
  // The lines are searched from the end of the last one found, in the kernel's order (each
  // "\nKey:" occurs once: the same line as a search from the start, which a miss falls back to).
  let cursor = 0;
  const raw = (key: string): string | undefined => {
    if (cursor > 0) {
      const at = text.indexOf(`\n${key}:`, cursor - 1);
      if (at >= 0) {
        const from = at + key.length + 2;
        const end = text.indexOf("\n", from);
        cursor = end < 0 ? text.length : end + 1;
        return text.slice(from, end < 0 ? text.length : end);
      }
    }
    // From the start: the line at the text's start, or after a newline (no value holds
    // one: the kernel escapes a newline in Name).
    let at: number;
    if (text.startsWith(key) && text.charCodeAt(key.length) === 58 /* : */) at = 0;
    else {
      at = text.indexOf(`\n${key}:`);
      if (at < 0) return undefined;
      at++;
    }
    const from = at + key.length + 1;
    const end = text.indexOf("\n", from);
    cursor = end < 0 ? text.length : end + 1;
    return text.slice(from, end < 0 ? text.length : end);
  };
  const between = (first: string, last: string): string | undefined => {
    let from = cursor > 0 ? text.indexOf(`\n${first}:`, cursor - 1) : -1;
    if (from < 0) from = text.indexOf(`\n${first}:`);
    if (from < 0) return undefined;
    const at = text.indexOf(`\n${last}:`, from);
    if (at < 0) return undefined;
    const end = text.indexOf("\n", at + 1);
    return text.slice(from, end < 0 ? text.length : end);
  };
  const get = (key: string) => raw(key)?.trim();
  const need = (key: string): string => {
    const v = get(key);
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
  const their = like && blocksOf.get(like);
  const blocks: SharedBlocks = {};
  const same = (k: keyof SharedBlocks) => their?.[k] !== undefined && their[k] === blocks[k];
  // Name may legitimately be anything (even end in spaces): taken raw after its tab.
  const rawName = raw("Name");
  const umask = get("Umask");
  const state = need("State").charAt(0);
  const tgid = num("Tgid");
  const tid = num("Pid");
  const ppid = num("PPid");
  const tracerPid = num("TracerPid");
  blocks.ids = between("Uid", "Groups");
  const ids = like && same("ids")
    ? {
      uid: [...like.uid] as typeof like.uid,
      gid: [...like.gid] as typeof like.gid,
      groups: [...like.groups],
    }
    : { uid: four("Uid"), gid: four("Gid"), groups: ints(get("Groups")) };
  const nstgid = ints(get("NStgid"));
  const nspid = ints(get("NSpid"));
  const nspgid = ints(get("NSpgid"));
  const nssid = ints(get("NSsid"));
  const kthread = get("Kthread");
  const threads = num("Threads");
  const [queued, limit] = need("SigQ").split("/").map(Number);
  const sigPnd = mask("SigPnd");
  const shdPnd = mask("ShdPnd");
  const sigBlk = mask("SigBlk");
  blocks.actions = between("SigIgn", "SigCgt");
  const actions = like && same("actions")
    ? { sigIgn: like.sigIgn, sigCgt: like.sigCgt }
    : { sigIgn: mask("SigIgn"), sigCgt: mask("SigCgt") };
  blocks.caps = between("CapInh", "Seccomp");
  let caps: Pick<
    ProcStatus,
    "capInh" | "capPrm" | "capEff" | "capBnd" | "capAmb" | "noNewPrivs" | "seccomp"
  >;
  if (like && same("caps")) {
    const { capInh, capPrm, capEff, capBnd, capAmb, noNewPrivs, seccomp } = like;
    caps = { capInh, capPrm, capEff, capBnd, capAmb, noNewPrivs, seccomp };
  } else {
    const capInh = mask("CapInh");
    const capPrm = mask("CapPrm");
    const capEff = mask("CapEff");
    const capBnd = mask("CapBnd");
    const capAmb = get("CapAmb");
    const noNewPrivs = get("NoNewPrivs") === "1";
    const seccomp = get("Seccomp");
    caps = {
      capInh,
      capPrm,
      capEff,
      capBnd,
      capAmb: capAmb === undefined ? 0n : hexToBigInt(capAmb),
      noNewPrivs,
      seccomp: seccomp === undefined ? 0 : Number(seccomp),
    };
  }
  const threadFeatures = get("x86_Thread_features") ?? "";
  let fields: Record<string, string> | undefined;
  const st: ProcStatus = {
    name: rawName?.startsWith("\t") ? rawName.slice(1) : need("Name"),
    umask: umask === undefined ? null : parseInt(umask, 8),
    state,
    tgid,
    pid: tid,
    ppid,
    tracerPid,
    uid: ids.uid,
    gid: ids.gid,
    groups: ids.groups,
    nstgid,
    nspid,
    nspgid,
    nssid,
    threads,
    sigQ: { queued, limit },
    sigPnd,
    shdPnd,
    sigBlk,
    sigIgn: actions.sigIgn,
    sigCgt: actions.sigCgt,
    capInh: caps.capInh,
    capPrm: caps.capPrm,
    capEff: caps.capEff,
    capBnd: caps.capBnd,
    capAmb: caps.capAmb,
    noNewPrivs: caps.noNewPrivs,
    seccomp: caps.seccomp,
    kthread: kthread === undefined ? null : kthread === "1",
    threadFeatures,
    get fields() {
      return fields ??= statusFields(text);
    },
  };
  blocksOf.set(st, blocks);
  return st;
}

/**
 * Reads /proc/<pid>/status, or /proc/<pid>/task/<tid>/status when `tid` is
 * given (`like`: a sibling thread's status, see {@link parseStatus}).
 */
export function readStatus(pid: number, tid?: number, like?: ProcStatus): ProcStatus {
  return parseStatus(readProcText(pid, "status", tid), pid, procPath(pid, "status", tid), like);
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
  let like: ProcStatus | undefined;
  for (const tid of tids) {
    const text = takeStatusAhead(pid, tid); // read in this freeze on another thread (status_ahead.ts)
    const st = text === undefined
      ? readStatus(pid, tid, like)
      : parseStatus(text, pid, procPath(pid, "status", tid), like);
    like ??= st;
    out.set(tid, st);
  }
  return out;
}

/** The comm of a status (its Name line with the kernel's escapes of "\n" and "\\" undone). */
export function statusComm(st: ProcStatus): string {
  return st.name.replace(/\\([n\\])/g, (_, c) => c === "n" ? "\n" : "\\");
}

/** Whether a thread uses a user shadow stack (the `shstk` feature of x86_Thread_features). */
export function usesShadowStack(st: ProcStatus): boolean {
  const f = st.threadFeatures ?? st.fields["x86_Thread_features"];
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
