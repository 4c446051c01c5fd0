/**
 * Memory details beyond the pages: each mapping's madvise and mlock flags
 * (VmFlags), mseal, MADV_GUARD_INSTALL guard regions, and the process-wide memory
 * settings /proc does not show per mapping: mlockall(MCL_FUTURE) (found
 * with a probe page mapped by injection) and KSM
 * merge-any (PR_SET_MEMORY_MERGE). THP disable is a process attribute
 * (engine/task/attrs.ts).
 *
 * Dump: {@link collectMemoryDetails} records them and refuses mappings with
 * flags cryo does not re-create. Restore: {@link emitVmFlags} per mapping,
 * then {@link emitMemoryFlagsAfter} (guards, locks, process-wide flags); none of them may fail
 * (a flag that cannot be set fails the restore instead of being lost). Sealed
 * mappings ("sl", mseal) are sealed last of all, by the engine once the
 * program has run ({@link deferSeals}): nothing of the restore may change
 * them after that.
 *
 * @module
 */

import { isOwnTrackingFlag } from "./own_tracking.ts";
import { isSecretMem } from "./secretmem.ts";
import { recordHugePageSizes } from "./hugetlb.ts";
import { SYS } from "../../ffi/sysno.ts";
import type { Mapping, ProcessImage } from "../model.ts";
import type { Refusals } from "../support.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import type { InjectionSession } from "../dump/injected.ts";
import type { BatchStep } from "../../ffi/syscall_batch.ts";
import { readStatus } from "../proc/status.ts";
import { largestGap, type MapArea } from "../proc/maps.ts";
import { PKEY_CODE } from "../proc/smaps_flags.ts";
import { CryoError } from "../errors.ts";
import { pausePoint } from "../pause.ts";
import {
  openPagemap,
  PAGE_SIZE as PAGE,
  type PagemapReader,
  PM,
  readPagemap,
} from "../proc/pagemap.ts";

/** VmFlags that mmap itself (perms, backing, mmap flags) or the kernel sets. */
const FROM_MMAP = new Set([
  "rd",
  "wr",
  "ex",
  "sh",
  "mr",
  "mw",
  "me",
  "ms",
  "gd",
  "pf",
  "io",
  "de",
  "ac",
  "nr",
  "sd",
  "mm",
  "ar",
  "sf",
  "gu", // VM_MAYBE_GUARD: comes back with the guard regions
  "dp", // VM_DROPPABLE: mapped MAP_DROPPABLE (engine/restore/compile.ts)
]);

/** VmFlags set by madvise, with the advice that sets each. */
export const MADVISE_FOR_FLAG: Readonly<Record<string, number>> = {
  rr: 1, // MADV_RANDOM
  sr: 2, // MADV_SEQUENTIAL
  dc: 10, // MADV_DONTFORK
  mg: 12, // MADV_MERGEABLE
  hg: 14, // MADV_HUGEPAGE
  nh: 15, // MADV_NOHUGEPAGE
  dd: 16, // MADV_DONTDUMP
  wf: 18, // MADV_WIPEONFORK
};

/** VmFlags set by mlock/mlock2/mlockall. */
const LOCK_FLAGS = new Set(["lo", "lf"]);

/** VM_SEALED (mseal): sealed again at the very end of the restore ({@link deferSeals}). */
const SEALED = "sl";

/** Flags a fork does not pass on to the child's copy of a mapping. */
export const NOT_INHERITED_FLAGS: ReadonlySet<string> = LOCK_FLAGS;

const MADV_GUARD_INSTALL = 102;
/** mseal(2) (no libc wrapper; x86-64 number). */
const SYS_MSEAL = 462;
const MLOCK_ONFAULT = 1;
const MCL_FUTURE = 2;
const MCL_ONFAULT = 4;
const PR_SET_MEMORY_MERGE = 67;

