/**
 * Restore of a shared anonymous mapping grown past its memory object
 * (`Mapping.shmemSize`, recorded by engine/memory/shmem_pages.ts): the
 * object is made only as long as the part it covered, then the mapping is
 * grown over the rest with mremap (which does not grow the object), so an
 * access past the object raises SIGBUS as it did.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { hexMinus, type HexNum, hexPlus } from "../image/hexnum.ts";
import type { Mapping } from "../model.ts";
import type { ProgramBuilder } from "../program/builder.ts";

/**
 * Emits the mapping `m` ([start, start + len), `prot`, mmap `flags` with
 * MAP_SHARED|MAP_ANONYMOUS|MAP_FIXED) with an object of `m.shmemSize`
 * bytes: the range past it is unmapped first (the grow happens in place).
 */
export function emitShortShmem(
  p: ProgramBuilder,
  m: Mapping & { shmemSize: number },
  start: HexNum,
  len: HexNum,
  prot: number,
  flags: number,
  label: string,
): void {
  const covered = m.shmemSize;
  const end = hexPlus(start, Number(len));
  p.op(SYS.munmap, [hexPlus(start, covered), hexMinus(end, hexPlus(start, covered))], {
    comment: "room for the part past the object",
  });
  p.op(SYS.mmap, [start, covered, prot, flags, -1, 0], { comment: `${label}: its object` });
  p.op(SYS.mremap, [start, covered, len, 0, 0], {
    comment: "grown past the object (SIGBUS there)",
  });
}
