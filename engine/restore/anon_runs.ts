/**
 * Restore: adjacent private anonymous mappings re-created together. A
 * process with 10,000 small mappings side by side (alternating rw-/r--)
 * took 25,000 syscalls one mapping at a time (mmap, pread, mprotect each);
 * a run of such mappings is mapped read-write with one `mmap`, its pages
 * read with one `pread` per file-contiguous stretch, then each member that
 * is not read-write gets its `mprotect` and each its madvise flags.
 *
 * Why the areas come out as before: mapped one at a time, each member is
 * mapped read-write too (to write its pages in) and the kernel merges it
 * with a read-write neighbour of compatible flags at once, and splits it
 * off again at its `mprotect` or madvise; mapped together, the `mprotect`s
 * and madvises split the one area at the same boundaries, and whatever
 * stays merged (neighbours of equal protection and flags) is what the
 * kernel merged the other way too. Only members whose one-at-a-time
 * sequence is exactly "mmap read-write, pread, mprotect, madvise" join a
 * run; anything else (a growsdown or noreserve area, one mapped without
 * write, an accounted area without pages, which needs its fault-and-drop,
 * names, file, shared, inherited or lazily served memory) is emitted alone,
 * as before.
 *
 * Neighbours kept apart: two adjacent private anonymous areas alike in
 * every way maps shows (protection, name, VmFlags) were kept apart by the
 * kernel for a reason it does not show (one was moved there by `mremap`,
 * so its page offset does not follow on, or they have different
 * `anon_vma`s); mapped where they belong, the restore would get one area.
 * The second is mapped at a free scratch address, given an `anon_vma` (one
 * page faulted in and dropped: `mremap` gives an area that never had one
 * the page offset of its new place) and moved into place with `mremap`,
 * which then keeps the page offset it was made with: the kernel keeps it
 * apart again. It never joins a run. (One mapped without write, a
 * read-only area without pages, cannot be faulted: it is mapped in place,
 * and merged, as before.)
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import type { Mapping, ProcessImage } from "../model.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";
import { emitVmFlags, noAdvice, quietFlags } from "../memory/flags.ts";
import { hexMinus, type HexNum, hexNum, hexPlus } from "../image/hexnum.ts";
import { chooseBootstrap, type Vma } from "../dump/vmas.ts";
import { findFrom } from "../find_from.ts";
import { columnAt, mappingColumns } from "../image/mapping_columns.ts";

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_PRIVATE = 0x02;
const MAP_FIXED = 0x10;
const MAP_ANONYMOUS = 0x20;
const MADV_POPULATE_WRITE = 23;
/** One pread moves at most 0x7ffff000 bytes: larger stretches are split. */
const PREAD_MAX = 1 << 30;
/** From this size a stretch is faulted in with MADV_POPULATE_WRITE before its pread. */
const POPULATE_MIN = 64 << 10;

/** Whether two addresses are equal (either may be a number or a bigint). */
const same = (a: HexNum, b: HexNum) => typeof a === typeof b ? a === b : BigInt(a) === BigInt(b);

const protOf = (perms: string) =>
  (perms[0] === "r" ? 1 : 0) | (perms[1] === "w" ? 2 : 0) | (perms[2] === "x" ? 4 : 0);

/**
 * Whether `m` is re-created alone by "mmap read-write, pread its pages,
 * mprotect to its protection, its madvise flags": a plain private
 * anonymous area, read-write, or read-only with pages (mapped writable to
 * read them in). A read-only area without pages is mapped without write
 * (or faulted and dropped when accounted): never in a run; nor one that
 * grows down, is not reserved, or has a huge-page advice ("hg", "nh").
 */
