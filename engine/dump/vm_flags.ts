/**
 * The mappings' VmFlags of a frozen process, by the cheapest exact source.
 *
 * First choice, for a process large enough to pay for it ({@link bpfFlagsPay}):
 * the areas from /proc/<pid>/maps and each area's vm_flags from a BPF
 * task_vma iterator (engine/proc/vma_flags_bpf.ts), decoded to smaps'
 * two-letter codes by a table. Before the freeze, {@link startVmFlagsCheck}
 * reads smaps of each process and compares the table's decoding with it
 * area by area: one disagreement and the dump reads smaps as before; at the
 * freeze, {@link frozenVmFlags} takes the iterator's flags only if it lists
 * exactly the areas of maps and every bit set is one smaps confirmed. Bits
 * confirmed once stay confirmed for the rest of the boot
 * (engine/proc/vm_flags_memo.ts): a process whose bits all are needs no
 * smaps read before the freeze either.
 * `CRYO_VMFLAGS=smaps` forces smaps, `=bpf` the iterator at any size.
 *
 * Otherwise /proc/<pid>/smaps, which walks every page table entry of every
 * area (~60 ms for 2 GiB resident). For a large resident set the collect
 * takes the areas from maps (no page walk), makes its injected calls, and
 * only then starts the smaps read on another thread: the injection's own
 * areas (scratch, batch and probe pages) are gone by then, and the frozen
 * tree changes no mapping, so smaps lists exactly the areas of maps. That is
 * checked area by area ({@link flagsOfMaps}): a difference fails the dump,
 * never fills in a flag from another area.
 *
 * @module
 */

import type { Mapping, ProcessImage } from "../model.ts";
import { CryoError } from "../errors.ts";
import type { MemoryProcessFlags } from "../memory/flags.ts";
import {
  countLines,
  parseMapsBytes,
  prepareAreaAnswers,
  readMaps,
  readMapsBytes,
  sameBytes,
  takeCountedMaps,
} from "../proc/maps.ts";
import {
  flagsOfMaps,
  readSmapsFlags,
  readSmapsFlagsOffThread,
  sameArea,
  type SmapsArea,
} from "../proc/smaps_flags.ts";
import {
  bpfUnavailable,
  checkDecoding,
  decodeVmFlags,
  loadVmaIterator,
  policyStarts,
  readVmaBytes,
  startVmaBytesRead,
  type VmaBytesRead,
  type VmaRecords,
  vmaRecordsOf,
} from "../proc/vma_flags_bpf.ts";
import { VMA_RECORD_SIZE } from "../../ffi/bpf.ts";
import {
  type ConfirmedDecoding,
  recallConfirmed,
  rememberConfirmed,
} from "../proc/vm_flags_memo.ts";
import { listDescendants } from "../proc/tasks.ts";
import { readStat } from "../proc/stat.ts";
import type { CollectedProcess } from "./process.ts";
import { draftMappings } from "./mapping_drafts.ts";
import { inAddressOrder } from "./vmas.ts";
import { ReadAhead } from "../../ffi/read_ahead.ts";
import { closeRawFd, openRawFd, tablesAvailable } from "../../ffi/syscall_table.ts";
import { sleepSync } from "../sleep_sync.ts";
import { findFrom, findIndexBelow } from "../find_from.ts";

/**
 * From which resident set the smaps read overlaps the collect. Below it the
 * walk is short (~2 ms for 64 MiB) and one pass of smaps costs less than
 * maps plus smaps (10,000 mappings make 7 MB of smaps text). Tests set it to
 * 0 to take the overlapped path with small targets.
 */
export const smapsOverlap = { minRssBytes: 256 * 2 ** 20 };

/** Whether a process of `rssPages` resident pages has its smaps read beside the collect. */
export function smapsOverlaps(rssPages: number): boolean {
  return rssPages * 4096 >= smapsOverlap.minRssBytes;
}

/** Flags not known yet: one shared empty list, replaced by {@link completeVmFlags}. */
const UNKNOWN: string[] = Object.freeze([]) as unknown as string[];

/** The areas of /proc/<pid>/maps, their VmFlags not read yet. */
export function mapsWithoutFlags(pid: number): SmapsArea[] {
  const maps = readMaps(pid) as SmapsArea[];
  maps.forEach(flagsUnknown);
  return maps;
}

