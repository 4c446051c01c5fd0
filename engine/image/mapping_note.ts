/**
 * The NT_CRYO_MAPPINGS note: a process's common mapping records as binary
 * columns, beside the NT_CRYO_PROCESS JSON (docs/IMAGE-FORMAT.md §6.11).
 *
 * An image of 10,000 mappings held them as ~2.2 MB of JSON objects, whose
 * `JSON.parse` and shape check cost a restore 30 ms and more. Here a
 * mapping with only the eight common fields (`start`, `end`, `perms`,
 * `offset`, `kind`, `name`, `vmFlags`, `pages` of plain runs) is a row of
 * fixed-size columns (addresses as u64), its name and VmFlags indexes into
 * one table of texts; every other record (a file identity, System V, AIO,
 * guards, an inherited mapping, a run in a parent image, an address above
 * 2^52, any field this cryo does not know) stays a JSON object in the
 * process note's `mappings.whole`, in order, and its row says so. The
 * records this module makes fit the image schema by construction (each
 * value is checked as it is decoded), so they need no shape check; a
 * damaged note is refused by name, with the first inconsistency found.
 *
 * Layout (little-endian; see {@link encodeMappingNote}):
 *
 * ```
 * header   u32 magic "CMAP", u32 layout 1, u32 mappings n, u32 whole w,
 *          u32 runs r, u32 texts t, u32 text bytes, u32 0
 * rows     start u64[n], end u64[n], offset u64[n],
 *          name u32[n], vmFlags u32[n], runs u32[n], perms u8[n], kind u8[n],
 *          zero padding to 4 bytes
 * runs     r x (addr u64, length u64, fileOffset u64)
 * texts    t UTF-8 strings, each ending with a NUL
 * ```
 *
 * @module
 */

import type { Mapping, PageRun } from "../model.ts";
import { isNat, MAPPING_KINDS } from "./mapping_fast.ts";
import { PERMS_TEXT, permsBits } from "../perms.ts";
import { sharedFlagList } from "./flag_lists.ts";
import { columnAt, type MappingColumns, mappingColumns } from "./mapping_columns.ts";

/** "CMAP" as a little-endian u32: the first word of the note. */
export const MAPPING_NOTE_MAGIC = 0x50414d43;
/** The layout this module writes and reads. */
export const MAPPING_NOTE_LAYOUT = 1;
/** Bytes of the header. */
const HEADER = 32;
/** The `kind` of a row whose record is the next of `mappings.whole`. */
export const WHOLE_ROW = 255;
/** The value the process note's `mappings.columns` has when its mappings are in the note. */
export const MAPPINGS_IN_NOTE = "NT_CRYO_MAPPINGS";

const TWO32 = 4294967296;
const PAGE = 4096;
/** Largest value a column holds as an exact number for a record: 13 hex digits (2^52). */
const MAX_HEX_DIGITS = 13;
/** Values a column gives a row: below 16^13, as {@link canonicalHex} takes them. */
const MAX_COLUMN = 2 ** 52;

/** What the process note holds in place of its mapping list when the rows are in the note. */
export interface MappingsInNote {
  /** {@link MAPPINGS_IN_NOTE}. */
  columns: string;
  /** The records kept as JSON, in address order (a {@link WHOLE_ROW} row each). */
  whole: Mapping[];
}

/** The process note's `mappings` and the NT_CRYO_MAPPINGS descriptor of a mapping list. */
export interface EncodedMappings {
  /** What the JSON's `mappings` becomes. */
  json: MappingsInNote;
  /** The note's descriptor. */
  desc: Uint8Array<ArrayBuffer>;
}

/**
 * The value of `s` when it is a canonical hex text cryo writes ("0x" then
 * lowercase digits without leading zeros, at most 13 of them), else -1:
 * only such a text comes back the same from a column.
 */