export function joinable(m: Mapping, prev: Mapping | undefined): boolean {
  // (The cheapest tests first: this runs once per mapping of every image.)
  if (m.kind !== "anon" || m.name !== "") return false;
  const perms = m.perms;
  if (perms.length !== 4 || perms[3] !== "p" || perms[2] !== "-" || perms[0] !== "r") return false;
  // Read-write, or read-only with pages.
  if (perms[1] !== "w" && (perms[1] !== "-" || m.pages.length === 0)) return false;
  if (m.inherited || m.sysvShm !== undefined || m.aio || m.mempolicy) return false;
  if (prev && keptApart(prev, m)) return false;
  const flags = m.vmFlags;
  if (flags === plainFrozen || flags === plainFrozen2) return true;
  for (let k = 0; k < flags.length; k++) {
    const f = flags[k];
    // (A huge-page advice is given before the pages are loaded, on the area alone:
    // compile.ts. Given to a member of a run it would split the run's area under the
    // run's loads, whose userfaultfd copies must each stay inside one area.)
    if (f === "gd" || f === "nr" || f === "hg" || f === "nh") return false;
  }
  if (Object.isFrozen(flags)) {
    plainFrozen2 = plainFrozen;
    plainFrozen = flags;
  }
  return true;
}

/**
 * The two frozen VmFlags lists last found without "gd", "nr", "hg" and "nh" by {@link joinable}: the
 * dump's lists are shared and frozen (engine/proc/smaps_flags.ts), so identity answers.
 */
let plainFrozen: readonly string[] | undefined;
let plainFrozen2: readonly string[] | undefined;

/**
 * How many mappings from `mappings[i]` on form a run that {@link emitAnonRun}
 * re-creates together: 0 when `mappings[i]` does not start one of at least two.
 */
export function anonRunLength(mappings: readonly Mapping[], i: number): number {
  if (!joinable(mappings[i], mappings[i - 1])) return 0;
  // The dump writes addresses one way ("0x" and lower-case digits, no leading zeros):
  // equal strings are equal addresses, and an image written otherwise only makes no run.
  // The one after i first (most candidates end there), then by findFrom: no loop of 10,000
  // rounds here (engine/find_from.ts).
  if (i + 1 >= mappings.length) return 0;
  const second = mappings[i + 1];
  if (second.start !== mappings[i].end || !joinable(second, mappings[i])) return 0;
  let end = second.end;
  const stop = findFrom(mappings, (next, k) => {
    if (next.start !== end || !joinable(next, mappings[k - 1])) return true;
    end = next.end;
    return false;
  }, i + 2);
  const n = (stop < 0 ? mappings.length : stop) - i;
  return n >= 2 ? n : 0;
}

/** Emits the pread of `[addr, addr + length)` from `fileOffset` of the image, split as needed. */
function emitRead(
  p: ProgramBuilder,
  imageSlot: number,
  addr: HexNum,
  length: number,
  fileOffset: number,
): void {
  for (let done = 0; done < length; done += PREAD_MAX) {
    const n = Math.min(PREAD_MAX, length - done);
    const at = hexPlus(addr, done);
    if (n >= POPULATE_MIN) {
      // Faulting the pages in up front is cheaper than one fault per page under pread.
      p.op(SYS.madvise, [at, n, MADV_POPULATE_WRITE], { allowFail: true });
    }
    p.op(SYS.pread64, [slot(imageSlot), at, n, fileOffset + done]);
  }
}

/**
 * Emits the run of `n` mappings from `mappings[i]` (see {@link anonRunLength}):
 * one read-write mmap of the whole run, one pread per stretch of pages that
 * is contiguous both in memory and in the image, then per member in order
 * its mprotect (when not read-write) and its madvise flags. With `load`,
 * the stretches (in order) are handed to it instead, to emit their reads
 * before the mprotects (engine/restore/page_loads.ts).
 */
