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
import type { MemoryProcessFlags } from "../memory/flags.ts";
import {
  parseMapsBytes,
  prepareAreaAnswers,
  readMaps,
  readMapsBytes,
  sameBytes,
} from "../proc/maps.ts";
import {
  flagsOfMaps,
  readSmapsFlagsOffThread,
  sameArea,
  type SmapsArea,
} from "../proc/smaps_flags.ts";
import {
  bpfUnavailable,
  checkDecoding,
  decodeVmFlags,
  loadVmaIterator,
  readVmaRecords,
} from "../proc/vma_flags_bpf.ts";
import {
  type ConfirmedDecoding,
  recallConfirmed,
  rememberConfirmed,
} from "../proc/vm_flags_memo.ts";
import { listDescendants } from "../proc/tasks.ts";
import { readStat } from "../proc/stat.ts";
import type { CollectedProcess } from "./process.ts";
import { draftMappings } from "./mapping_drafts.ts";
import { ReadAhead } from "../../ffi/read_ahead.ts";
import { closeRawFd, openRawFd, tablesAvailable } from "../../ffi/syscall_table.ts";
import { sleepSync } from "../sleep_sync.ts";

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
  for (const m of maps) m.vmFlags = UNKNOWN;
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
    for (let i = 0; i < maps.length; i++) {
      maps[i].vmFlags = flags[i];
      mappings[i].vmFlags = flags[i];
    }
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
 * tens of ms for 10,000 areas).
 */
export const bpfFlagsPay = { minRssBytes: 256 * 2 ** 20, minAreas: 1000 };

/**
 * Whether process `pid` is large enough for the BPF iterator
 * ({@link bpfFlagsPay}); `maps` gets the maps bytes read to count its areas.
 */
function bpfPays(pid: number, maps: Map<number, Uint8Array>): boolean {
  if (readStat(pid).rss * 4096 >= bpfFlagsPay.minRssBytes) return true;
  if (bpfFlagsPay.minAreas <= 0) return true;
  // One line per area; reading maps does not walk pages.
  const bytes = readMapsBytes(pid);
  maps.set(pid, bytes);
  let lines = 0;
  for (let at = bytes.indexOf(10); at >= 0; at = bytes.indexOf(10, at + 1)) lines++;
  return lines >= bpfFlagsPay.minAreas;
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
}

/** Reads (unless read already) and parses the maps of `pid` before the freeze. */
function mapsBeforeFreeze(pid: number, read?: Uint8Array): MapsBeforeFreeze | undefined {
  try {
    const bytes = read ?? readMapsBytes(pid);
    const areas = parseMapsBytes(bytes, pid) as SmapsArea[];
    for (const m of areas) m.vmFlags = UNKNOWN;
    prepareAreaAnswers(areas); // what the injection asks of them at the freeze
    draftMappings(areas); // the records of its anonymous mappings (mapping_drafts.ts)
    return { bytes, areas };
  } catch {
    return undefined; // the freeze reads it again and tells
  }
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
  const bytes = readAhead ?? readMapsBytes(pid);
  if (sameBytes(bytes, before.bytes)) {
    mapsReuse.reused++;
    return areas;
  }
  mapsReuse.parsed++;
  const fresh = parseMapsBytes(bytes, pid) as SmapsArea[];
  for (const m of fresh) m.vmFlags = UNKNOWN;
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
    return { fd, read: new ReadAhead(fd, Math.ceil(before.bytes.length / 4096) + 4) };
  } catch {
    closeRawFd(fd);
    return undefined;
  }
}

/**
 * Waits for {@link startMapsAhead}'s reads and closes its fd: the whole
 * text, or undefined when a read failed or the end was not reached (the
 * caller reads it again itself).
 */