function canonicalHex(s: unknown): number {
  if (typeof s !== "string") return -1;
  const n = s.length;
  if (n < 3 || n > MAX_HEX_DIGITS + 2 || s.charCodeAt(0) !== 48 || s.charCodeAt(1) !== 120) {
    return -1;
  }
  if (n > 3 && s.charCodeAt(2) === 48) return -1;
  let v = 0;
  for (let i = 2; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) v = v * 16 + (c - 48);
    else if (c >= 97 && c <= 102) v = v * 16 + (c - 87);
    else return -1;
  }
  return v;
}

/** The number of enumerable keys of `o` (no array made, as `Object.keys` would). */
function keyCount(o: object): number {
  let k = 0;
  for (const _ in o) k++;
  return k;
}
const KIND_INDEX = new Map<unknown, number>(MAPPING_KINDS.map((k, i) => [k, i]));

/** The eight fields of a record a row holds, in the order records are made. */
const ROW_FIELDS = 8;

/** Bytes of the rows' columns for `n` rows, padding included. */
function rowBytes(n: number): number {
  return (38 * n + 3) & ~3;
}

/** Writes the exact number `v` (< 2^53) as a u64 at word `w` of `words`. */
function putU64(words: Uint32Array, w: number, v: number): void {
  words[w] = v >>> 0;
  words[w + 1] = Math.floor(v / TWO32);
}

/** The encoder's rows (written in place: their count is known) and runs (grown as they come). */
class Rows {
  /** Rows given so far. */
  n = 0;
  /** Runs given so far. */
  r = 0;
  /** Every row's columns, laid out as in the note. */
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly words: Uint32Array;
  /** The runs, six words each. */
  runs = new Uint32Array(0);
  readonly texts: string[] = [];
  readonly textIndex = new Map<string, number>();
  readonly flagIndex = new Map<readonly string[], number>();

  constructor(
    readonly rows: number,
    /** The values of the list's texts, when known (mapping_columns.ts): no parse of those. */
    readonly cols?: MappingColumns,
  ) {
    this.bytes = new Uint8Array(rowBytes(rows));
    this.words = new Uint32Array(this.bytes.buffer);
    this.runs = new Uint32Array(6 * Math.min(rows + 16, 1 << 20));
  }

  /** The index of text `s` in the table, or -1 when UTF-8 would not give it back (a lone surrogate). */
  text(s: string): number {
    let i = this.textIndex.get(s);
    if (i === undefined) {
      if (!s.isWellFormed()) return -1; // (JSON keeps it, the text table would not)
      i = this.texts.length;
      this.texts.push(s);
      this.textIndex.set(s, i);
    }
    return i;
  }

  /** The text index of a VmFlags list, or -1 when its items cannot be joined by spaces. */
  flags(list: unknown): number {
    if (!Array.isArray(list)) return -1;
    const known = this.flagIndex.get(list);
    if (known !== undefined) return known;
    for (let i = 0; i < list.length; i++) {
      const f = list[i];
      if (typeof f !== "string" || f === "" || f.indexOf(" ") >= 0 || f.indexOf("\0") >= 0) {
        return -1;
      }
    }
    const i = this.text(list.join(" "));
    if (i >= 0) this.flagIndex.set(list, i);
    return i;
  }

  /** Room for `more` runs. */
  reserveRuns(more: number): void {
    if (6 * (this.r + more) <= this.runs.length) return;
    const grown = new Uint32Array(Math.max(2 * this.runs.length, 6 * (this.r + more)));
    grown.set(this.runs);
    this.runs = grown;
  }

  /** The text of the last row's `end` and its value (a row's start is mostly the end before it). */
  lastEndText = "";
  lastEnd = -1;