export function emitAnonRun(
  p: ProgramBuilder,
  mappings: readonly Mapping[],
  i: number,
  n: number,
  imageSlot: number,
  load?: (stretches: { addr: HexNum; length: number; fileOffset: number }[]) => void,
  /**
   * Gets the index of every member that has guard regions or flags that are not quiet
   * (engine/memory/flags.ts `quietFlags`): the ones `emitMemoryFlagsAfter` must look at.
   */
  examine?: number[],
): void {
  const first = mappings[i], last = mappings[i + n - 1];
  const start = hexNum(first.start);
  const len = hexMinus(hexNum(last.end), start);
  p.op(SYS.mmap, [
    start,
    len,
    PROT_READ | PROT_WRITE,
    MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS,
    -1,
    0,
  ], {
    comment: `${n} private anonymous mappings ${first.start}-${last.end}, mapped together`,
  });
  const stretches: { addr: HexNum; length: number; fileOffset: number }[] = [];
  const read = load
    ? (addr: HexNum, length: number, fileOffset: number) =>
      stretches.push({ addr, length, fileOffset })
    : (addr: HexNum, length: number, fileOffset: number) =>
      emitRead(p, imageSlot, addr, length, fileOffset);
  // One pass over the members: each one's bounds, parsed once (members follow on
  // (anonRunLength), so each starts where the one before ends; a page run at its member's
  // start needs no parse), its page runs gathered into stretches, and its closing ops noted.
  // Members are read-write or read-only (joinable): only the read-only ones get an mprotect,
  // then each its madvise flags. The mprotects of members without madvise flags are
  // gathered as rows and written as blocks (the ops op() gives: ProgramBuilder.opsOfNumbers);
  // a member with madvise flags (or an address beyond a number) is emitted one op at a time
  // between the blocks, at its place.
  const rows = new Float64Array(3 * n);
  let count = 0;
  /** Members emitted op by op, and how many rows come before each. */
  const alone: number[] = [], rowsBefore: number[] = [];
  let mStart: HexNum = start;
  // The stretch being gathered: `runLength` bytes at `runAddr` (ending at `runEnd`) from
  // `runOffset` of the image.
  let runAddr: HexNum = 0, runEnd: HexNum = 0, runLength = 0, runOffset = 0;
  // A list read from an NT_CRYO_MAPPINGS note has its texts' values remembered
  // (engine/image/mapping_columns.ts): read there where the record still holds the text
  // decoded, no text parsed; -1 otherwise.
  const cols = mappingColumns(mappings);
  const ends = cols?.end, endTexts = cols?.endText;
  // (By findFrom: no loop of 10,000 rounds in this function, see engine/find_from.ts.)
  findFrom(
    mappings,
    (m, at) => {
      const k = at - i;
      const e = columnAt(ends, endTexts, at, m.end);
      const mEnd = e >= 0 ? e : k === n - 1 ? hexNum(last.end) : hexNum(m.end);
      const pages = m.pages;
      for (let q = 0; q < pages.length; q++) {
        const r = pages[q];
        const addr = r.addr === m.start ? mStart : hexNum(r.addr);
        const length = r.length;
        // (Both numbers, the common case, compare with ===; a number and a bigint by value.)
        if (
          runLength > 0 && runOffset + runLength === r.fileOffset &&
          (runEnd === addr || (typeof runEnd !== typeof addr && same(runEnd, addr)))
        ) {
          runLength += length;
          const end: number = typeof runEnd === "number" ? runEnd + length : 0;
          runEnd = Number.isSafeInteger(end) && end > 0 ? end : hexPlus(runEnd, length);
          continue;
        }
        if (runLength > 0) read(runAddr, runLength, runOffset);
        runAddr = addr;
        runLength = length;
        runOffset = r.fileOffset;
        runEnd = hexPlus(addr, length);
      }
      const readOnly = m.perms[1] !== "w";
      const quiet = quietFlags(m.vmFlags);
      if (examine && (!quiet || m.guards !== undefined)) examine.push(i + k);
      if (quiet || noAdvice(m.vmFlags)) {
        if (readOnly && typeof mStart === "number" && typeof mEnd === "number") {
          const row = 3 * count++;
          rows[row] = mStart;
          rows[row + 1] = mEnd - mStart;
          rows[row + 2] = protOf(m.perms);
        } else if (readOnly) {
          alone.push(k);
          rowsBefore.push(count);
        }
      } else {
        alone.push(k);
        rowsBefore.push(count);
      }
      mStart = mEnd;
      return false;
    },
    i,
    i + n,
  );
  if (runLength > 0) read(runAddr, runLength, runOffset);
  if (load) load(stretches);
  let written = 0;
  for (let j = 0; j < alone.length; j++) {
    p.opsOfNumbers(SYS.mprotect, 3, rows.subarray(3 * written), rowsBefore[j] - written);
    written = rowsBefore[j];
    const m = mappings[i + alone[j]];
    if (m.perms[1] !== "w") {
      const s = hexNum(m.start);
      p.op(SYS.mprotect, [s, hexMinus(hexNum(m.end), s), protOf(m.perms)]);
    }
    emitVmFlags(p, m);
  }
  p.opsOfNumbers(SYS.mprotect, 3, rows.subarray(3 * written), count - written);
}

