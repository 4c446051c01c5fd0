/**
 * The records of anonymous mappings made before the freeze from the maps
 * parse the freeze may reuse (engine/dump/vm_flags.ts `prepareFrozenMaps`):
 * address texts, kind, name, permissions come from the maps text alone, and
 * the freeze takes the parse only when it reads the very same bytes, so
 * the records made from it then describe the frozen areas. The collect
 * (engine/dump/process.ts) fills in what the text does not hold (VmFlags,
 * an AIO ring) and makes the rest (file mappings, whose identity is read
 * at the freeze) itself. 10,000 mappings: 10,000 objects and 20,000 hex
 * texts no longer made in the freeze.
 *
 * @module
 */

import type { Mapping, MappingKind } from "../model.ts";
import { classifyVma, type Vma } from "./vmas.ts";
import { sysvShmidOf } from "../memory/sysvshm.ts";

/** A mapping's page runs before its pages are saved: one shared list, replaced, never added to. */
export const NO_PAGES: Mapping["pages"] = Object.freeze([]) as unknown as Mapping["pages"];

/** VmFlags not known yet (set by the collect). */
const NO_FLAGS: string[] = Object.freeze([]) as unknown as string[];

const hex = (v: bigint) => `0x${v.toString(16)}`;

/**
 * The record of area `m` of `kind` (its hex `start` and `end` given: the
 * caller reuses the last end's text), its pages not saved yet; one shape
 * for every record (keys in the image's order, `file` for file mappings).
 */
export function mappingRecord(
  m: Vma,
  kind: MappingKind,
  start: string,
  end: string,
  vmFlags: string[],
  file?: Mapping["file"],
): Mapping {
  const offset = m.offset === 0n ? "0x0" : hex(m.offset);
  const mapping: Mapping = file
    ? { start, end, perms: m.perms, offset, kind, name: m.path, file, vmFlags, pages: NO_PAGES }
    : { start, end, perms: m.perms, offset, kind, name: m.path, vmFlags, pages: NO_PAGES };
  const sysvShm = sysvShmidOf(m.path, m.inode);
  if (sysvShm !== undefined) mapping.sysvShm = sysvShm;
  return mapping;
}

/** Records by the parse they were made from; each handed out once. */
const drafts = new WeakMap<readonly Vma[], (Mapping | undefined)[]>();

/**
 * Makes the records of the anonymous areas of `areas` (a parse made with
 * the tree running), kept for {@link takeMappingDrafts}.
 */
export function draftMappings(areas: readonly Vma[]): void {
  const out: (Mapping | undefined)[] = new Array(areas.length);
  const starts: string[] = new Array(areas.length), ends: string[] = new Array(areas.length);
  let lastEnd = -1n, lastEndHex = "";
  // By forEach: no loop of 10,000 rounds for V8 to compile (engine/find_from.ts).
  areas.forEach((m, i) => {
    const kind = classifyVma(m);
    const start = m.start === lastEnd ? lastEndHex : hex(m.start);
    const end = hex(m.end);
    starts[i] = start;
    ends[i] = end;
    if (kind === "anon" || kind === "anon-shared" || kind === "sysv-shm") {
      out[i] = mappingRecord(m, kind, start, end, NO_FLAGS);
    }
    lastEnd = m.end;
    lastEndHex = end;
  });
  drafts.set(areas, out);
  texts.set(areas, { start: starts, end: ends });
}

/** The address texts of every area of a drafted parse, by that parse. */
const texts = new WeakMap<readonly Vma[], { start: string[]; end: string[] }>();

/**
 * The hex texts of every area's start and end made by {@link draftMappings}
 * from `areas` (index for index; the drafted records hold these very
 * strings), once; undefined for a parse not drafted. The collect makes its
 * other records with them and keeps them as the list's columns' texts
 * (engine/image/mapping_columns.ts): nothing per mapping in the freeze.
 */
export function takeDraftTexts(
  areas: readonly Vma[],
): { start: string[]; end: string[] } | undefined {
  const t = texts.get(areas);
  texts.delete(areas);
  return t;
}

/**
 * The records made by {@link draftMappings} from `areas` (the same array:
 * the parse the freeze took), once; undefined for an area not drafted
 * (made by the collect), or for every area of a parse not drafted.
 */
export function takeMappingDrafts(
  areas: readonly Vma[],
): readonly (Mapping | undefined)[] | undefined {
  const d = drafts.get(areas);
  drafts.delete(areas);
  return d;
}
