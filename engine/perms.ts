/**
 * A mapping's permission text as /proc/<pid>/maps writes it and images keep
 * it (`[r-][w-][x-][ps]`), and its four bits: readable 1, writable 2,
 * executable 4, shared 8. One table of the 16 texts, so that 10,000
 * mappings share a few strings.
 *
 * @module
 */

/**
 * The permission text of each 4-bit value (written out: a table built at
 * import ran a cold callback 16 times in every dump and restore;
 * tests/perms_test.ts checks it against the bits).
 */
export const PERMS_TEXT: readonly string[] = [
  "---p",
  "r--p",
  "-w-p",
  "rw-p",
  "--xp",
  "r-xp",
  "-wxp",
  "rwxp",
  "---s",
  "r--s",
  "-w-s",
  "rw-s",
  "--xs",
  "r-xs",
  "-wxs",
  "rwxs",
];

/** The bits of a permission text given as its four char codes, or -1 when it is not one. */
export function permsBitsOfCodes(r: number, w: number, x: number, p: number): number {
  if (
    (r !== 114 && r !== 45) || (w !== 119 && w !== 45) || (x !== 120 && x !== 45) ||
    (p !== 112 && p !== 115)
  ) return -1;
  return (r === 114 ? 1 : 0) | (w === 119 ? 2 : 0) | (x === 120 ? 4 : 0) | (p === 115 ? 8 : 0);
}

/** The bits of permission text `s` (`^[r-][w-][x-][ps]$`), or -1. */
export function permsBits(s: unknown): number {
  if (typeof s !== "string" || s.length !== 4) return -1;
  return permsBitsOfCodes(s.charCodeAt(0), s.charCodeAt(1), s.charCodeAt(2), s.charCodeAt(3));
}