/** Process-wide memory settings (ProcessImage.memoryFlags). */
export type MemoryProcessFlags = NonNullable<ProcessImage["memoryFlags"]>;

/** VmLck of `pid` in kB. */
function lockedKb(pid: number): number {
  return parseInt(readStatus(pid).fields["VmLck"] ?? "0", 10);
}

/**
 * mlockall(MCL_FUTURE) leaves no trace in /proc but on later mappings: a
 * probe page mapped by injection is locked (VmLck grows) and, without
 * MCL_ONFAULT, populated at once (present in pagemap). Call inside the
 * injection session; the probe page is unmapped again, and a cryo killed
 * while it exists leaves the target to unmap it itself before it goes on
 * ({@link InjectionSession.withUndo}): it is mapped at a fixed address in
 * the middle of the largest free gap, so that undo is harmless if the
 * mmap never ran.
 */
export function probeMlockFuture(s: InjectionSession): MemoryProcessFlags["mlockFuture"] {
  const before = lockedKb(s.pid);
  const at = freeProbePage(s.pid, s.areas);
  return s.withUndo(s.pid, [SYS.munmap, at, PAGE], () => {
    const probe = s.check(
      s.pid,
      "mmap(probe)",
      SYS.mmap,
      at,
      PAGE,
      1, /* PROT_READ */
      0x22 | MAP_FIXED_NOREPLACE,
      -1,
      0,
    );
    pausePoint("probe");
    if (lockedKb(s.pid) === before) return undefined;
    return readPagemap(s.pid, probe, probe + BigInt(PAGE)).present(0) ? "locked" : "onfault";
  });
}

const MAP_FIXED_NOREPLACE = 0x100000;
const MADV_DONTNEED = 4;
const EINVAL = 22n;

/**
 * {@link probeMlockFuture} as four steps of the main thread's injected batch
 * (no round trip of its own, no /proc read): an mmap of one read-only page at
 * `at`, mincore of it (its residency byte written at `vec`), madvise
 * MADV_DONTNEED (EINVAL on a VM_LOCKED mapping, which mlockall(MCL_FUTURE)
 * makes every new mapping, with or without MCL_ONFAULT) and its munmap.
 */
export interface MlockProbeSteps {
  /** The probe page. */
  at: bigint;
  /** The byte mincore writes (in the session's scratch page). */
  vec: bigint;
  steps: BatchStep[];
}

/**
 * The batch steps of the mlockall(MCL_FUTURE) probe of frozen process `pid`
 * (`known`: its areas read at this freeze), with mincore's byte at `vec`; or
 * undefined (no gap of 16 free pages: {@link probeMlockFuture} then). The
 * page is a quarter into the largest gap, which PROCMAP_QUERY confirms free
 * now, a quarter of it away from the batch's own code page (its middle): its
 * munmap, run whatever the mmap returned, unmaps nothing of the process's.
 */
export function mlockProbeSteps(
  pid: number,
  known: readonly MapArea[] | undefined,
  vec: bigint,
): MlockProbeSteps | undefined {
  let gap;
  try {
    gap = largestGap(pid, known);
  } catch {
    return undefined;
  }
  if (gap.size < BigInt(16 * PAGE)) return undefined;
  const at = (gap.start + gap.size / 4n) & ~BigInt(PAGE - 1);
  return {
    at,
    vec,
    steps: [
      { nr: SYS.mmap, args: [at, PAGE, 1, /* PROT_READ */ 0x22 | MAP_FIXED_NOREPLACE, -1, 0] },
      { nr: SYS.mincore, args: [at, PAGE, vec] },
      { nr: SYS.madvise, args: [at, PAGE, MADV_DONTNEED] },
      { nr: SYS.munmap, args: [at, PAGE] },
    ],
  };
}

/**
 * What the batch's probe ({@link mlockProbeSteps}) found, from its steps'
 * `results` and `residency` (reads mincore's byte); "failed" when a step did
 * not go as planned ({@link probeMlockFuture} then says why).
 */
