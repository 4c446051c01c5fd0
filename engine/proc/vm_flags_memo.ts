/**
 * What smaps confirmed of the BPF iterator's decoding of vm_flags
 * (engine/proc/vma_flags_bpf.ts), remembered for the rest of the boot.
 *
 * The decoding table maps the running kernel's VM_* bits to smaps'
 * two-letter codes; the bits are constants of the kernel that runs, so a bit
 * whose decoding an smaps read confirmed stays confirmed until the machine
 * boots again. The memo is keyed by /proc/sys/kernel/random/boot_id and kept
 * in cryo's cache directory (`CRYO_CACHE_DIR`, else `$XDG_CACHE_HOME/cryo` or
 * `~/.cache/cryo`), in a file that only the user cryo runs as may write; any
 * doubt (another boot, another owner, a file group- or world-writable, a
 * malformed file) and it is not used. It also keeps the areas that smaps
 * lists and the iterator does not ([vsyscall]), as smaps showed them, and
 * the iterator program's kernel layout read from BTF (the same for the whole
 * boot: later dumps skip reading the kernel's 5 MB of BTF). The same file
 * keeps what the per-thread state's task iterator
 * (engine/proc/thread_state_bpf.ts) needs for the boot: its layout, and
 * which of its fields a check against the injected values confirmed
 * (engine/dump/thread_state.ts), under the same trust rules; and cryo's own
 * vvar/vdso layout and [vdso] hash (engine/restore/checks.ts
 * `startOwnVdso`: the same for every 64-bit process of the boot), and where
 * in the mapped files the dumps found the safe injection sites
 * (engine/dump/site_memo.ts: hints, read back before use); and the restart
 * block reader's layout and kernel symbol addresses
 * (engine/task/restart_block.ts); and what one page table entry change
 * costs on this host (ffi/pte_probe.ts, engine/dump/snapshot_choice.ts).
 *
 * @module
 */

import type { TaskVmaLayout } from "../../ffi/bpf.ts";
import type { TaskStateLayout } from "../../ffi/bpf_task.ts";
import type { SmapsArea } from "./smaps_flags.ts";

/** Bits confirmed on this boot, and the areas only smaps lists, as it showed them. */
export interface ConfirmedDecoding {
  /** Every vm_flags bit whose decoding smaps confirmed. */
  bits: bigint;
  /** Areas smaps lists that the iterator does not, with their VmFlags. */
  gate: SmapsArea[];
}

interface MemoFile {
  boot: string;
  bits?: string;
  layout?: TaskVmaLayout;
  gate?: {
    start: string;
    end: string;
    perms: string;
    offset: string;
    dev: string;
    inode: number;
    path: string;
    vmFlags: string[];
  }[];
  threadState?: ThreadStateMemo;
  ownVdso?: OwnVdsoMemo;
  safeSites?: SitesMemo[];
  restartBlock?: RestartBlockMemo;
  pteChangeNs?: number;
}

/**
 * What engine/task/restart_block.ts reads of the kernel for a thread in
 * restart_syscall: its BPF program's layout, the offsets in struct
 * restart_block it decodes (numbers, by name) and the addresses of the
 * restart functions it knows (hex, by name).
 */
export interface RestartBlockMemo {
  layout: Record<string, number>;
  fields: Record<string, number>;
  symbols: Record<string, string>;
}

/**
 * Where a code sequence of crash-safe injection (ffi/safe_inject.ts) lies
 * in a mapped file, as /proc/<pid>/maps names the file: device, inode and
 * path (`[vdso]` with device 00:00 and inode 0), and the offset in the file.
 */
export interface SitePlace {
  dev: string;
  inode: string;
  path: string;
  offset: number;
}

/** The two sites a dump found in one process (engine/dump/site_memo.ts). */
export interface SitesMemo {
  call: SitePlace;
  restorer: SitePlace;
}

/** Pairs kept (one per libc a dumped process used, the latest first). */
const SITES_KEPT = 8;

/** cryo's own vvar/vdso layout and the SHA-256 of its [vdso] ("" without one), as read on this boot. */
export interface OwnVdsoMemo {
  layout: { name: string; size: number }[];
  sha256: string;
}