/**
 * Waits for `smaps`, puts each area's VmFlags in `maps[i]` and
 * `mappings[i]` (built from `maps`, in the same order), then runs
 * `details` (which reads the flags) and settles with its result. The
 * promise never rejects unhandled: a failure is thrown where it is awaited.
 */
export function completeVmFlags(
  pid: number,
  maps: SmapsArea[],
  mappings: Mapping[],
  smaps: Promise<SmapsArea[]>,
  details: () => MemoryProcessFlags,
): Promise<MemoryProcessFlags> {
  const p = smaps.then((areas) => {
    const flags = flagsOfMaps(pid, maps, areas);
    flags.forEach((f, i) => { // (forEach: no loop of 10,000 rounds for V8 to compile)
      maps[i].vmFlags = f;
      mappings[i].vmFlags = f;
    });
    return details();
  });
  p.catch(() => {}); // awaited later, or not at all when the dump failed first
  return p;
}

/**
 * Completes the VmFlags of every collected process (in order) and sets each
 * image's memory flags. Call it before anything reads the flags.
 */
export async function awaitVmFlags(
  processes: { collected: CollectedProcess; image: Pick<ProcessImage, "memoryFlags"> }[],
): Promise<void> {
  for (const { collected, image } of processes) {
    const pending = collected.vmFlags;
    if (!pending) continue;
    delete collected.vmFlags;
    const memoryFlags = await pending;
    if (Object.keys(memoryFlags).length) image.memoryFlags = memoryFlags;
  }
}

/**
 * `CRYO_VMFLAGS` in the environment: "smaps" takes the VmFlags from smaps
 * alone, never from the BPF iterator; "bpf" takes the iterator whatever
 * the process's size ({@link bpfFlagsPay}); anything else, the default (A/B
 * measurements, tests).
 */
export function vmFlagsOverride(): "smaps" | "bpf" | undefined {
  try {
    const v = Deno.env.get("CRYO_VMFLAGS");
    return v === "smaps" || v === "bpf" ? v : undefined;
  } catch {
    return undefined; // no env permission: the default
  }
}

/**
 * From which size the BPF iterator pays for its check: loading it (the
 * kernel's 5 MB of BTF parsed, the verifier) and the smaps read before the
 * freeze cost ~50 ms of a fresh CLI, while the smaps walk it saves at the
 * freeze is ~2 ms for 64 MiB resident in a few hundred areas, 60 to 90 ms at
 * 2 GiB, and the kernel's formatting of ~0.7 KB of text per area (~7 MB and
 * tens of ms for 10,000 areas). A process of `minThreads` threads or more
 * takes it too: each thread adds a stack and its guard to smaps (64 threads
 * of 16 MiB: 151 areas, ~2 ms of the freeze on cryo's thread, the kernel's
 * text and its parse), and the BTF is read for the threads' state anyway
 * (engine/dump/thread_state.ts, from 8 threads).
 */
export const bpfFlagsPay = { minRssBytes: 256 * 2 ** 20, minAreas: 1000, minThreads: 8 };

/**
 * Whether process `pid` is large enough, or has threads enough, for the BPF
 * iterator ({@link bpfFlagsPay}); `maps` gets the maps bytes read to count its areas.
 */
function bpfPays(pid: number, maps: Map<number, Uint8Array>): boolean {
  const stat = readStat(pid);
  if (stat.rss * 4096 >= bpfFlagsPay.minRssBytes) return true;
  if (stat.numThreads >= bpfFlagsPay.minThreads) return true;
  if (bpfFlagsPay.minAreas <= 0) return true;
  // One line per area; reading maps does not walk pages. The policy's count just read it.
  const bytes = takeCountedMaps(pid, 1000) ?? readMapsBytes(pid);
  maps.set(pid, bytes);
  return countLines(bytes) >= bpfFlagsPay.minAreas;
}

/**
 * /proc/<pid>/maps as read before the freeze, and its areas parsed then
 * (their VmFlags unknown): {@link frozenVmFlags} takes the parse when the
 * freeze reads the same bytes (the same text gives the same areas), once.
 */
