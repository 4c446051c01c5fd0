/**
 * Hex values of the image model as numbers where that is exact: an image
 * of 10,000 mappings has tens of thousands of addresses, and a `bigint`
 * for each costs more than the checks that use it. A value of 13 hex
 * digits or fewer (below 2^52: every user-space address) is a number, a
 * longer one a `bigint`; `<`, `>` and `===`-free comparisons work on
 * either mix, arithmetic goes through the helpers below.
 *
 * @module
 */

/** A value that {@link hexNum} gives. */
export type HexNum = number | bigint;

/** The text last given to {@link hexNum}, and its value. */
let lastText = "";
let lastValue: HexNum = NaN;

/**
 * `h` ("0x..." hex, as the schema checks) as a number when exact, else a
 * bigint. The last text is remembered: a mapping's start is mostly the
 * text of the end before it (10,000 mappings side by side, parsed in
 * order), and comparing two short strings costs less than parsing one.
 */
export function hexNum(h: string): HexNum {
  if (h === lastText) return lastValue;
  const v = h.length <= 15 ? parseInt(h, 16) : BigInt(h);
  lastText = h;
  lastValue = v;
  return v;
}

/** `a + n`, exact. */
export function hexPlus(a: HexNum, n: number): HexNum {
  if (typeof a === "number" && Number.isSafeInteger(a + n)) return a + n;
  return BigInt(a) + BigInt(n);
}

/** `a - b`, exact. */
export function hexMinus(a: HexNum, b: HexNum): HexNum {
  return typeof a === "number" && typeof b === "number" ? a - b : BigInt(a) - BigInt(b);
}

/** Whether `a` is a multiple of `unit` (a power of two). */
export function hexAligned(a: HexNum, unit: number): boolean {
  return typeof a === "number" ? a % unit === 0 : a % BigInt(unit) === 0n;
}
