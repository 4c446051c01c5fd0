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
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import type { Mapping } from "../model.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";
import { emitVmFlags } from "../memory/flags.ts";
import { hexMinus, type HexNum, hexNum, hexPlus } from "../image/hexnum.ts";

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
 * (or faulted and dropped when accounted): never in a run.
 */
function joinable(m: Mapping): boolean {
  if (m.kind !== "anon" || m.perms[3] !== "p" || m.name !== "") return false;
  if (m.inherited || m.sysvShm !== undefined || m.aio) return false;
  const prot = protOf(m.perms);
  if (prot !== (PROT_READ | PROT_WRITE) && !(prot === PROT_READ && m.pages.length > 0)) {
    return false;
  }
  for (const f of m.vmFlags) if (f === "gd" || f === "nr") return false;
  return true;
}

/**
 * How many mappings from `mappings[i]` on form a run that {@link emitAnonRun}
 * re-creates together: 0 when `mappings[i]` does not start one of at least two.
 */
export function anonRunLength(mappings: readonly Mapping[], i: number): number {
  if (!joinable(mappings[i])) return 0;
  let n = 1;
  let end = mappings[i].end;
  while (i + n < mappings.length) {
    const next = mappings[i + n];
    // The dump writes addresses one way ("0x" and lower-case digits, no leading zeros):
    // equal strings are equal addresses, and an image written otherwise only makes no run.
    if (next.start !== end || !joinable(next)) break;
    end = next.end;
    n++;
  }
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
 * its mprotect (when not read-write) and its madvise flags.
 */
export function emitAnonRun(
  p: ProgramBuilder,
  mappings: readonly Mapping[],
  i: number,
  n: number,
  imageSlot: number,
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
  let runAddr: HexNum = 0, runLength = 0, runOffset = 0;
  for (let k = i; k < i + n; k++) {
    for (const r of mappings[k].pages) {
      const addr = hexNum(r.addr);
      if (
        runLength > 0 && same(hexPlus(runAddr, runLength), addr) &&
        runOffset + runLength === r.fileOffset
      ) {
        runLength += r.length;
        continue;
      }
      if (runLength > 0) emitRead(p, imageSlot, runAddr, runLength, runOffset);
      runAddr = addr;
      runLength = r.length;
      runOffset = r.fileOffset;
    }
  }
  if (runLength > 0) emitRead(p, imageSlot, runAddr, runLength, runOffset);
  for (let k = i; k < i + n; k++) {
    const m = mappings[k];
    const prot = protOf(m.perms);
    if (prot !== (PROT_READ | PROT_WRITE)) {
      const s = hexNum(m.start);
      p.op(SYS.mprotect, [s, hexMinus(hexNum(m.end), s), prot]);
    }
    emitVmFlags(p, m);
  }
}
