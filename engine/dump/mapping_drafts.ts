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
import type { MappingValues } from "../image/mapping_note.ts";

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

/** Records by the parse they were made from, and their address values; each handed out once. */
const drafts = new WeakMap<readonly Vma[], Drafts>();

/** What {@link takeMappingDrafts} gives. */
export interface Drafts {
  /** The record of each area drafted (index for index), undefined for the others. */
  records: (Mapping | undefined)[];
  /**
   * The values of the drafted records' address texts (engine/image/mapping_note.ts
   * `knowMappingValues`: the image's mapping rows take them instead of parsing the texts).
   */
  values: MappingValues;
}

/** 2^52: a value below it has at most 13 hex digits (a text the mapping rows take as a value). */
const ROW_VALUE_LIMIT = 2n ** 52n;

/**
 * Makes the records of the anonymous areas of `areas` (a parse made with
 * the tree running), kept for {@link takeMappingDrafts}.
 */
export function draftMappings(areas: readonly Vma[]): void {
  const n = areas.length;
  const out: (Mapping | undefined)[] = new Array(n);
  const values: MappingValues = {
    startText: new Array(n),
    start: new Float64Array(n),
    endText: new Array(n),
    end: new Float64Array(n),
    offsetText: new Array(n),
    offset: new Float64Array(n),
  };
  let lastEnd = -1n, lastEndHex = "", lastEndValue = -1;
  // By forEach: no loop of 10,000 rounds for V8 to compile (engine/find_from.ts).
  areas.forEach((m, i) => {
    const kind = classifyVma(m);
    const end = hex(m.end);
    const endValue = m.end < ROW_VALUE_LIMIT ? Number(m.end) : -1;
    if (kind === "anon" || kind === "anon-shared" || kind === "sysv-shm") {
      const touches = m.start === lastEnd;
      const r = out[i] = mappingRecord(m, kind, touches ? lastEndHex : hex(m.start), end, NO_FLAGS);
      // Each text with its value (a value only below 2^52: the texts the rows can hold).
      const startValue = touches ? lastEndValue : m.start < ROW_VALUE_LIMIT ? Number(m.start) : -1;
      if (startValue >= 0) {
        values.startText[i] = r.start;
        values.start[i] = startValue;
      }
      if (endValue >= 0) {
        values.endText[i] = end;
        values.end[i] = endValue;
      }
      if (m.offset < ROW_VALUE_LIMIT) {
        values.offsetText[i] = r.offset;
        values.offset[i] = Number(m.offset);
      }
    }
    lastEnd = m.end;
    lastEndHex = end;
    lastEndValue = endValue;
  });
  drafts.set(areas, { records: out, values });
}

/**
 * The records made by {@link draftMappings} from `areas` (the same array:
 * the parse the freeze took) and their values, once; a record is undefined
 * for an area not drafted (made by the collect); undefined for a parse not
 * drafted.
 */
export function takeMappingDrafts(areas: readonly Vma[]): Drafts | undefined {
  const d = drafts.get(areas);
  drafts.delete(areas);
  return d;
}