export interface MapsBeforeFreeze {
  /** The text's bytes, as read. */
  bytes: Uint8Array;
  /** Their areas; taken (and cleared) by the freeze that reads the same bytes. */
  areas?: SmapsArea[];
  /** Found the same at this freeze by {@link peekFrozenMaps}: the freeze need not read them again. */
  sameAtFreeze?: boolean;
  /**
   * The iterator's records read before the freeze, when {@link areas} got
   * their VmFlags from them: the freeze that reads the same maps bytes and
   * the same records keeps those flags (the same inputs give the same
   * flags) instead of decoding 10,000 records again.
   */
  records?: Uint8Array;
  /** Its text read again on another thread since the freeze began ({@link startFrozenMapsAhead}). */
  ahead?: MapsAhead;
}

/** The iterator's records as read, and decoded. */
interface CheckedRecords {
  bytes: Uint8Array<ArrayBuffer>;
  decoded: VmaRecords;
}

/** What a process's check holds for the freeze (an entry of {@link VmFlagsCheck}). */
type Confirmed = VmFlagsCheck["processes"] extends Map<number, infer T> ? T : never;

/**
 * Reads (unless read already) and parses the maps of `pid` before the
 * freeze, and gives the areas their VmFlags from the iterator's records
 * (read now, unless the check read them with the maps it passes).
 */
function mapsBeforeFreeze(
  pid: number,
  confirmed: Confirmed,
  read?: Uint8Array,
  readRecords?: CheckedRecords,
): MapsBeforeFreeze | undefined {
  let before: MapsBeforeFreeze;
  try {
    const bytes = read ?? readMapsBytes(pid);
    const areas = parseMapsBytes(bytes, pid) as SmapsArea[];
    areas.forEach(flagsUnknown);
    prepareAreaAnswers(areas); // what the injection asks of them at the freeze
    draftMappings(areas); // the records of its anonymous mappings (mapping_drafts.ts)
    inAddressOrder(areas); // asked at the freeze (the bootstrap's range, the page plan)
    before = { bytes, areas };
  } catch {
    return undefined; // the freeze reads it again and tells
  }
  try {
    let records = read && readRecords;
    if (!records) {
      const bytes = readVmaBytes(pid);
      records = { bytes, decoded: vmaRecordsOf(bytes) };
    }
    // The freeze's own loop on them: when it fails, the freeze decodes what it reads.
    if (flagsFromRecords(before.areas!, records.decoded, confirmed) === undefined) {
      before.records = records.bytes;
    }
  } catch { /* the freeze reads them and tells */ }
  return before;
}

/**
 * The areas of frozen process `pid`, their VmFlags not read yet: the parse
 * made before the freeze when maps reads the same bytes now, else a parse
 * of what it reads now.
 */
function frozenMaps(pid: number, before?: MapsBeforeFreeze, readAhead?: Uint8Array): SmapsArea[] {
  if (!before?.areas) return mapsWithoutFlags(pid);
  const areas = before.areas;
  before.areas = undefined; // its objects become the dump's: never handed out twice
  if (before.sameAtFreeze) {
    mapsReuse.reused++;
    return areas;
  }
  if (readAhead) mapsReuse.ahead++;
  const bytes = readAhead ?? readMapsBytes(pid);
  if (sameBytes(bytes, before.bytes)) {
    mapsReuse.reused++;
    return areas;
  }
  mapsReuse.parsed++;
  const fresh = parseMapsBytes(bytes, pid) as SmapsArea[];
  fresh.forEach(flagsUnknown);
  return fresh;
}

/** A read of a frozen process's maps text on another thread ({@link startMapsAhead}). */
interface MapsAhead {
  fd: number;
  read: ReadAhead;
}

/**
 * Starts reading the maps text of frozen `pid` on another thread, when
 * {@link frozenMaps} will read it (a parse made before the freeze, not
 * found the same already): slots for the text read before the freeze and
 * a margin. Undefined when tables do not run here.
 */
function startMapsAhead(pid: number, before?: MapsBeforeFreeze): MapsAhead | undefined {
  if (!before?.areas || before.sameAtFreeze || !tablesAvailable()) return undefined;
  let fd: number;
  try {
    fd = openRawFd(`/proc/${pid}/maps`, false);
  } catch {
    return undefined; // read here, which tells
  }
  try {
    const a = { fd, read: new ReadAhead(fd, Math.ceil(before.bytes.length / 4096) + 4) };
    aheads.add(a);
    return a;
  } catch {
    closeRawFd(fd);
    return undefined;
  }
}

