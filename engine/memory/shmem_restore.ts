/**
 * Restore of shared anonymous mappings as their memory objects were
 * (engine/memory/shmem_pages.ts recorded them):
 *
 * - an area split by mprotect or madvise (mappings marked `shmemJoin`:
 *   each continues the object of the one before) is mapped once, as one
 *   object, and each piece then gets its own protection and flags: the
 *   pieces share their pages again, and their maps offsets follow on;
 * - a mapping grown past its object (`Mapping.shmemSize`) gets an object
 *   only as long as the part it covered, then is grown over the rest with
 *   mremap (which does not grow the object), so an access past the object
 *   raises SIGBUS as it did.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { hexMinus, type HexNum, hexNum, hexPlus } from "../image/hexnum.ts";
import type { Mapping } from "../model.ts";
import type { ProgramBuilder } from "../program/builder.ts";

/** Whether mapping `i` is mapped with the one before it, as one object ({@link emitSharedAnon}). */
function joinsPrevious(mappings: readonly Mapping[], i: number): boolean {
  const m = mappings[i];
  if (!m.shmemJoin || m.inherited || i === 0) return false;
  const prev = mappings[i - 1];
  return prev.kind === "anon-shared" && !prev.inherited && prev.end === m.start;
}

/**
 * Whether mapping `i` (shared anonymous) is one piece of an object mapped
 * in several: it is mapped read-write with the others, and given its own
 * protection after its pages are in.
 */
export function inSharedAnonGroup(mappings: readonly Mapping[], i: number): boolean {
  return joinsPrevious(mappings, i) || (i + 1 < mappings.length && joinsPrevious(mappings, i + 1));
}

/**
 * Emits the mmap of shared anonymous mapping `i` (at `start`, `prot`, mmap
 * `flags` with MAP_SHARED|MAP_ANONYMOUS|MAP_FIXED): nothing for a piece
 * joined to the one before it (mapped with it), else one object for it and
 * the pieces that follow it, as long as the object was.
 */
export function emitSharedAnon(
  p: ProgramBuilder,
  mappings: readonly Mapping[],
  i: number,
  start: HexNum,
  prot: number,
  flags: number,
  label: string,
): void {
  if (joinsPrevious(mappings, i)) return; // mapped with the piece before it
  let last = i;
  while (last + 1 < mappings.length && joinsPrevious(mappings, last + 1)) last++;
  const len = hexMinus(hexNum(mappings[last].end), start);
  const what = last > i ? `${label} and the ${last - i} piece(s) after it, one object` : label;
  // The piece reaching past the object, if one does (then it is the last: one past it is refused).
  for (let k = i; k <= last; k++) {
    const size = mappings[k].shmemSize;
    if (size === undefined) continue;
    const covered = size + Number(hexMinus(hexNum(mappings[k].start), start));
    emitShortShmem(p, start, len, covered, prot, flags, what);
    return;
  }
  p.op(SYS.mmap, [start, len, prot, flags, -1, 0], { comment: what });
}

/**
 * Emits a shared anonymous mapping [start, start + len) whose object is
 * only `covered` bytes: the range past it is unmapped first (the grow
 * happens in place), the object mapped, the mapping grown.
 */
function emitShortShmem(
  p: ProgramBuilder,
  start: HexNum,
  len: HexNum,
  covered: number,
  prot: number,
  flags: number,
  label: string,
): void {
  const end = hexPlus(start, Number(len));
  p.op(SYS.munmap, [hexPlus(start, covered), hexMinus(end, hexPlus(start, covered))], {
    comment: "room for the part past the object",
  });
  p.op(SYS.mmap, [start, covered, prot, flags, -1, 0], { comment: `${label}: its object` });
  p.op(SYS.mremap, [start, covered, len, 0, 0], {
    comment: "grown past the object (SIGBUS there)",
  });
}