/** Whether two VmFlags lists are equal but for soft-dirty ("sd", which no merge looks at). */
function sameFlags(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  let i = 0, j = 0;
  for (;;) {
    while (i < a.length && a[i] === "sd") i++;
    while (j < b.length && b[j] === "sd") j++;
    if (i === a.length || j === b.length) return i === a.length && j === b.length;
    if (a[i++] !== b[j++]) return false;
  }
}

/**
 * Whether `m` follows `prev` directly, both private anonymous areas alike
 * in protection, name and VmFlags: the kernel kept them apart for a reason
 * maps does not show, and would merge them if `m` were mapped in place.
 */
export function keptApart(prev: Mapping, m: Mapping): boolean {
  // (hugetlb areas never merge: each MAP_HUGETLB mmap is an inode of its own.)
  return prev.end === m.start && prev.kind === "anon" && m.kind === "anon" && !m.hugePageSize &&
    prev.perms === m.perms && m.perms[3] === "p" && prev.name === m.name &&
    !prev.inherited && !m.inherited && sameFlags(prev.vmFlags, m.vmFlags);
}

/**
 * An address range taken in a restored process, as a Vma for
 * engine/dump/vmas.ts's `chooseBootstrap` (which looks only at the range
 * and the path).
 */
export function takenArea(start: bigint, end: bigint, path = ""): Vma {
  return { start, end, perms: "", offset: 0n, dev: "", inode: 0, path, vmFlags: [] };
}

/**
 * A free address for mapping any area of `proc` kept apart before moving it
 * into place: a range as long as the longest of them that no mapping of the
 * image nor the bootstrap uses (so free while the restore program runs),
 * away from both (engine/dump/vmas.ts's choice). Chosen once per image and
 * bootstrap.
 */
function scratchFor(proc: Pick<ProcessImage, "mappings" | "bootstrap">): bigint {
  const key = `${proc.bootstrap.start} ${proc.bootstrap.size}`;
  const known = scratchOf.get(proc.mappings);
  if (known?.key === key) return known.at;
  const mappings = proc.mappings;
  let longest = 0;
  for (let k = 1; k < mappings.length; k++) {
    if (keptApart(mappings[k - 1], mappings[k])) {
      longest = Math.max(longest, Number(BigInt(mappings[k].end) - BigInt(mappings[k].start)));
    }
  }
  const areas = mappings.map((m) => takenArea(BigInt(m.start), BigInt(m.end), m.name));
  const boot = BigInt(proc.bootstrap.start);
  areas.push(takenArea(boot, boot + BigInt(proc.bootstrap.size)));
  areas.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const at = chooseBootstrap(areas, longest);
  scratchOf.set(proc.mappings, { key, at });
  return at;
}

/**
 * The range {@link emitAnonMmap} uses as scratch in the restore program of
 * `proc`, when it uses one (engine/memory/shmem_restore.ts keeps clear).
 */
export function anonScratchRange(
  proc: Pick<ProcessImage, "mappings" | "bootstrap">,
): { start: bigint; end: bigint } | undefined {
  const mappings = proc.mappings;
  let longest = 0;
  for (let k = 1; k < mappings.length; k++) {
    if (keptApart(mappings[k - 1], mappings[k])) {
      longest = Math.max(longest, Number(BigInt(mappings[k].end) - BigInt(mappings[k].start)));
    }
  }
  if (longest === 0) return undefined;
  const start = scratchFor(proc);
  return { start, end: start + BigInt(longest) };
}

/** The scratch address chosen for each image's mappings (see {@link scratchFor}). */
const scratchOf = new WeakMap<readonly Mapping[], { key: string; at: bigint }>();

/** MAP_FIXED_NOREPLACE: the scratch range must be free, or the restore fails there. */
const MAP_FIXED_NOREPLACE = 0x100000;
const MREMAP_MAYMOVE_FIXED = 1 | 2;
const MADV_DONTNEED = 4;
const PAGE = 4096;

/**
 * Emits the mmap of private anonymous mapping `i` of `proc` (`args`: its
 * address, length, protection and flags, MAP_FIXED among them): in place,
 * or, when the kernel kept it apart from the area before ({@link keptApart}),
 * at a scratch address, faulted in and moved into place with `mremap`.
 */
