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
 *   raises SIGBUS as it did;
 * - pieces of one object mapped in several places not side by side
 *   (`Mapping.shmemObject`: a piece moved by mremap, the object mapped again
 *   through map_files) are all mapped from one object, made once at the
 *   object's size at a free scratch address, by `mremap` with an old size
 *   of 0 (which maps the same pages of a shared mapping again, at its page
 *   offset) from the piece's offset in it to the piece's address; the
 *   scratch mapping is then unmapped. The pieces keep their maps offsets
 *   and are one object again (a write through one is seen through the
 *   others, and their map_files entries are one inode).
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { hexMinus, type HexNum, hexNum, hexPlus } from "../image/hexnum.ts";
import type { Mapping, ProcessImage } from "../model.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import { chooseBootstrap, type Vma } from "../dump/vmas.ts";
import { anonScratchRange, takenArea } from "../restore/anon_runs.ts";

/** Whether mapping `i` is mapped with the one before it, as one object ({@link emitSharedAnon}). */
function joinsPrevious(mappings: readonly Mapping[], i: number): boolean {
  const m = mappings[i];
  if (!m.shmemJoin || m.inherited || m.shmemObject || i === 0) return false;
  const prev = mappings[i - 1];
  return prev.kind === "anon-shared" && !prev.inherited && !prev.shmemObject &&
    prev.end === m.start;
}

/** A piece of a shared anonymous object mapped in several places. */
type Piece = Mapping & { shmemObject: NonNullable<Mapping["shmemObject"]> };

/** Whether mapping `m` is a piece of an object mapped in several places, made by this process. */
function objectPiece(m: Mapping): m is Piece {
  return m.kind === "anon-shared" && m.shmemObject !== undefined && !m.inherited && !m.excluded;
}

/**
 * Whether mapping `i` (shared anonymous) is one piece of an object mapped
 * in several: it is mapped read-write with the others, and given its own
 * protection after its pages are in.
 */
export function inSharedAnonGroup(mappings: readonly Mapping[], i: number): boolean {
  return objectPiece(mappings[i]) || joinsPrevious(mappings, i) ||
    (i + 1 < mappings.length && joinsPrevious(mappings, i + 1));
}

/**
 * Emits the mmap of shared anonymous mapping `i` (at `start`, `prot`, mmap
 * `flags` with MAP_SHARED|MAP_ANONYMOUS|MAP_FIXED): nothing for a piece
 * joined to the one before it (mapped with it), else one object for it and
 * the pieces that follow it, as long as the object was. A piece of an
 * object mapped in several places: the first one (by address) maps them
 * all ({@link emitObjectPieces}), the others nothing.
 */