  /** Adds `m`, record `at` of the list, as a row; false (nothing added) when it must stay a JSON record. */
  row(m: Mapping, at: number): boolean {
    const startText = m.start, endText = m.end, cols = this.cols;
    // A column's value stands for the record's text when the record still holds the very
    // text it was made with (columnAt); those texts are canonical (mapping_columns.ts).
    let start = startText === this.lastEndText
      ? this.lastEnd
      : columnAt(cols?.start, cols?.startText, at, startText);
    if (!(start >= 0 && start < MAX_COLUMN)) start = canonicalHex(startText);
    let end = columnAt(cols?.end, cols?.endText, at, endText);
    if (!(end >= 0 && end < MAX_COLUMN)) end = canonicalHex(endText);
    const offset = m.offset === "0x0" ? 0 : canonicalHex(m.offset);
    if (start < 0 || end < 0 || offset < 0) return false;
    const perms = permsBits(m.perms);
    const kind = KIND_INDEX.get(m.kind);
    if (perms < 0 || kind === undefined || typeof m.name !== "string") return false;
    if (m.name.indexOf("\0") >= 0) return false;
    const pages = m.pages;
    if (!Array.isArray(pages) || keyCount(m) !== ROW_FIELDS) return false;
    const flags = this.flags(m.vmFlags);
    const name = this.text(m.name);
    if (flags < 0 || name < 0) return false;
    if (pages.length > 0 && !this.addRuns(pages, startText, start)) return false;
    const i = this.n, n = this.rows, words = this.words;
    putU64(words, 2 * i, start);
    putU64(words, 2 * (n + i), end);
    putU64(words, 2 * (2 * n + i), offset);
    words[6 * n + i] = name;
    words[7 * n + i] = flags;
    words[8 * n + i] = pages.length;
    this.bytes[36 * n + i] = perms;
    this.bytes[37 * n + i] = kind;
    this.r += pages.length;
    this.n++;
    this.lastEndText = endText;
    this.lastEnd = end;
    return true;
  }

  /** Writes the runs of a row after the last row's (not counted yet); false when one must stay JSON. */
  addRuns(pages: readonly PageRun[], startText: string, start: number): boolean {
    this.reserveRuns(pages.length);
    const runs = this.runs;
    for (let k = 0; k < pages.length; k++) {
      const run = pages[k] as PageRun | undefined;
      if (typeof run !== "object" || run === null || Array.isArray(run)) return false;
      const addr = run.addr === startText ? start : canonicalHex(run.addr);
      if (addr < 0 || !isNat(run.length) || !isNat(run.fileOffset)) return false;
      if (keyCount(run) !== 3) return false;
      const at = 6 * (this.r + k);
      putU64(runs, at, addr);
      putU64(runs, at + 2, run.length);
      putU64(runs, at + 4, run.fileOffset);
    }
    return true;
  }

  /** A row for the next record of `whole` (the row's other columns stay zero). */
  wholeRow(): void {
    this.bytes[37 * this.rows + this.n++] = WHOLE_ROW;
  }
}

const utf8 = new TextEncoder();

/**
 * The NT_CRYO_MAPPINGS descriptor of `mappings` and what the process
 * note's `mappings` becomes: every record that a row gives back the same
 * (the same fields, values and types; see the module's doc) is a row, the
 * others stay JSON in `whole`. The pass over the list runs through
 * `findIndex`: a loop of 10,000 rounds of its own would be compiled for
 * on-stack replacement on V8's worker threads (engine/find_from.ts).
 */
export function encodeMappingNote(mappings: readonly Mapping[]): EncodedMappings {
  const rows = new Rows(mappings.length, mappingColumns(mappings));
  const whole: Mapping[] = [];
  mappings.findIndex((m, i) => {
    if (typeof m !== "object" || m === null || !rows.row(m, i)) {
      whole.push(m);
      rows.wholeRow();
    }
    return false;
  });
  const n = rows.n, r = rows.r;
  const text = utf8.encode(rows.texts.length === 0 ? "" : rows.texts.join("\0") + "\0");
  const runsAt = HEADER + rowBytes(n);
  const textAt = runsAt + 24 * r;
  const desc = new Uint8Array(textAt + text.length);
  const head = new Uint32Array(desc.buffer, 0, HEADER >> 2);
  head[0] = MAPPING_NOTE_MAGIC;
  head[1] = MAPPING_NOTE_LAYOUT;
  head[2] = n;
  head[3] = whole.length;
  head[4] = r;
  head[5] = rows.texts.length;
  head[6] = text.length;
  desc.set(rows.bytes, HEADER);
  desc.set(new Uint8Array(rows.runs.buffer, 0, 24 * r), runsAt);
  desc.set(text, textAt);
  return { json: { columns: MAPPINGS_IN_NOTE, whole }, desc };
}