/** The maps reads started and not ended yet ({@link dropMapsAhead}). */
const aheads = new Set<MapsAhead>();

/**
 * With the tree just frozen, before its fds and statuses are read: starts
 * the read of the maps text of each process of `check` whose parse made
 * before the freeze {@link frozenVmFlags} will compare, on another thread
 * (the kernel's formatting of 10,000 lines, ~5 to 8 ms, goes on beside the
 * fds and the statuses read on cryo's thread). Started after the freeze:
 * the text is the frozen tree's, as if read at the collect. Not with a
 * pre-copy, whose validation reads the maps itself.
 */
export function startFrozenMapsAhead(check: VmFlagsCheck | undefined): void {
  if (!check) return;
  for (const [pid, p] of check.processes) {
    if (p.maps && !p.maps.ahead) p.maps.ahead = startMapsAhead(pid, p.maps);
  }
}

/** Waits for and drops every maps read started ahead and not taken (the end of a dump). */
export function dropMapsAhead(): void {
  for (const a of [...aheads]) endMapsAhead(a);
}

/**
 * Waits for {@link startMapsAhead}'s reads and closes its fd: the whole
 * text, or undefined when a read failed or the end was not reached (the
 * caller reads it again itself).
 */
function endMapsAhead(a: MapsAhead | undefined): Uint8Array | undefined {
  if (!a || !aheads.delete(a)) return undefined;
  while (!a.read.done()) sleepSync(0.02);
  closeRawFd(a.fd);
  const r = a.read.collect();
  return r.complete && r.errno === undefined ? r.bytes : undefined;
}

/**
 * With the tree frozen, before its collect: the areas of `pid` parsed
 * before the freeze ({@link prepareFrozenMaps}) when its maps read now are
 * the same bytes (then the collect's {@link frozenVmFlags} takes them
 * without reading again: nothing changes a frozen tree's maps before it),
 * else undefined. Only to be read (the collect fills their VmFlags).
 */
export function peekFrozenMaps(
  pid: number,
  check: VmFlagsCheck | undefined,
): readonly SmapsArea[] | undefined {
  const before = check?.processes.get(pid)?.maps;
  if (!before?.areas) return undefined;
  if (!before.sameAtFreeze) {
    try {
      before.sameAtFreeze = sameBytes(readMapsBytes(pid), before.bytes);
    } catch {
      return undefined;
    }
  }
  return before.sameAtFreeze ? before.areas : undefined;
}

/**
 * How often the freeze took the areas parsed before it (`reused`) or found
 * maps changed and parsed it again (`parsed`), and how often it compared a
 * text read on another thread since the freeze began (`ahead`:
 * {@link startFrozenMapsAhead}), since the process started (tests read it).
 */
export const mapsReuse = { reused: 0, parsed: 0, ahead: 0 };

/**
 * What an smaps read made before the freeze confirmed of the BPF decoding
 * (engine/proc/vma_flags_bpf.ts), per process of the tree.
 */
export interface VmFlagsCheck {
  processes: Map<number, {
    /** Every vm_flags bit that smaps confirmed the code of. */
    bits: bigint;
    /** Areas smaps lists that the iterator does not ([vsyscall], the gate area), as read. */
    gate: SmapsArea[];
    /** Its maps as read before the freeze, parsed ({@link prepareFrozenMaps}). */
    maps?: MapsBeforeFreeze;
    /** The iterator's records the check read (after {@link VmFlagsCheck.read}'s maps). */
    records?: CheckedRecords;
  }>;
  /** Maps bytes the check read with the tree running, for {@link prepareFrozenMaps}. */
  read?: Map<number, Uint8Array>;
}

/**
 * Reads (or takes the check's read of) and parses the maps of each process
 * of `check`, with the tree running, just before the freeze: the freeze
 * then only reads the bytes again and compares ({@link frozenVmFlags}).
 */
export function prepareFrozenMaps(check: VmFlagsCheck | undefined): void {
  if (!check) return;
  for (const [pid, p] of check.processes) {
    p.maps = mapsBeforeFreeze(pid, p, check.read?.get(pid), p.records);
    p.records = undefined;
  }
  check.read = undefined;
}

/**
 * How the VmFlags of each process were read at the latest freeze: "bpf",
 * or "smaps: <why not bpf>" (a debug-level reason; tests look at it).
 */
