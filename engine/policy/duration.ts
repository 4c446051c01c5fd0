/**
 * Durations in policies: a number of milliseconds, or text such as `"30s"`,
 * `"1m30s"`, `"500ms"`, `"2h"` or `"1.5s"`.
 *
 * ```ts
 * import { parseDuration } from "./duration.ts";
 * parseDuration("1m30s"); // 90000
 * parseDuration(250); // 250
 * ```
 *
 * @module
 */

/** A duration: milliseconds, or text made of `<number><unit>` parts (units ms, s, m, h, d). */
export type Duration = number | string;

const UNIT_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const PART = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)/y;

/** What a valid duration looks like, for error messages. */
export const DURATION_EXPECTED =
  'expected a duration such as "30s", "1m30s", "500ms", "2h" or a number of milliseconds';

/** Milliseconds of `value`, or `undefined` when it is not a valid duration. */
export function tryParseDuration(value: unknown): number | undefined {
  if (typeof value === "number") {
    return Number.isFinite(value) && value >= 0 ? value : undefined;
  }
  if (typeof value !== "string") return undefined;
  const text = value.trim();
  if (text === "") return undefined;
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < text.length) {
    const at = PART.lastIndex;
    const m = PART.exec(text);
    if (!m || m.index !== at) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]];
    while (text[PART.lastIndex] === " ") PART.lastIndex++;
  }
  return total;
}

/**
 * Milliseconds of a duration; throws a `RangeError` that says what was
 * expected when `value` is not one.
 *
 * ```ts
 * parseDuration("1m30s"); // 90000
 * parseDuration("soon"); // throws RangeError: expected a duration such as "30s", ...
 * ```
 */
export function parseDuration(value: Duration): number {
  const ms = tryParseDuration(value);
  if (ms === undefined) throw new RangeError(`${DURATION_EXPECTED}, got ${JSON.stringify(value)}`);
  return ms;
}