/** Where an image's page runs must lie: `.cryo.pages` of the file, cut at the file's end. */
export interface RunPlace {
  /** File offset of `.cryo.pages`. */
  offset: number;
  /** The lesser of the end of `.cryo.pages` and the file's size. */
  end: number;
}

/** What {@link decodeMappingNote} gives. */
export interface DecodedMappings {
  /** Every mapping record, in the rows' order. */
  mappings: Mapping[];
  /**
   * The indexes of the records whose page runs were not found in place
   * (every whole record, and each row with runs when no {@link RunPlace}
   * was given or a run is out of order, out of its mapping or out of
   * `.cryo.pages`): the reader checks those the generic way.
   */
  unchecked: number[];
  /**
   * The rows' numbers, each beside the hex text made of it and put in the
   * record (engine/image/mapping_columns.ts): -1 for a whole record's.
   */
  columns: MappingColumns;
}

/** A refusal of a damaged NT_CRYO_MAPPINGS note or `mappings` object (one line). */
export class MappingNoteError extends Error {
  constructor(reason: string) {
    super(`NT_CRYO_MAPPINGS: ${reason}`);
    this.name = "MappingNoteError";
  }
}

function refuse(reason: string): never {
  throw new MappingNoteError(reason);
}

/** Two lowercase hex digits of each byte value, and the digits of each without a leading zero. */
const BYTE_HEX: string[] = [];
const LEAD_HEX: string[] = [];
for (let b = 0; b < 256; b++) {
  BYTE_HEX.push(b.toString(16).padStart(2, "0"));
  LEAD_HEX.push(b.toString(16));
}

/** The character code of each hex digit's value. */
const DIGIT_CODE: number[] = [48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 98, 99, 100, 101, 102];

/**
 * `"0x..."` of the u64 at word `w` of `words`: below 2^48 (every user-space
 * address) from a table of byte digits (`Number.prototype.toString(16)`
 * took about twice as long, ~0.5 us a value cold), above it by `toString`.
 * From 2^40 (11 and 12 digits: a text of 13 characters or more, which `+`
 * makes as a tree of pieces that a later read flattens into a copy) the
 * text is made flat at once from its characters' codes: ~1.4 MB less
 * garbage for 10,000 mappings, one scavenge less in their restore's plan.
 */
export function hexAt(words: Uint32Array, w: number): string {
  const lo = words[w], hi = words[w + 1];
  if (hi >= 0x100 && hi < 0x10000) {
    const c = DIGIT_CODE;
    const l0 = c[lo & 15], l1 = c[(lo >>> 4) & 15], l2 = c[(lo >>> 8) & 15];
    const l3 = c[(lo >>> 12) & 15], l4 = c[(lo >>> 16) & 15], l5 = c[(lo >>> 20) & 15];
    const l6 = c[(lo >>> 24) & 15], l7 = c[lo >>> 28];
    const h0 = c[hi & 15], h1 = c[(hi >>> 4) & 15], h2 = c[(hi >>> 8) & 15];
    if (hi >= 0x1000) {
      return String.fromCharCode(48, 120, c[hi >>> 12], h2, h1, h0, l7, l6, l5, l4, l3, l2, l1, l0);
    }
    return String.fromCharCode(48, 120, h2, h1, h0, l7, l6, l5, l4, l3, l2, l1, l0);
  }
  if (hi < 0x10000) {
    const b0 = BYTE_HEX[lo & 255], b1 = BYTE_HEX[(lo >>> 8) & 255];
    const b2 = (lo >>> 16) & 255, b3 = lo >>> 24;
    if (hi !== 0) return "0x" + LEAD_HEX[hi] + BYTE_HEX[b3] + BYTE_HEX[b2] + b1 + b0;
    if (b3 !== 0) return "0x" + LEAD_HEX[b3] + BYTE_HEX[b2] + b1 + b0;
    if (b2 !== 0) return "0x" + LEAD_HEX[b2] + b1 + b0;
    if (lo >= 256) return "0x" + LEAD_HEX[lo >>> 8] + b0;
    return "0x" + LEAD_HEX[lo];
  }
  if (hi < 0x200000) return "0x" + (hi * TWO32 + lo).toString(16);
  return "0x" + ((BigInt(hi) << 32n) | BigInt(lo)).toString(16);
}