export const vmFlagsPaths = new Map<number, string>();

/**
 * Starts the check of the BPF source of VmFlags for the processes of the
 * tree of `root` (running or frozen; before the dump's freeze): loads the
 * iterator (once per cryo process) while an smaps read of each process runs
 * on another thread, then compares the iterator's decoded flags with smaps
 * area by area. Settles with undefined when the BPF path is not to be used
 * for this dump (forced off, unavailable, or one disagreement anywhere);
 * never rejects. Awaited before the freeze: its smaps walk must not hold a
 * frozen target's mmap lock against the injected calls.
 */
export function startVmFlagsCheck(
  root: number,
  pids?: number[],
  /** Whether the tree runs (its maps text kept for {@link prepareFrozenMaps}); default: no `pids`. */
  running = pids === undefined,
  /**
   * Whether the tree was pre-copied: the iterator then serves a process of any
   * size ({@link bpfFlagsPay} not asked). Its load and smaps read run beside the
   * pre-copy's copy, and the final freeze reads maps instead of walking every
   * page table entry for smaps (~1.5 ms of kernel time for 64 MiB resident).
   */
  precopied = false,
): Promise<VmFlagsCheck | undefined> {
  vmFlagsPaths.clear();
  const override = vmFlagsOverride();
  if (override === "smaps") return Promise.resolve(undefined);
  let list: number[];
  const read = new Map<number, Uint8Array>();
  try {
    list = (pids ?? [...listDescendants(root).keys()]).filter((pid) => {
      if (override === "bpf" || precopied || bpfPays(pid, read)) return true;
      vmFlagsPaths.set(pid, "smaps: small");
      return false;
    });
  } catch {
    return Promise.resolve(undefined); // the dump will tell
  }
  if (list.length === 0) return Promise.resolve(undefined);
  if (!loadVmaIterator()) {
    for (const pid of list) vmFlagsPaths.set(pid, `smaps: ${bpfUnavailable()}`);
    return Promise.resolve(undefined);
  }
  const check: VmFlagsCheck = { processes: new Map() };
  // Bits confirmed earlier on this boot spare the smaps read of a process that sets no other.
  const memo = recallConfirmed();
  const unconfirmed = memo ? list.filter((pid) => !memoCovers(pid, memo, check)) : list;
  // Read just now before the freeze (not after a pre-copy's barrier, long before it): kept for mapsBeforeFreeze.
  const withMaps = () => {
    if (running) check.read = read;
    return check;
  };
  if (unconfirmed.length === 0) return Promise.resolve(withMaps());
  const reads = unconfirmed.map((pid) => readSmapsFlagsOffThread(pid));
  let disagreement: string | undefined;
  let bits = memo?.bits ?? 0n;
  const gates = [...memo?.gate ?? []];
  return Promise.all(unconfirmed.map(async (pid, i) => {
    try {
      const smaps = await reads[i];
      const bytes = readVmaBytes(pid);
      const records = { bytes, decoded: vmaRecordsOf(bytes) };
      const c = checkDecoding(records.decoded, smaps);
      if (c.disagreement) disagreement ??= `process ${pid}: ${c.disagreement}`;
      const gate = smaps.filter((a) => a.path === "[vsyscall]");
      check.processes.set(pid, { bits: c.confirmedBits, gate, records });
      bits |= c.confirmedBits;
      for (const g of gate) if (!gates.some((k) => sameArea(k, g))) gates.push(g);
    } catch (e) {
      vmFlagsPaths.set(pid, `smaps: check failed: ${e instanceof Error ? e.message : e}`);
    }
  })).then(() => {
    if (disagreement === undefined) {
      if (!memo || bits !== memo.bits || gates.length !== memo.gate.length) {
        rememberConfirmed({ bits, gate: gates });
      }
      return withMaps();
    }
    for (const pid of list) vmFlagsPaths.set(pid, `smaps: ${disagreement}`);
    return undefined;
  });
}

/**
 * Whether every bit the iterator shows set in process `pid` now is one
 * `memo` holds as confirmed; if so, `check` takes the memo for it. (A bit
 * set later, before the freeze, sends that process to smaps at the freeze.)
 */