export function mlockProbeOutcome(
  probe: MlockProbeSteps,
  results: readonly bigint[],
  residency: () => number,
): MemoryProcessFlags["mlockFuture"] | "failed" {
  const [mapped, resident, advised, unmapped] = results;
  if (mapped !== probe.at || resident !== 0n || unmapped !== 0n) return "failed";
  if (advised === 0n) return undefined; // not VM_LOCKED: no mlockall(MCL_FUTURE)
  if (advised !== -EINVAL) return "failed";
  // Locked: populated at the mmap unless MCL_ONFAULT.
  return residency() & 1 ? "locked" : "onfault";
}

/** A page-aligned address in the middle of the largest gap between two mappings of `pid`. */
function freeProbePage(pid: number, known?: readonly MapArea[]): bigint {
  const best = largestGap(pid, known);
  if (best.size < BigInt(3 * PAGE)) {
    throw new CryoError(`process ${pid}: no free address range for the mlockall probe`);
  }
  return (best.start + best.size / 2n) & ~BigInt(PAGE - 1);
}

/** The KSM merge-any setting of `pid`. */
function readProcessFlags(pid: number): Omit<MemoryProcessFlags, "mlockFuture"> {
  const out: Omit<MemoryProcessFlags, "mlockFuture"> = {};
  try {
    const ksm = Deno.readTextFileSync(`/proc/${pid}/ksm_stat`);
    if (/^ksm_merge_any:\s*yes$/m.test(ksm)) out.ksmMergeAny = true;
  } catch { /* kernel without KSM: nothing to restore */ }
  return out;
}

/**
 * Dump side: refuses mappings whose flags cryo does not re-create, records
 * guard regions in each mapping, and returns the process-wide settings.
 */
export function collectMemoryDetails(
  pid: number,
  mappings: Mapping[],
  mlockFuture: MemoryProcessFlags["mlockFuture"],
  refusals: Refusals,
): MemoryProcessFlags {
  let pagemap: PagemapReader | undefined;
  const judged = new Map<readonly string[], FlagsVerdict>();
  const reader = () => pagemap ??= openPagemap(pid);
  recordHugePageSizes(pid, mappings);
  try {
    // By forEach: no loop of 10,000 rounds for V8 to compile (engine/find_from.ts).
    mappings.forEach((m) => collectMappingDetails(pid, m, refusals, reader, judged));
  } finally {
    pagemap?.close();
  }
  const flags: MemoryProcessFlags = { ...readProcessFlags(pid) };
  if (mlockFuture) flags.mlockFuture = mlockFuture;
  return flags;
}

/** Whether this kernel marks areas with guard regions "gu" in VmFlags (6.18 on). */
const KERNEL_SHOWS_GUARDS = (() => {
  const [major, minor] = Deno.osRelease().split(/[.-]/).map(Number);
  return major > 6 || (major === 6 && minor >= 18);
})();

/** What one VmFlags list says: the flags not re-created, and whether "uw" and "gu" are in it. */
interface FlagsVerdict {
  odd: string[];
  uw: boolean;
  gu: boolean;
}

/** The verdict of `flags`, judged once per list (the dump's lists are shared, smaps_flags.ts). */
function verdictOf(
  flags: readonly string[],
  judged: Map<readonly string[], FlagsVerdict>,
): FlagsVerdict {
  let v = judged.get(flags);
  if (!v) {
    v = {
      odd: flags.filter((f) =>
        !FROM_MMAP.has(f) && MADVISE_FOR_FLAG[f] === undefined && !LOCK_FLAGS.has(f) &&
        f !== SEALED
      ),
      uw: flags.includes("uw"),
      gu: flags.includes("gu"),
    };
    judged.set(flags, v);
  }
  return v;
}

/**
 * Each VmFlags list seen without its "uw" (cryo's own tracking), made once
 * per list: 10,000 tracked areas share a few lists, and so share the
 * stripped ones (and their verdicts).
 */