/** The exact number of the u64 at word `w`, or -1 when it is 2^53 or more. */
function natAt(words: Uint32Array, w: number): number {
  const hi = words[w + 1];
  return hi < 0x200000 ? hi * TWO32 + words[w] : -1;
}

/**
 * The mapping records of an image: the rows of the NT_CRYO_MAPPINGS
 * descriptor `desc`, each {@link WHOLE_ROW} row taking the next record of
 * `whole` (unchecked here: the caller's schema judges those). Throws
 * {@link MappingNoteError} naming the first problem of a damaged or
 * truncated note: sizes that disagree with the header, a kind or perms out
 * of range, a text index beyond the table, a run length or offset of 2^53
 * or more, rows that take more or fewer whole records than there are.
 * VmFlags lists are the shared frozen lists (engine/image/flag_lists.ts).
 */
export function decodeMappingNote(
  desc: Uint8Array,
  whole: readonly unknown[],
  place?: RunPlace,
): DecodedMappings {
  if (desc.length < HEADER) refuse(`${desc.length} bytes, shorter than its ${HEADER}-byte header`);
  // A copy when the note does not start on a word (typed arrays of u32 need it).
  const bytes = desc.byteOffset % 4 === 0 ? desc : desc.slice();
  const head = new Uint32Array(bytes.buffer, bytes.byteOffset, HEADER >> 2);
  if (head[0] !== MAPPING_NOTE_MAGIC) refuse("bad magic (not a mapping table)");
  if (head[1] !== MAPPING_NOTE_LAYOUT) {
    refuse(`layout ${head[1]}, this cryo reads layout ${MAPPING_NOTE_LAYOUT}`);
  }
  const n = head[2], w = head[3], r = head[4], t = head[5], textBytes = head[6];
  if (head[7] !== 0) refuse("reserved header word is not zero");
  const runsAt = HEADER + rowBytes(n);
  const textAt = runsAt + 24 * r;
  const expected = textAt + textBytes;
  if (bytes.length !== expected) {
    refuse(
      `${bytes.length} bytes for ${n} mappings, ${r} page runs and ${textBytes} bytes of text ` +
        `(expected ${expected}): truncated or damaged`,
    );
  }
  if (w !== whole.length) refuse(`${w} whole records, the process note has ${whole.length}`);
  if (w > n) refuse(`${w} whole records for ${n} mappings`);
  let texts: string[];
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(
      bytes.subarray(textAt, textAt + textBytes),
    );
    texts = text.split("\0");
  } catch {
    return refuse("its text table is not valid UTF-8");
  }
  if (texts.length !== t + 1 || texts[t] !== "") {
    refuse(`its text table does not hold ${t} NUL-terminated texts`);
  }
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, textAt >> 2);
  const rowsAt = HEADER;
  const w0 = rowsAt >> 2, rw = runsAt >> 2;
  const flagLists: (string[] | undefined)[] = new Array(t);
  const out: Mapping[] = new Array(n);
  const unchecked: number[] = [];
  const columns: MappingColumns = {
    start: new Float64Array(n),
    startText: new Array(n),
    end: new Float64Array(n),
    endText: new Array(n),
  };
  const starts = columns.start, ends = columns.end;
  const startTexts = columns.startText, endTexts = columns.endText;
  let nextWhole = 0;
  let run = 0;
  let prevEnd = -1;
  let prevEndText = "";
  const kinds = bytes.subarray(rowsAt + 37 * n, rowsAt + 38 * n);
  // (findIndex over a typed array: V8's own loop, no on-stack replacement of this function.)
  kinds.findIndex((kind, i) => {
    if (kind === WHOLE_ROW) {
      if (nextWhole >= w) refuse(`row ${i} takes a whole record beyond the ${w} there are`);
      if (words[w0 + 6 * n + i] !== 0 || words[w0 + 7 * n + i] !== 0 || words[w0 + 8 * n + i]) {
        refuse(`row ${i} takes a whole record but has columns of its own`);
      }
      out[i] = whole[nextWhole++] as Mapping;
      unchecked.push(i);
      starts[i] = -1;
      startTexts[i] = "";
      ends[i] = -1;
      endTexts[i] = "";
      prevEnd = -1;
      return false;
    }
    if (kind >= MAPPING_KINDS.length) refuse(`row ${i} has kind ${kind}`);
    const perms = bytes[rowsAt + 36 * n + i];
    if (perms > 15) refuse(`row ${i} has perms ${perms}`);
    const name = words[w0 + 6 * n + i], flags = words[w0 + 7 * n + i];
    const count = words[w0 + 8 * n + i];
    if (name >= t || flags >= t) refuse(`row ${i} names text ${Math.max(name, flags)} of ${t}`);
    if (count > r - run) refuse(`row ${i} has ${count} page runs, beyond the ${r} there are`);
    const startNum = natAt(words, w0 + 2 * i);
    const start = startNum >= 0 && startNum === prevEnd ? prevEndText : hexAt(words, w0 + 2 * i);
    const endNum = natAt(words, w0 + 2 * (n + i));
    const end = hexAt(words, w0 + 2 * (n + i));
    prevEnd = endNum;
    prevEndText = end;
    starts[i] = startNum;
    startTexts[i] = start;
    ends[i] = endNum;
    endTexts[i] = end;
    const offsetW = w0 + 2 * (2 * n + i);
    const offset = words[offsetW] === 0 && words[offsetW + 1] === 0 ? "0x0" : hexAt(words, offsetW);
    let vmFlags = flagLists[flags];
    if (vmFlags === undefined) {
      vmFlags = sharedFlagList(texts[flags] === "" ? [] : texts[flags].split(" "));
      flagLists[flags] = vmFlags;
    }
    const pages: PageRun[] = new Array(count);
    // Whether every run lies in order inside the mapping and inside .cryo.pages (else the
    // reader's own check judges this record, with its message).
    let placed = place !== undefined && startNum >= 0 && endNum >= 0;
    let after = startNum;
    for (let k = 0; k < count; k++, run++) {
      const aw = rw + 6 * run;
      const addrNum = natAt(words, aw);
      const length = natAt(words, aw + 2);
      const fileOffset = natAt(words, aw + 4);
      if (length < 0 || fileOffset < 0) refuse(`page run ${run} has a length or offset past 2^53`);
      if (placed) {
        // (Multiples of the page below 2^53 add up exactly.)
        placed = addrNum >= after && addrNum % PAGE === 0 && length % PAGE === 0 &&
          fileOffset % PAGE === 0 && addrNum + length <= endNum &&
          fileOffset >= place!.offset && fileOffset + length <= place!.end;
        after = addrNum + length;
      }
      pages[k] = {
        addr: addrNum >= 0 && addrNum === startNum ? start : hexAt(words, aw),
        length,
        fileOffset,
      };
    }
    if (count > 0 && !placed) unchecked.push(i);
    out[i] = {
      start,
      end,
      perms: PERMS_TEXT[perms],
      offset,
      kind: MAPPING_KINDS[kind],
      name: texts[name],
      vmFlags,
      pages,
    };
    return false;
  });
  if (nextWhole !== w) refuse(`${w} whole records but ${nextWhole} rows that take one`);
  if (run !== r) refuse(`rows take ${run} of its ${r} page runs`);
  return { mappings: out, unchecked, columns };
}