function memoCovers(pid: number, memo: ConfirmedDecoding, check: VmFlagsCheck): boolean {
  let bytes, records;
  try {
    bytes = readVmaBytes(pid);
    records = vmaRecordsOf(bytes);
  } catch {
    return false;
  }
  if (holdsOtherBit(records, memo.bits)) return false;
  check.processes.set(pid, {
    bits: memo.bits,
    gate: memo.gate,
    records: { bytes, decoded: records },
  });
  return true;
}

/**
 * Whether a record of `records` has a flag bit not in `bits`: the flags as
 * 32-bit halves (no bigint per record of 10,000), by findIndex (no loop of
 * 10,000 rounds for V8 to compile, engine/find_from.ts). Exported for tests.
 */
export function holdsOtherBit(records: VmaRecords, bits: bigint): boolean {
  const halves = new Uint32Array(records.flags.buffer, records.flags.byteOffset, 2 * records.count);
  // The bits outside `bits` in each half (as int32: `&` gives int32 too).
  const otherLo = ~Number(bits & 0xffffffffn), otherHi = ~Number((bits >> 32n) & 0xffffffffn);
  return findIndexBelow(
    records.count,
    (i) => (halves[2 * i] & otherLo) !== 0 || (halves[2 * i + 1] & otherHi) !== 0,
  ) >= 0;
}

/** Marks an area's VmFlags as not read yet (by forEach: no loop of 10,000 rounds to compile). */
function flagsUnknown(m: SmapsArea): void {
  m.vmFlags = UNKNOWN;
}

/** vm_flags bits that maps shows as permissions: read, write, exec, may-share. */
const VM_READ = 1n, VM_WRITE = 2n, VM_EXEC = 4n, VM_MAYSHARE = 0x80n;

/** Whether a maps permission string ("rw-p") is the one `flags` make. */
function permsOf(perms: string, flags: bigint): boolean {
  return (perms[0] === "r") === ((flags & VM_READ) !== 0n) &&
    (perms[1] === "w") === ((flags & VM_WRITE) !== 0n) &&
    (perms[2] === "x") === ((flags & VM_EXEC) !== 0n) &&
    (perms[3] === "s") === ((flags & VM_MAYSHARE) !== 0n);
}

/**
 * The areas of frozen process `pid` from maps, with their VmFlags from the
 * BPF iterator: exact, or undefined (the caller reads smaps). The iterator
 * must list exactly the areas of maps, by address, but the gate area (which
 * must then be the one the check read); every flag bit must be one the
 * check confirmed, and the maps permissions must be the flags' own.
 * {@link frozenMapsForFlags} then {@link flagsOfRecords}, with the
 * iterator read in between on this thread.
 */
export function frozenVmFlags(pid: number, check?: VmFlagsCheck): SmapsArea[] | undefined {
  const frozen = frozenMapsForFlags(pid, check);
  if (!frozen) return undefined;
  let bytes;
  try {
    bytes = readVmaBytes(pid);
  } catch (e) {
    return failFlags(pid, `iterator: ${e instanceof Error ? e.message : e}`);
  }
  return flagsOfRecords(frozen, bytes);
}

/**
 * The maps of a frozen process taken for the BPF path ({@link frozenMapsForFlags}),
 * their VmFlags not settled until {@link flagsOfRecords} took the iterator's records.
 */
export interface FrozenMaps {
  pid: number;
  /** The areas (the parse made before the freeze when maps read the same bytes). */
  maps: SmapsArea[];
  /** The parse made before the freeze, if any. */
  prepared?: SmapsArea[];
  /** The iterator's records read before the freeze, when that parse got its VmFlags from them. */
  preparedRecords?: Uint8Array;
  confirmed: Confirmed;
  /** The iterator's read on another thread ({@link startFrozenFlagsRead}). */
  read?: VmaBytesRead;
  /** The areas whose NUMA policies the injected calls read ({@link policyAreasOf}). */
  policies?: ReadonlySet<bigint>;
}

/**
 * The start addresses of the areas of `frozen` with a NUMA policy of their
 * own (vm_policy not NULL), whose policies the injected calls then read
 * (engine/memory/mempolicy.ts): from the records read before the freeze,
 * or, without them, from a read now. Remembered in `frozen`: the records
 * read at the freeze must show no other ({@link completeFlagsOffThread}).
 * Undefined when the iterator cannot be read (every area is asked then).
 */