/** What the memo keeps of the per-thread state's task iterator. */
interface ThreadStateMemo {
  layout?: TaskStateLayout;
  /** Set once a check found the iterator's values equal to the injected ones, thread by thread. */
  checked?: boolean;
  /** The fields such a check saw with a value other than 0 (and equal). */
  confirmed?: string[];
  /** Set once a check found a difference: the iterator is not used again on this boot. */
  refuted?: string;
  /** Why the Landlock offset probe failed on this boot (engine/task/landlock_probe.ts): not run again. */
  landlockUnfound?: string;
  /** For a failure that may pass: until when (ms since the epoch) it is remembered. */
  landlockUnfoundUntil?: number;
}

function memoDir(): string | undefined {
  const own = Deno.env.get("CRYO_CACHE_DIR");
  if (own) return `${own}/vmflags`;
  const home = Deno.env.get("HOME");
  const base = Deno.env.get("XDG_CACHE_HOME") || (home ? `${home}/.cache` : undefined);
  return base ? `${base}/cryo/vmflags` : undefined;
}

function bootId(): string | undefined {
  try {
    return Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Whether `path` belongs to this user and only this user may write it. */
function ownedAndPrivate(path: string): boolean {
  const st = Deno.lstatSync(path);
  return st.uid === Deno.uid() && ((st.mode ?? 0o777) & 0o022) === 0;
}

/** The memo of this boot, when there is one to trust. */
function readMemo(): { path: string; memo?: MemoFile; boot: string } | undefined {
  if (Deno.env.get("CRYO_VMFLAGS_MEMO") === "0") return undefined;
  const dir = memoDir(), boot = bootId();
  if (!dir || !boot) return undefined;
  const path = `${dir}/${boot}.json`;
  try {
    if (!ownedAndPrivate(dir) || !ownedAndPrivate(path)) return { path, boot };
    const memo = JSON.parse(Deno.readTextFileSync(path)) as MemoFile;
    return { path, boot, memo: memo.boot === boot ? memo : undefined };
  } catch {
    return { path, boot };
  }
}

/** Writes `memo` for the rest of this boot (a temporary file renamed over it); never throws. */
function writeMemo(path: string, memo: MemoFile): void {
  const dir = path.slice(0, path.lastIndexOf("/"));
  const tmp = `${dir}/.${memo.boot}.${Deno.pid}.tmp`;
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (!ownedAndPrivate(dir)) return;
    Deno.writeTextFileSync(tmp, JSON.stringify(memo), { mode: 0o600 });
    Deno.renameSync(tmp, path);
  } catch {
    try {
      Deno.removeSync(tmp);
    } catch { /* not there */ }
  }
}

/** What was confirmed earlier on this boot, or undefined (none, or not to be trusted). */
export function recallConfirmed(): ConfirmedDecoding | undefined {
  const memo = readMemo()?.memo;
  if (!memo?.bits || !/^0x[0-9a-f]+$/.test(memo.bits) || !Array.isArray(memo.gate)) {
    return undefined;
  }
  try {
    return {
      bits: BigInt(memo.bits),
      gate: memo.gate.map((g) => ({
        start: BigInt(g.start),
        end: BigInt(g.end),
        perms: g.perms,
        offset: BigInt(g.offset),
        dev: g.dev,
        inode: g.inode,
        path: g.path,
        deleted: false,
        vmFlags: [...g.vmFlags],
      })),
    };
  } catch {
    return undefined;
  }
}

/** Remembers `confirmed` for the rest of this boot. Best effort: never throws. */
export function rememberConfirmed(confirmed: ConfirmedDecoding): void {
  const read = readMemo();
  if (!read) return;
  writeMemo(read.path, {
    ...read.memo,
    boot: read.boot,
    bits: `0x${confirmed.bits.toString(16)}`,
    gate: confirmed.gate.map((g) => ({
      start: `0x${g.start.toString(16)}`,
      end: `0x${g.end.toString(16)}`,
      perms: g.perms,
      offset: `0x${g.offset.toString(16)}`,
      dev: g.dev,
      inode: g.inode,
      path: g.path,
      vmFlags: g.vmFlags,
    })),
  });
}

const LAYOUT_FIELDS: readonly (keyof TaskVmaLayout)[] = [
  "attachBtfId",
  "seqWriteHelper",
  "ctxMeta",
  "ctxVma",
  "metaSeq",
  "vmStart",
  "vmEnd",
  "vmFlags",
  "probeReadHelper",
];

/** The iterator's kernel layout as read from BTF earlier on this boot, or undefined. */
export function recallLayout(): TaskVmaLayout | undefined {
  const layout = readMemo()?.memo?.layout;
  if (!layout || typeof layout !== "object") return undefined;
  for (const f of LAYOUT_FIELDS) {
    if (!Number.isSafeInteger(layout[f]) || layout[f] < 0) return undefined;
  }
  // -1: a kernel without NUMA (a memo written before the field had none: read again).
  if (!Number.isSafeInteger(layout.vmPolicy) || layout.vmPolicy < -1) return undefined;
  return layout;
}

/** Remembers the iterator's kernel layout for the rest of this boot. Never throws. */
export function rememberLayout(layout: TaskVmaLayout): void {
  const read = readMemo();
  if (!read) return;
  const kept: TaskVmaLayout = { ...layout };
  writeMemo(read.path, { ...read.memo, boot: read.boot, layout: kept });
}

const THREAD_LAYOUT_FIELDS: readonly Exclude<
  keyof TaskStateLayout,
  | "noTscBit"
  | "landlockOffset"
  | "credSecurity"
  | "mempolicy"
  | "threadKeyring"
  | "sessionKeyring"
  | "cgroups"
  | "loginuid"
  | "sessionid"
>[] = [
  "attachBtfId",
  "seqWriteHelper",
  "probeReadHelper",
  "ctxMeta",
  "ctxTask",
  "metaSeq",
  "pid",
  "tgid",
  "sasSsSp",
  "sasSsSize",
  "sasSsFlags",
  "pdeathSignal",
  "clearChildTid",
  "timerSlackNs",
  "cred",
  "securebits",
  "mm",
  "defFlags",
  "realCred",
  "atomicFlags",
  "seccompMode",
  "flags",
  "credUid",
  "credGid",
  "credSuid",
  "credSgid",
  "credEuid",
  "credEgid",
  "credFsuid",
  "credFsgid",
  "credCapInh",
  "credCapPrm",
  "credCapEff",
  "credCapBnd",
  "credCapAmb",
  "groupInfo",
  "ngroups",
  "comm",
  "children",
  "threadInfoFlags",
  "personality",
  "nsproxy",
  "fs",
  "files",
];

/** What this boot's memo holds of the per-thread state's iterator. */
export interface RecalledThreadState {
  /** Its kernel layout as read from BTF earlier on this boot, if it is there and well formed. */
  layout?: TaskStateLayout;
  /** Whether a check on this boot found its values equal to the injected ones. */
  checked: boolean;
  /** The fields that check saw other than 0 (and equal). */
  confirmed: ReadonlySet<string>;
  /** The difference a check on this boot found, if one did (the iterator is then not used). */
  refuted?: string;
  /**
   * Why the Landlock offset probe failed on this boot, if it did (it is not
   * run again: for the boot, or a minute for a failure that may pass).
   */
  landlockUnfound?: string;
}

/** The per-thread state's iterator as remembered on this boot, or undefined (nothing to trust). */
export function recallThreadState(): RecalledThreadState | undefined {
  const t = readMemo()?.memo?.threadState;
  if (!t || typeof t !== "object") return undefined;
  let layout: TaskStateLayout | undefined = t.layout;
  if (
    !layout || typeof layout !== "object" ||
    THREAD_LAYOUT_FIELDS.some((f) => !Number.isSafeInteger(layout![f]) || layout![f] < 0) ||
    [
      layout.mempolicy,
      layout.threadKeyring,
      layout.sessionKeyring,
      layout.cgroups,
      layout.loginuid,
      layout.sessionid,
      layout.credSecurity,
    ].some((v) => !Number.isSafeInteger(v) || v < -1)
  ) layout = undefined;
  else if (
    layout.noTscBit !== undefined &&
    !(Number.isSafeInteger(layout.noTscBit) && layout.noTscBit >= 0 && layout.noTscBit < 32)
  ) layout = { ...layout, noTscBit: undefined };
  if (
    layout?.landlockOffset !== undefined &&
    !(Number.isSafeInteger(layout.landlockOffset) && layout.landlockOffset >= 0 &&
      layout.landlockOffset % 8 === 0)
  ) layout = { ...layout, landlockOffset: undefined };
  const confirmed = Array.isArray(t.confirmed) && t.confirmed.every((f) => typeof f === "string")
    ? new Set(t.confirmed)
    : new Set<string>();
  const refuted = typeof t.refuted === "string" ? t.refuted : undefined;
  const unfound = typeof t.landlockUnfound === "string" && !unfoundExpired(t.landlockUnfoundUntil)
    ? t.landlockUnfound
    : undefined;
  return {
    layout,
    checked: t.checked === true,
    confirmed,
    ...(refuted ? { refuted } : {}),
    ...(unfound ? { landlockUnfound: unfound } : {}),
  };
}

/** Remembers the per-thread state iterator's kernel layout for this boot. Never throws. */
export function rememberThreadLayout(layout: TaskStateLayout): void {
  const read = readMemo();
  if (!read) return;
  const threadState = { ...read.memo?.threadState, layout: { ...layout } };
  writeMemo(read.path, { ...read.memo, boot: read.boot, threadState });
}

/**
 * Remembers that a check on this boot found the iterator's values equal
 * to the injected ones, with the fields it saw other than 0 (added to those
 * remembered). Never throws.
 */
export function rememberThreadCheck(confirmed: Iterable<string>): void {
  rememberThreadNames(confirmed, true);
}

/**
 * Remembers that a check on this boot confirmed `confirmed` (added to those
 * remembered) without marking the iterator's values checked
 * (engine/dump/task_flags.ts: a check of other fields). Never throws.
 */
export function rememberThreadConfirmed(confirmed: Iterable<string>): void {
  rememberThreadNames(confirmed, false);
}

/** Adds `confirmed` to the thread state's confirmed names (`checked`: and marks it checked). */
function rememberThreadNames(confirmed: Iterable<string>, checked: boolean): void {
  const read = readMemo();
  if (!read) return;
  const before = read.memo?.threadState;
  const all = new Set([
    ...(Array.isArray(before?.confirmed) ? before.confirmed : []),
    ...confirmed,
  ]);
  const threadState = {
    ...before,
    ...(checked ? { checked: true } : {}),
    confirmed: [...all].sort(),
  };
  writeMemo(read.path, { ...read.memo, boot: read.boot, threadState });
}

/**
 * How long a failure of the Landlock offset probe that may pass (no memory,
 * a full TMPDIR: engine/task/landlock_probe.ts `ProbeFailure`) is remembered:
 * dumps in a burst do not each start a probe that fails, and one a minute
 * later tries again.
 */
export const LANDLOCK_UNFOUND_RETRY_MS = 60_000;

/**
 * Whether a passing probe failure remembered until `until` (ms since the
 * epoch; absent: a lasting one, kept for the boot) is over: its time passed,
 * or it lies further ahead than it could (the clock was set back), or it
 * is not a number.
 */
function unfoundExpired(until: unknown, now = Date.now()): boolean {
  if (until === undefined) return false;
  return typeof until !== "number" || !(until > now && until - now <= LANDLOCK_UNFOUND_RETRY_MS);
}

/**
 * Remembers that the Landlock offset probe failed on this boot (`why`): a
 * `lasting` failure for the boot, as its success is remembered with the
 * layout (later dumps start no probe), another for
 * {@link LANDLOCK_UNFOUND_RETRY_MS}. Never throws.
 */
export function rememberLandlockUnfound(why: string, lasting: boolean): void {
  const read = readMemo();
  if (!read) return;
  const { landlockUnfoundUntil: _, ...before } = read.memo?.threadState ?? {};
  const threadState = {
    ...before,
    landlockUnfound: why,
    ...(lasting ? {} : { landlockUnfoundUntil: Date.now() + LANDLOCK_UNFOUND_RETRY_MS }),
  };
  writeMemo(read.path, { ...read.memo, boot: read.boot, threadState });
}

/** Remembers that a check on this boot found a difference (`why`): no more iterator reads. */
export function rememberThreadRefuted(why: string): void {
  const read = readMemo();
  if (!read) return;
  const threadState = { ...read.memo?.threadState, refuted: why };
  writeMemo(read.path, { ...read.memo, boot: read.boot, threadState });
}

const VDSO_NAMES: ReadonlySet<string> = new Set(["[vvar]", "[vvar_vclock]", "[vdso]"]);

/**
 * cryo's own vdso facts as read earlier on this boot (the kernel's vdso and
 * vvar do not change before it boots again), or undefined when there are
 * none to trust or they are not well formed.
 */
export function recallOwnVdso(): OwnVdsoMemo | undefined {
  const v = readMemo()?.memo?.ownVdso;
  if (!v || typeof v !== "object" || !Array.isArray(v.layout) || typeof v.sha256 !== "string") {
    return undefined;
  }
  if (!/^([0-9a-f]{64})?$/.test(v.sha256)) return undefined;
  const layout: OwnVdsoMemo["layout"] = [];
  for (const e of v.layout) {
    if (!e || !VDSO_NAMES.has(e.name) || !Number.isSafeInteger(e.size) || e.size <= 0) {
      return undefined;
    }
    layout.push({ name: e.name, size: e.size });
  }
  return { layout, sha256: v.sha256 };
}

/** Remembers cryo's own vdso facts for the rest of this boot. Never throws. */
export function rememberOwnVdso(own: OwnVdsoMemo): void {
  const read = readMemo();
  if (!read) return;
  const ownVdso = { layout: own.layout.map((e) => ({ ...e })), sha256: own.sha256 };
  writeMemo(read.path, { ...read.memo, boot: read.boot, ownVdso });
}

function sitePlace(x: unknown): SitePlace | undefined {
  const p = x as SitePlace;
  if (!p || typeof p !== "object" || typeof p.dev !== "string" || typeof p.path !== "string") {
    return undefined;
  }
  if (!/^[0-9a-f]+:[0-9a-f]+$/.test(p.dev) || typeof p.inode !== "string") return undefined;
  if (!/^\d{1,20}$/.test(p.inode) || !Number.isSafeInteger(p.offset) || p.offset < 0) {
    return undefined;
  }
  return { dev: p.dev, inode: p.inode, path: p.path, offset: p.offset };
}

/**
 * The safe sites' places found earlier on this boot (latest first; none
 * when there is no memo to trust). Only hints: ffi/safe_inject.ts reads
 * their bytes back before it uses one.
 */
export function recallSafeSites(): SitesMemo[] {
  const v = readMemo()?.memo?.safeSites;
  if (!Array.isArray(v)) return [];
  const out: SitesMemo[] = [];
  for (const e of v.slice(0, SITES_KEPT)) {
    const call = sitePlace(e?.call), restorer = sitePlace(e?.restorer);
    if (call && restorer) out.push({ call, restorer });
  }
  return out;
}

/** Remembers a pair of sites' places for the rest of this boot (first in the list). Never throws. */
export function rememberSafeSites(pair: SitesMemo): void {
  const read = readMemo();
  if (!read) return;
  const same = (a: SitePlace, b: SitePlace) =>
    a.dev === b.dev && a.inode === b.inode && a.path === b.path && a.offset === b.offset;
  const others = recallSafeSites().filter((m) =>
    !same(m.call, pair.call) || !same(m.restorer, pair.restorer)
  );
  const safeSites = [
    { call: { ...pair.call }, restorer: { ...pair.restorer } },
    ...others,
  ].slice(0, SITES_KEPT);
  writeMemo(read.path, { ...read.memo, boot: read.boot, safeSites });
}

/** The restart block reader's facts of this boot, or undefined (none, or not well formed). */
export function recallRestartBlock(): RestartBlockMemo | undefined {
  const m = readMemo()?.memo?.restartBlock;
  if (!m || typeof m !== "object") return undefined;
  const numbers = (o: unknown) =>
    !!o && typeof o === "object" &&
    Object.values(o).every((v) => Number.isSafeInteger(v) && v >= 0);
  const hexes = (o: unknown) =>
    !!o && typeof o === "object" &&
    Object.values(o).every((v) => typeof v === "string" && /^0x[0-9a-f]{1,16}$/.test(v));
  if (!numbers(m.layout) || !numbers(m.fields) || !hexes(m.symbols)) return undefined;
  return { layout: { ...m.layout }, fields: { ...m.fields }, symbols: { ...m.symbols } };
}

/** Remembers the restart block reader's facts for the rest of this boot. Never throws. */
export function rememberRestartBlock(memo: RestartBlockMemo): void {
  const read = readMemo();
  if (!read) return;
  writeMemo(read.path, { ...read.memo, boot: read.boot, restartBlock: memo });
}

/** The cost of one page table entry change measured on this boot, in ns (ffi/pte_probe.ts), or undefined. */
export function recallPteChangeNs(): number | undefined {
  const ns = readMemo()?.memo?.pteChangeNs;
  return typeof ns === "number" && Number.isFinite(ns) && ns > 0 ? ns : undefined;
}

/** Remembers the cost of one page table entry change for the rest of this boot. Never throws. */
export function rememberPteChangeNs(ns: number): void {
  const read = readMemo();
  if (!read) return;
  writeMemo(read.path, { ...read.memo, boot: read.boot, pteChangeNs: ns });
}