const strippedUw = new WeakMap<readonly string[], string[]>();

/** `flags` without "uw", one shared list per `flags` list. */
function withoutUw(flags: string[]): string[] {
  let out = strippedUw.get(flags);
  if (!out) {
    out = flags.filter((f) => f !== "uw");
    strippedUw.set(flags, out);
  }
  return out;
}

/** Refuses what cryo cannot re-create of one mapping and records its guard regions. */
function collectMappingDetails(
  pid: number,
  m: Mapping,
  refusals: Refusals,
  pagemap: () => PagemapReader,
  /** What each VmFlags list seen says (10,000 mappings share a few lists). */
  judged: Map<readonly string[], FlagsVerdict>,
): void {
  if (m.kind === "vdso" || m.kind === "vsyscall") return;
  if (m.kind === "file-shared" && isSecretMem(m.name)) {
    refusals.use("memory.secretmem", `process ${pid} mapping ${m.start}-${m.end}`);
  }
  let v = verdictOf(m.vmFlags, judged);
  // cryo's own dirty tracking of a pre-dump (engine/dump/tracking.ts): never recorded.
  // (Only an area with "uw" can be one: 10,000 areas without it skip the lookup.)
  if (v.uw && isOwnTrackingFlag(pid, Number(m.start), Number(m.end))) {
    m.vmFlags = withoutUw(m.vmFlags);
    v = verdictOf(m.vmFlags, judged);
  }
  // An anonymous hugetlb mapping whose page size is known comes back with it (hugetlb.ts), a
  // SHM_HUGETLB attachment with its segment (sysvshm.ts: the segment's page size is read then).
  const odd = m.hugePageSize || m.kind === "sysv-shm" ? v.odd.filter((f) => f !== "ht") : v.odd;
  if (odd.length) {
    const where = `process ${pid} mapping ${m.start}-${m.end} (${m.name || "anonymous"})`;
    const others = odd.filter((f) => f !== PKEY_CODE);
    if (others.length !== odd.length) {
      refusals.use(
        "memory.pkey",
        where,
        "a memory protection key (pkey_mprotect) is not re-created",
      );
    }
    if (others.length) {
      refusals.use("memory.vmflags", where, `VmFlags ${others.join(" ")} not re-created`);
    }
  }
  // Guard regions show as VmFlag "gu" (VM_MAYBE_GUARD, kernel 6.18): only those
  // areas are scanned; older kernels get every area scanned.
  if (!v.gu && KERNEL_SHOWS_GUARDS) return;
  const guards = pagemap().runs(BigInt(m.start), BigInt(m.end), { all: PM.GUARD });
  if (guards.length) {
    m.guards = guards.map(([a, l]) => ({ addr: `0x${a.toString(16)}`, length: l }));
  }
}

/**
 * Copies of the two lists of VmFlags last seen by {@link emitVmFlags}
 * without a madvise flag in them (neighbours share or alternate theirs).
 */
let plainFlags: readonly string[] = [];
let plainFlags2: readonly string[] = [];

/** `flags.includes(flag)`, by an indexed loop (V8's `includes` costs more, 10,000 times). */
function hasFlag(flags: readonly string[], flag: string): boolean {
  for (let i = 0; i < flags.length; i++) if (flags[i] === flag) return true;
  return false;
}

/** Whether `a` and `b` hold the same flags in the same order. */
function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Whether `flags` has no madvise flag: {@link emitVmFlags} emits nothing
 * for a mapping with these flags (the same remembered lists answer).
 */
export function noAdvice(flags: readonly string[]): boolean {
  if (sameList(flags, plainFlags) || sameList(flags, plainFlags2)) return true;
  for (let i = 0; i < flags.length; i++) if (MADVISE_FOR_FLAG[flags[i]] !== undefined) return false;
  plainFlags2 = plainFlags;
  plainFlags = flags.slice(); // (a copy: nothing done to `flags` later can change it)
  return true;
}