export function emitAnonMmap(
  p: ProgramBuilder,
  proc: Pick<ProcessImage, "mappings" | "bootstrap">,
  i: number,
  args: [start: HexNum, len: HexNum, prot: number, flags: number],
  /** Address of a zero byte in the program's data (written to fault a page in). */
  zeroByte: bigint,
): void {
  const [start, len, prot, flags] = args;
  const mappings = proc.mappings, m = mappings[i], prev = mappings[i - 1];
  const comment = `${m.start}-${m.end} ${m.perms} ${m.kind}${m.name ? " " + m.name : ""}`;
  if (!prev || !keptApart(prev, m) || (prot & PROT_WRITE) === 0) {
    p.op(SYS.mmap, [start, len, prot, flags, -1, 0], { comment });
    return;
  }
  const scratch = scratchFor(proc);
  p.op(SYS.mmap, [scratch, len, prot, (flags & ~MAP_FIXED) | MAP_FIXED_NOREPLACE, -1, 0], {
    comment: `${comment}, made apart from the area before it`,
  });
  p.copy(scratch, zeroByte, 1, { comment: "give the area an anon_vma" });
  p.op(SYS.madvise, [scratch, PAGE, MADV_DONTNEED]);
  p.op(SYS.mremap, [scratch, len, len, MREMAP_MAYMOVE_FIXED, start], {
    comment: "moved into place: its page offset keeps it apart",
  });
}

/** What {@link reservedMember} found: a member mapped `PROT_NONE` and left so. */
const SHUT = 1;
/** What {@link reservedMember} found: a member opened read-write by `mprotect`. */
const OPEN = 2;
/** With {@link SHUT} or {@link OPEN}: the member has "nh" (MADV_NOHUGEPAGE). */
const NH = 4;
/** With {@link SHUT} or {@link OPEN}: the member has "nr" (MAP_NORESERVE). */
const NR = 8;
const MAP_NORESERVE = 0x4000;
const MADV_NOHUGEPAGE = 15;

/**
 * Whether `m` may be a member of a reserved run ({@link reservedRunLength}),
 * and which: {@link SHUT} for a private anonymous `---p` area without pages
 * that was never writable (no "ac": a thread stack's guard page, the unused
 * tail of a malloc arena), {@link OPEN} for a `rw-p` one (the stack, the
 * arena's head), accounted ("ac") unless it is not reserved ("nr": then
 * never accounted), each with {@link NH} when it has "nh" and {@link NR}
 * when it has "nr"; 0 for anything else (a name, a policy, guard regions,
 * or any VmFlag but "rd wr mr mw me ac sd nh nr").
 */
function reservedMember(m: Mapping): number {
  const perms = m.perms;
  const open = perms === "rw-p";
  if (!open && perms !== "---p") return 0;
  if (m.kind !== "anon" || m.name !== "" || (!open && m.pages.length > 0)) return 0;
  if (m.inherited || m.sysvShm !== undefined || m.aio || m.mempolicy || m.guards) return 0;
  const flags = m.vmFlags;
  let seen = 0;
  for (let k = 0; k < flags.length; k++) {
    const f = flags[k];
    if (f === "mr") seen |= 1;
    else if (f === "mw") seen |= 2;
    else if (f === "me") seen |= 4;
    else if (f === "ac") seen |= 8;
    else if (f === "nh") seen |= 16;
    else if (f === "nr") seen |= 32;
    else if (f !== "rd" && f !== "wr" && f !== "sd") return 0;
  }
  // Accounted exactly when read-write and reserved (mprotect charges only those).
  if ((seen & 7) !== 7 || (open && (seen & 32) === 0) !== ((seen & 8) !== 0)) return 0;
  return (open ? OPEN : SHUT) | (seen & 16 ? NH : 0) | (seen & 32 ? NR : 0);
}

/**
 * How many mappings from `mappings[i]` on form a reserved run that
 * {@link emitReservedRun} re-creates together: 0 when `mappings[i]` does not
 * start one of at least two. Its members ({@link reservedMember}) follow on
 * in memory, all with "nh" or all without, all with "nr" or all without
 * (a malloc arena), none kept apart from the one
 * before it ({@link keptApart}): thread stacks and their guard pages, one
 * pair per thread, as glibc makes them (one `PROT_NONE` mmap, with
 * MAP_STACK's "nh" since Linux 6.8, the stack then opened by `mprotect`).
 */