export function emitSharedAnon(
  p: ProgramBuilder,
  proc: ProcessImage,
  images: ReadonlyMap<number, ProcessImage> | undefined,
  i: number,
  start: HexNum,
  prot: number,
  flags: number,
  label: string,
): void {
  const mappings = proc.mappings;
  const m = mappings[i];
  if (objectPiece(m)) {
    const pieces = mappings.filter((x): x is Piece =>
      objectPiece(x) && x.shmemObject.id === m.shmemObject.id
    );
    if (pieces[0] === m) emitObjectPieces(p, proc, images, pieces, flags);
    return;
  }
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

const MAP_FIXED = 0x10;
/** MAP_FIXED_NOREPLACE: the scratch range must be free, or the restore fails there. */
const MAP_FIXED_NOREPLACE = 0x100000;
const MREMAP_MAYMOVE_FIXED = 1 | 2;
const PROT_RW = 3;
const PAGE = 4096;

/** Bytes of the scratch mapping of an object of `size` bytes. */
function pagesOf(size: number): number {
  return (size + PAGE - 1) & ~(PAGE - 1);
}

/**
 * Emits the object of `pieces` (all of one `shmemObject`, in address
 * order) once, at its scratch address and whole size (or, `inParent`, takes
 * the parent's scratch mapping of it, inherited at fork), maps each piece
 * from it at its offset (mremap with an old size of 0: the same pages
 * again), read-write (each gets its protection after its pages), and
 * unmaps the scratch mapping, unless inheriting children still need it
 * ({@link emitObjectScratchUnmaps}). A piece reaching past the object's end
 * keeps the rest past it (SIGBUS there, as before the dump).
 */
function emitObjectPieces(
  p: ProgramBuilder,
  proc: ProcessImage,
  images: ReadonlyMap<number, ProcessImage> | undefined,
  pieces: readonly Piece[],
  flags: number,
): void {
  const object = pieces[0].shmemObject;
  const len = pagesOf(object.size);
  let maker = proc;
  if (object.inParent) {
    const parent = images?.get(proc.ppid);
    if (!parent) {
      throw new Error(`process ${proc.pid} maps its parent's object but its parent is missing`);
    }
    maker = parent;
  }
  const scratch = objectScratch(maker, images).get(object.id);
  if (scratch === undefined) {
    throw new Error(`no scratch address for shared anonymous object ${object.id}`);
  }
  if (!object.inParent) {
    p.op(SYS.mmap, [scratch, len, PROT_RW, (flags & ~MAP_FIXED) | MAP_FIXED_NOREPLACE, -1, 0], {
      comment:
        `shared anonymous object ${object.id} (${object.size} bytes), ${pieces.length} pieces here`,
    });
  }
  for (const m of pieces) {
    const start = hexNum(m.start);
    const from = hexPlus(scratch, Number(BigInt(m.offset)));
    p.op(SYS.mremap, [from, 0, hexMinus(hexNum(m.end), start), MREMAP_MAYMOVE_FIXED, start], {
      comment: `${m.start}-${m.end} at offset ${m.offset} of the object`,
    });
  }
  if (object.forChildren) return; // unmapped once the children are forked
  p.op(SYS.munmap, [scratch, len], {
    comment: object.inParent
      ? "the parent's mapping of the object"
      : "the object's scratch mapping",
  });
}

/**
 * In a process that made objects its inheriting children map at other
 * addresses (`shmemObject.forChildren`): unmaps their scratch mappings,
 * once the children are forked.
 */
export function emitObjectScratchUnmaps(
  p: ProgramBuilder,
  proc: ProcessImage,
  images: ReadonlyMap<number, ProcessImage> | undefined,
): void {
  const done = new Set<number>();
  // The pieces found by `filter` (V8's own loop: engine/find_from.ts), then the few walked.
  const pieces = proc.mappings.filter((m) => objectPiece(m) && m.shmemObject.forChildren);
  for (const m of pieces) {
    if (!objectPiece(m) || done.has(m.shmemObject.id)) continue;
    done.add(m.shmemObject.id);
    const at = objectScratch(proc, images).get(m.shmemObject.id)!;
    p.op(SYS.munmap, [at, pagesOf(m.shmemObject.size)], {
      comment: `shared anonymous object ${m.shmemObject.id}: its scratch mapping, children forked`,
    });
  }
}

/** The scratch addresses chosen for each maker's objects (see {@link objectScratch}). */
const scratchOf = new WeakMap<readonly Mapping[], Map<number, bigint>>();

/**
 * The scratch address of every object `maker` makes (its pieces marked
 * `shmemObject`, not `inParent`), side by side in one range free while the
 * restore programs of `maker` and of its inheriting children run: clear of
 * every mapping of their images and of their bootstraps (what an inheriting
 * child holds once it dropped what it does not keep). The same for the
 * maker's program and its children's, which map from it.
 */
function objectScratch(
  maker: ProcessImage,
  images: ReadonlyMap<number, ProcessImage> | undefined,
): Map<number, bigint> {
  const known = scratchOf.get(maker.mappings);
  if (known) return known;
  const sizes = new Map<number, number>();
  for (const m of maker.mappings) {
    if (objectPiece(m) && !m.shmemObject.inParent) {
      sizes.set(m.shmemObject.id, pagesOf(m.shmemObject.size));
    }
  }
  const areas: Vma[] = [];
  const holders = [
    maker,
    ...maker.children.map((c) => images?.get(c)).filter((c) => c?.inheritsMemory),
  ];
  for (const x of holders) {
    for (const m of x!.mappings) areas.push(takenArea(BigInt(m.start), BigInt(m.end)));
    const boot = BigInt(x!.bootstrap.start);
    areas.push(takenArea(boot, boot + BigInt(x!.bootstrap.size)));
    // (Its scratch for private areas kept apart is used while this object is mapped.)
    const anon = anonScratchRange(x!);
    if (anon) areas.push(takenArea(anon.start, anon.end));
  }
  areas.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  let total = 0;
  for (const len of sizes.values()) total += len;
  let at = chooseBootstrap(areas, total);
  const out = new Map<number, bigint>();
  for (const [id, len] of [...sizes].sort((a, b) => a[0] - b[0])) {
    out.set(id, at);
    at += BigInt(len);
  }
  scratchOf.set(maker.mappings, out);
  return out;
}
