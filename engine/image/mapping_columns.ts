/**
 * The values of a mapping list's address texts, remembered from an
 * NT_CRYO_MAPPINGS note's decode (engine/image/mapping_note.ts): each
 * row's `start` and `end` as exact numbers,
 * each beside the very text the decode made of it and put in the record.
 * validate and the restore's compile read a number here instead of parsing
 * its text again (10,000 mappings: 20,000 texts and more, each flattened
 * and parsed once per pass).
 *
 * The records' texts stay the one source of truth: a number is used only
 * where the record still holds the text it was decoded with (`===`, the
 * same string: a pointer compare), and equal texts have equal values. A
 * record changed in place, a list spliced or reordered, a run replaced,
 * only makes its texts be parsed again, never a stale number used
 * ({@link columnAt}).
 *
 * The dump's collect (engine/dump/process.ts) gives its list columns too:
 * the numbers the maps parse read beside each area's bigints
 * (engine/proc/maps.ts `areaNumbers`), each beside the text made of that
 * area's bigint; the note's encoder (mapping_note.ts) then parses no
 * address text of those rows. Every column's text is canonical ("0x",
 * lowercase digits, no leading zero: the reader's `hexAt`, the dump's
 * `toString(16)`), as the encoder requires of the texts it puts in rows.
 *
 * The columns belong to the list object the reader or the collect made (a
 * `WeakMap` by that array): a list made any other way (a test's, a copy)
 * has none and takes the texts' path.
 *
 * @module
 */

import type { Mapping } from "../model.ts";

/** The values of one list's rows' texts; -1 where a row holds none (a whole record, 2^53 or more). */
export interface MappingColumns {
  /** Each mapping's start, or -1. */
  start: Float64Array;
  /** The text each `start` value was decoded as (the record's `start` when it was made). */
  startText: string[];
  /** Each mapping's end, or -1. */
  end: Float64Array;
  /** The text each `end` value was decoded as. */
  endText: string[];
}

const byList = new WeakMap<readonly Mapping[], MappingColumns>();

/** Keeps `columns` as the values of `mappings`' texts (the list the note's decode made). */
export function setMappingColumns(mappings: readonly Mapping[], columns: MappingColumns): void {
  byList.set(mappings, columns);
}

/** The values of `mappings`' texts when it is a list read from an NT_CRYO_MAPPINGS note, else undefined. */
export function mappingColumns(mappings: readonly Mapping[]): MappingColumns | undefined {
  return byList.get(mappings);
}

/**
 * The value of `text`, the `start` or `end` text now in record `i`, from the
 * column `values` / `texts` (a {@link MappingColumns}' `start` and
 * `startText`, or `end` and `endText`): -1 unless the record still holds
 * the text the value was decoded as (then the caller parses the text).
 */
export function columnAt(
  values: Float64Array | undefined,
  texts: readonly string[] | undefined,
  i: number,
  text: string,
): number {
  if (values === undefined || i >= values.length) return -1;
  return texts![i] === text ? values[i] : -1;
}