function endMapsAhead(a: MapsAhead | undefined): Uint8Array | undefined {
  if (!a) return undefined;
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
 * maps changed and parsed it again (`parsed`), since the process started
 * (tests read it).
 */
export const mapsReuse = { reused: 0, parsed: 0 };

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
  for (const [pid, p] of check.processes) p.maps = mapsBeforeFreeze(pid, check.read?.get(pid));
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
): Promise<VmFlagsCheck | undefined> {
  vmFlagsPaths.clear();
  const override = vmFlagsOverride();
  if (override === "smaps") return Promise.resolve(undefined);
  let list: number[];
  const read = new Map<number, Uint8Array>();
  try {
    list = (pids ?? [...listDescendants(root).keys()]).filter((pid) => {
      if (override === "bpf" || bpfPays(pid, read)) return true;
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
  // Read just now with the tree running (not in a pre-copy's barrier): kept for mapsBeforeFreeze.
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
      const c = checkDecoding(readVmaRecords(pid), smaps);
      if (c.disagreement) disagreement ??= `process ${pid}: ${c.disagreement}`;
      const gate = smaps.filter((a) => a.path === "[vsyscall]");
      check.processes.set(pid, { bits: c.confirmedBits, gate });
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
  let records;
  try {
    records = readVmaRecords(pid);
  } catch {
    return false;
  }
  const others = ~memo.bits;
  let good = -1n; // the last flags found to hold no other bit (neighbours share theirs)
  for (let i = 0; i < records.count; i++) {
    const flags = records.flags[i];
    if (flags === good) continue;
    if ((flags & others) !== 0n) return false;
    good = flags;
  }
  check.processes.set(pid, { bits: memo.bits, gate: memo.gate });
  return true;
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
 */
export function frozenVmFlags(pid: number, check?: VmFlagsCheck): SmapsArea[] | undefined {
  const confirmed = check?.processes.get(pid);
  if (!confirmed) {
    if (!vmFlagsPaths.has(pid)) vmFlagsPaths.set(pid, "smaps: not checked");
    // (set already when it was too small, unavailable, or failed its check)
    return undefined;
  }
  const fail = (why: string) => {
    vmFlagsPaths.set(pid, `smaps: ${why}`);
    return undefined;
  };
  // The maps text is read on another thread while the iterator is read here (each walks the areas).
  const ahead = startMapsAhead(pid, confirmed.maps);
  let records;
  try {
    records = readVmaRecords(pid);
  } catch (e) {
    endMapsAhead(ahead);
    return fail(`iterator: ${e instanceof Error ? e.message : e}`);
  }
  const maps = frozenMaps(pid, confirmed.maps, endMapsAhead(ahead));
  let j = 0;
  // The last two (flags, perms) pairs found good, and their codes: neighbours share
  // or alternate theirs (no bigint operations for most of 10,000 areas).
  let f0 = -1n, p0 = "", c0: string[] = UNKNOWN, f1 = -1n, p1 = "", c1: string[] = UNKNOWN;
  for (let i = 0; i < maps.length; i++) {
    const m = maps[i];
    if (j < records.count && records.start[j] === m.start) {
      const flags = records.flags[j];
      if (records.end[j++] !== m.end) return fail(`area ${m.start.toString(16)} differs from maps`);
      if (flags === f0 && m.perms === p0) {
        m.vmFlags = c0;
        continue;
      }
      if (flags === f1 && m.perms === p1) {
        m.vmFlags = c1;
        continue;
      }
      if ((flags & ~confirmed.bits) !== 0n) {
        return fail(`flags 0x${flags.toString(16)} have a bit smaps did not confirm`);
      }
      const codes = decodeVmFlags(flags);
      if (!codes) return fail(`flags 0x${flags.toString(16)} have an unknown bit`);
      if (!permsOf(m.perms, flags)) return fail(`flags 0x${flags.toString(16)} are not ${m.perms}`);
      m.vmFlags = codes;
      [f1, p1, c1] = [f0, p0, c0];
      [f0, p0, c0] = [flags, m.perms, codes];
    } else {
      const gate = confirmed.gate.find((g) => sameArea(g, m));
      if (!gate) return fail(`area ${m.start.toString(16)} of maps is not the iterator's`);
      m.vmFlags = gate.vmFlags;
    }
  }
  if (j !== records.count) return fail(`the iterator lists ${records.count} areas, maps ${j}`);
  vmFlagsPaths.set(pid, "bpf");
  return maps;
}