export function policyAreasOf(frozen: FrozenMaps): ReadonlySet<bigint> | undefined {
  try {
    const bytes = frozen.preparedRecords ?? readVmaBytes(frozen.pid);
    return frozen.policies = policyStarts(bytes);
  } catch {
    return undefined;
  }
}

/**
 * Throws when the iterator's records `bytes` read at the freeze show an
 * area with a NUMA policy that the injected calls did not read (`frozen`'s
 * `policies`, when it has them): one given a policy after the records they
 * were chosen from were read.
 */
export function checkPolicyAreas(frozen: FrozenMaps, bytes: Uint8Array): void {
  if (!frozen.policies) return;
  for (const start of policyStarts(bytes)) {
    if (!frozen.policies.has(start)) {
      throw new CryoError(
        `process ${frozen.pid}: the mapping at 0x${
          start.toString(16)
        } was given a NUMA policy while cryo read the process; dump it again`,
      );
    }
  }
}

function failFlags(pid: number, why: string): undefined {
  vmFlagsPaths.set(pid, `smaps: ${why}`);
  return undefined;
}

/**
 * First half of {@link frozenVmFlags}: the areas of frozen `pid` from maps
 * (its text read on another thread, {@link startFrozenMapsAhead}), or
 * undefined when the BPF path is not to be taken (the caller reads smaps).
 * Their VmFlags are those given before the freeze (or none) until
 * {@link flagsOfRecords} settles them from an iterator read made later at
 * this freeze.
 */
export function frozenMapsForFlags(pid: number, check?: VmFlagsCheck): FrozenMaps | undefined {
  const confirmed = check?.processes.get(pid);
  if (!confirmed) {
    if (!vmFlagsPaths.has(pid)) vmFlagsPaths.set(pid, "smaps: not checked");
    // (set already when it was too small, unavailable, or failed its check)
    return undefined;
  }
  const before = confirmed.maps;
  const prepared = before?.areas, preparedRecords = before?.records;
  const ahead = before?.ahead ?? startMapsAhead(pid, before);
  if (before) before.ahead = undefined;
  let maps;
  try {
    maps = frozenMaps(pid, before, endMapsAhead(ahead));
  } catch (e) {
    return failFlags(pid, `maps: ${e instanceof Error ? e.message : e}`);
  }
  if (before) before.records = undefined;
  return { pid, maps, prepared, preparedRecords, confirmed };
}

/**
 * Second half of {@link frozenVmFlags}: settles the VmFlags of `frozen`'s
 * areas from the iterator's records `bytes` read at this freeze; returns
 * the areas, or undefined (some areas may have other flags then: the
 * caller reads smaps). The same maps text and the same records as before
 * the freeze keep the flags given then (the same inputs give the same flags).
 */
export function flagsOfRecords(
  frozen: FrozenMaps,
  bytes: Uint8Array<ArrayBuffer>,
): SmapsArea[] | undefined {
  return settleFlags(frozen, bytes) === undefined ? undefined : frozen.maps;
}

/** {@link flagsOfRecords}: whether the flags given before were kept, or undefined. */
function settleFlags(frozen: FrozenMaps, bytes: Uint8Array<ArrayBuffer>): boolean | undefined {
  const { pid, maps, prepared, preparedRecords, confirmed } = frozen;
  let kept = false;
  if (maps === prepared && preparedRecords && sameBytes(bytes, preparedRecords)) {
    recordsReuse.reused++;
    kept = true;
  } else {
    const why = flagsFromRecords(maps, vmaRecordsOf(bytes), confirmed);
    if (why !== undefined) return failFlags(pid, why);
    recordsReuse.decoded++;
  }
  vmFlagsPaths.set(pid, "bpf");
  return kept;
}

/**
 * Starts the iterator's read of `frozen`'s process on another thread, once
 * the injected calls' own areas are gone (the collect, engine/dump/process.ts):
 * the kernel's walk of 10,000 areas (4 to 7 ms) goes on beside the rest of
 * the collect. When it cannot start, {@link completeFlagsOffThread} reads here.
 */
export function startFrozenFlagsRead(frozen: FrozenMaps): void {
  try {
    const expect = frozen.preparedRecords?.length ?? frozen.maps.length * VMA_RECORD_SIZE;
    frozen.read = startVmaBytesRead(frozen.pid, expect);
  } catch { /* read on cryo's thread */ }
}