/** Copies of the two lists last found quiet by {@link quietFlags}. */
let quietList: readonly string[] = [];
let quietList2: readonly string[] = [];
/** The two frozen lists last found quiet (a frozen list cannot change: its identity answers). */
let quietFrozen: readonly string[] | undefined;
let quietFrozen2: readonly string[] | undefined;

/**
 * Whether `flags` has no madvise flag and no lock flag ("lo"): neither
 * {@link emitVmFlags} nor the locks of {@link emitMemoryFlagsAfter} emit
 * anything for it. The last two such lists are remembered and compared;
 * the dump's lists, shared and frozen (engine/proc/smaps_flags.ts), are
 * recognised by identity.
 */
export function quietFlags(flags: readonly string[]): boolean {
  if (flags === quietFrozen || flags === quietFrozen2) return true;
  if (!sameList(flags, quietList) && !sameList(flags, quietList2)) {
    for (let i = 0; i < flags.length; i++) {
      const f = flags[i];
      if (f === "lo" || MADVISE_FOR_FLAG[f] !== undefined) return false;
    }
    quietList2 = quietList;
    quietList = flags.slice(); // (a copy: nothing done to `flags` later can change it)
  }
  if (Object.isFrozen(flags)) {
    quietFrozen2 = quietFrozen;
    quietFrozen = flags;
  }
  return true;
}

/**
 * Restore: the huge-page advice of a mapping ("hg" MADV_HUGEPAGE, "nh"
 * MADV_NOHUGEPAGE), before its pages are loaded: the faults of the load
 * allocate huge pages or not by it (advice given after the load would leave
 * an "hg" area in 4 KiB pages, or give an "nh" area huge ones under THP
 * "always"). {@link emitVmFlags} gives it again with the rest (no change).
 */
export function emitHugePageAdvice(p: ProgramBuilder, m: Mapping): void {
  const flags = m.vmFlags;
  if (sameList(flags, plainFlags) || sameList(flags, plainFlags2)) return;
  for (let i = 0; i < flags.length; i++) {
    const f = flags[i];
    if (f !== "hg" && f !== "nh") continue;
    const start = BigInt(m.start);
    p.op(SYS.madvise, [start, BigInt(m.end) - start, MADVISE_FOR_FLAG[f]], {
      comment: `VmFlag ${f}, before the pages`,
    });
  }
}

/** Restore: the madvise flags of a mapping, once its pages are in. */
export function emitVmFlags(p: ProgramBuilder, m: Mapping): void {
  const flags = m.vmFlags;
  // Neighbours mostly have equal lists without a madvise flag: compared, not looked up.
  if (sameList(flags, plainFlags) || sameList(flags, plainFlags2)) return;
  let any = false;
  for (let i = 0; i < flags.length; i++) {
    const f = flags[i];
    const advice = MADVISE_FOR_FLAG[f];
    if (advice === undefined) continue; // most flags: no bigints made for them
    any = true;
    const start = BigInt(m.start);
    const len = BigInt(m.end) - start;
    p.op(SYS.madvise, [start, len, advice], { comment: `VmFlag ${f}` });
  }
  if (!any) {
    plainFlags2 = plainFlags;
    plainFlags = flags.slice(); // (a copy: nothing done to `flags` later can change it)
  }
}

/**
 * Restore, once every mapping is in place: guard regions, then locks.
 * Guards come after all mappings because the area flag they set ("gu")
 * sticks to whatever a later mapping merges with; locks come after the
 * guards, which cannot be installed in a locked area.
 */