export function reservedRunLength(mappings: readonly Mapping[], i: number): number {
  const kind = reservedMember(mappings[i]);
  if (kind === 0 || i + 1 >= mappings.length) return 0;
  if (i > 0 && keptApart(mappings[i - 1], mappings[i])) return 0;
  const flags = kind & (NH | NR);
  let end = mappings[i].end;
  // (By findFrom: no loop of many rounds here, see engine/find_from.ts.)
  const stop = findFrom(mappings, (next, k) => {
    const member = reservedMember(next);
    if (next.start !== end || member === 0 || (member & (NH | NR)) !== flags) return true;
    if (keptApart(mappings[k - 1], next)) return true;
    end = next.end;
    return false;
  }, i + 1);
  const n = (stop < 0 ? mappings.length : stop) - i;
  return n >= 2 ? n : 0;
}

/**
 * Emits the reserved run of `n` mappings from `mappings[i]` (see
 * {@link reservedRunLength}) as the process made it: one `PROT_NONE` mmap
 * of the whole run (no commit charge, no "ac"; MAP_NORESERVE for "nr"), its
 * "nh" advice given once on the whole area before anything is split or
 * loaded, then each open member made read-write by `mprotect` (which
 * charges it and sets "ac" unless "nr", as the process's own `mprotect`
 * did), then the open members' pages, handed
 * to `load` (in order, page runs that follow on both in memory and in the
 * image joined). The areas come out as before: members alternate between
 * protections (alike neighbours are never both members), so every boundary
 * is one the `mprotect`s draw, and no member has another madvise flag. A
 * `PROT_NONE` member never had pages nor an `anon_vma`, and has none after.
 */
export function emitReservedRun(
  p: ProgramBuilder,
  mappings: readonly Mapping[],
  i: number,
  n: number,
  load: (stretches: { addr: HexNum; length: number; fileOffset: number }[]) => void,
): void {
  const first = mappings[i], last = mappings[i + n - 1];
  const start = hexNum(first.start);
  const len = hexMinus(hexNum(last.end), start);
  const kind = reservedMember(first);
  const flags = MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | (kind & NR ? MAP_NORESERVE : 0);
  p.op(SYS.mmap, [start, len, 0, flags, -1, 0], {
    comment:
      `${n} private anonymous mappings ${first.start}-${last.end}, mapped PROT_NONE together`,
  });
  if (kind & NH) {
    p.op(SYS.madvise, [start, len, MADV_NOHUGEPAGE], { comment: "VmFlag nh, every member's" });
  }
  const stretches: { addr: HexNum; length: number; fileOffset: number }[] = [];
  const rows = new Float64Array(3 * n);
  let count = 0;
  // (By findFrom: no loop of many rounds in this function, see engine/find_from.ts.)
  findFrom(
    mappings,
    (m) => {
      if (m.perms !== "rw-p") return false;
      const s = hexNum(m.start);
      const e = hexNum(m.end);
      if (typeof s === "number" && typeof e === "number") {
        rows[3 * count] = s;
        rows[3 * count + 1] = e - s;
        rows[3 * count + 2] = PROT_READ | PROT_WRITE;
        count++;
      } else {
        p.opsOfNumbers(SYS.mprotect, 3, rows, count);
        count = 0;
        p.op(SYS.mprotect, [s, hexMinus(e, s), PROT_READ | PROT_WRITE]);
      }
      const pages = m.pages;
      for (let q = 0; q < pages.length; q++) {
        const r = pages[q];
        const addr = hexNum(r.addr);
        const prev = stretches[stretches.length - 1];
        if (
          prev && prev.fileOffset + prev.length === r.fileOffset &&
          same(hexPlus(prev.addr, prev.length), addr)
        ) {
          prev.length += r.length;
        } else stretches.push({ addr, length: r.length, fileOffset: r.fileOffset });
      }
      return false;
    },
    i,
    i + n,
  );
  p.opsOfNumbers(SYS.mprotect, 3, rows, count);
  load(stretches);
}