/**
 * Takes the iterator's records of `frozen` ({@link startFrozenFlagsRead}, or
 * read now), and settles with the areas' VmFlags in `frozen.maps` and in `mappings`
 * (built from them, same order), then runs `details` (which reads the
 * flags) and settles with its result, as {@link completeVmFlags} does for
 * smaps. When the records do not give every area its flags (a bit smaps
 * never confirmed, an area not in maps), the flags come from smaps read
 * then, area by area ({@link flagsOfMaps}: a different area list fails the
 * dump). Never rejects unhandled: a failure is thrown where it is awaited.
 */
export function completeFlagsOffThread(
  frozen: FrozenMaps,
  mappings: Mapping[],
  details: () => MemoryProcessFlags,
): Promise<MemoryProcessFlags> {
  const { pid, maps, read } = frozen;
  const settle = () => {
    let bytes = read?.take();
    if (!bytes) {
      try {
        bytes = readVmaBytes(pid);
      } catch (e) {
        failFlags(pid, `iterator: ${e instanceof Error ? e.message : e}`);
      }
    }
    if (bytes) checkPolicyAreas(frozen, bytes); // engine/memory/mempolicy.ts
    const kept = bytes && settleFlags(frozen, bytes);
    if (kept === undefined) {
      // From smaps (the injected calls' areas are gone: it lists the areas of maps).
      const flags = flagsOfMaps(pid, maps, readSmapsFlags(pid));
      maps.forEach((m, i) => m.vmFlags = flags[i]); // (no loop of 10,000 rounds to compile)
    }
    // (Kept: `mappings` were made from these very areas and flags.)
    if (!kept) maps.forEach((m, i) => mappings[i].vmFlags = m.vmFlags);
    return details();
  };
  const p = (read ? read.finished : Promise.resolve()).then(settle).finally(() => read?.close());
  p.catch(() => {}); // awaited later, or not at all when the dump failed first
  return p;
}

/**
 * How often the freeze kept the VmFlags given before it (`reused`) or
 * decoded the records it read (`decoded`), since the process started (tests).
 */
export const recordsReuse = { reused: 0, decoded: 0 };

/**
 * Gives each area of `maps` its VmFlags from the iterator's `records`
 * (see {@link frozenVmFlags} for what must hold); returns why not (some
 * areas may have theirs then), or undefined when every area has them.
 */
function flagsFromRecords(
  maps: SmapsArea[],
  records: VmaRecords,
  confirmed: Confirmed,
): string | undefined {
  let j = 0;
  // The last two (flags, perms) pairs found good, and their codes: neighbours share
  // or alternate theirs (no bigint operations for most of 10,000 areas).
  let f0 = -1n, p0 = "", c0: string[] = UNKNOWN, f1 = -1n, p1 = "", c1: string[] = UNKNOWN;
  let why: string | undefined;
  // Through findFrom: no loop of 10,000 rounds for V8 to compile (engine/find_from.ts).
  findFrom(maps, (m) => {
    if (j < records.count && records.start[j] === m.start) {
      const flags = records.flags[j];
      if (records.end[j++] !== m.end) {
        return !!(why = `area ${m.start.toString(16)} differs from maps`);
      }
      if (flags === f0 && m.perms === p0) {
        m.vmFlags = c0;
        return false;
      }
      if (flags === f1 && m.perms === p1) {
        m.vmFlags = c1;
        return false;
      }
      if ((flags & ~confirmed.bits) !== 0n) {
        return !!(why = `flags 0x${flags.toString(16)} have a bit smaps did not confirm`);
      }
      const codes = decodeVmFlags(flags);
      if (!codes) return !!(why = `flags 0x${flags.toString(16)} have an unknown bit`);
      if (!permsOf(m.perms, flags)) {
        return !!(why = `flags 0x${flags.toString(16)} are not ${m.perms}`);
      }
      m.vmFlags = codes;
      [f1, p1, c1] = [f0, p0, c0];
      [f0, p0, c0] = [flags, m.perms, codes];
    } else {
      const gate = confirmed.gate.find((g) => sameArea(g, m));
      if (!gate) return !!(why = `area ${m.start.toString(16)} of maps is not the iterator's`);
      m.vmFlags = gate.vmFlags;
    }
    return false;
  });
  if (why !== undefined) return why;
  if (j !== records.count) return `the iterator lists ${records.count} areas, maps ${j}`;
  return undefined;
}