function emitGuardsAndLocks(
  p: ProgramBuilder,
  mappings: readonly Mapping[],
  examine: readonly number[] | undefined,
): void {
  let locked: Mapping[] | undefined; // (one pass over 10,000 mappings, not two)
  const n = examine ? examine.length : mappings.length;
  for (let k = 0; k < n; k++) {
    const m = mappings[examine ? examine[k] : k];
    if (hasFlag(m.vmFlags, "lo") && m.kind !== "vdso" && m.kind !== "vsyscall") {
      (locked ??= []).push(m);
    }
    if (!m.guards) continue; // (no empty list made for each of 10,000 mappings)
    for (const g of m.guards) {
      p.op(SYS.madvise, [BigInt(g.addr), g.length, MADV_GUARD_INSTALL], {
        comment: "guard region",
      });
    }
  }
  for (const m of locked ?? []) {
    const start = BigInt(m.start);
    const len = BigInt(m.end) - start;
    const onFault = m.vmFlags.includes("lf");
    // mlock refuses an inaccessible area (ENOMEM): lock it readable, then take that back.
    const none = m.perms.startsWith("---");
    if (none) p.op(SYS.mprotect, [start, len, 1], { comment: "readable while it is locked" });
    p.op(SYS.mlock2, [start, len, onFault ? MLOCK_ONFAULT : 0], {
      comment: onFault ? "mlock2(MLOCK_ONFAULT)" : "mlock",
    });
    if (none) p.op(SYS.mprotect, [start, len, 0]);
  }
}

/**
 * Restore, once every mapping is in: guard regions and locks of the
 * mappings, then the process-wide KSM merge-any and mlockall(MCL_FUTURE).
 * With `examine` (indices in increasing order), only those mappings are
 * looked at: the others are known to have no guard regions and quiet flags
 * ({@link quietFlags}; a run of 10,000 mappings is not walked again).
 */
export function emitMemoryFlagsAfter(
  p: ProgramBuilder,
  proc: ProcessImage,
  examine?: readonly number[],
): void {
  emitGuardsAndLocks(p, proc.mappings, examine);
  const f = proc.memoryFlags;
  if (f?.ksmMergeAny) {
    p.op(SYS.prctl, [PR_SET_MEMORY_MERGE, 1, 0, 0, 0], { comment: "PR_SET_MEMORY_MERGE" });
  }
  if (f?.mlockFuture) {
    // Without MCL_CURRENT existing mappings keep their own (restored) lock state.
    const flags = MCL_FUTURE | (f.mlockFuture === "onfault" ? MCL_ONFAULT : 0);
    p.op(SYS.mlockall, [flags], {
      comment: `mlockall(MCL_FUTURE${flags & 4 ? "|MCL_ONFAULT" : ""})`,
    });
  }
}

/** A syscall the engine injects once the restore program has run (engine/task/timers.ts's). */
interface Deferred {
  nr: number;
  args: bigint[];
  what: string;
}

/**
 * Restore: the sealed mappings of `proc` ("sl") are sealed again with
 * mseal, by the engine after the program and every other injection that
 * may change them (`deferred`, run at the session's finalize): sealing
 * forbids munmap, mremap, mprotect and mmap over them, and the program
 * maps, fills, protects, advises and locks them first. A child forked from
 * this process during its program inherits the mapping unsealed and seals
 * it in its own finalize.
 */
export function deferSeals(proc: ProcessImage, deferred: Deferred[]): void {
  // VmFlags lists are mostly shared (engine/image/flag_lists.ts): one `includes` per list in a
  // row, not per mapping; by forEach: no loop of 10,000 rounds for V8 to compile
  // (engine/find_from.ts).
  let list: readonly string[] | undefined, sealed = false;
  proc.mappings.forEach((m) => {
    const flags = m.vmFlags;
    if (flags !== list) {
      list = flags;
      sealed = flags.includes(SEALED);
    }
    if (!sealed || m.kind === "vdso" || m.kind === "vsyscall") return;
    const start = BigInt(m.start);
    deferred.push({
      nr: SYS_MSEAL,
      args: [start, BigInt(m.end) - start, 0n],
      what: `mseal(${m.start}-${m.end})`,
    });
  });
}
