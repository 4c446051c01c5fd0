/**
 * Passes counted by index, without a loop of their own in JS code. A
 * function whose loop runs 10,000 rounds once (a pass over a dump's 10,000
 * mappings, the lines of their maps text) is compiled by V8 for on-stack
 * replacement while the loop runs, on its worker threads, as a whole with
 * what it inlines (engine/find_from.ts tells why that costs a no-sync dump
 * of 10,000 mappings tens of ms of CPU). Here the rounds are those of
 * `TypedArray.prototype.findIndex`, V8's own loop.
 *
 * @module
 */

/**
 * The first `k` in `[0, count)` for which `test(k)` is true, or -1; `test`
 * sees the indexes in order, none after the first true (as
 * `for (let k = 0; k < count; k++) if (test(k)) return k;` would).
 */
export function findIndexBelow(count: number, test: (k: number) => boolean): number {
  if (!(count > 0)) return -1;
  return new Uint8Array(count).findIndex((_, k) => test(k));
}

/**
 * How many bytes of `bytes` are `byte` (e.g. the lines of a maps text):
 * found by `indexOf`, counted in rounds of doubling length (a text of few
 * lines allocates little).
 */
export function countByte(bytes: Uint8Array, byte: number): number {
  let at = -1, counted = 0;
  const next = () => (at = bytes.indexOf(byte, at + 1)) < 0;
  for (let rounds = 256;; rounds *= 2) {
    const k = findIndexBelow(rounds, next);
    if (k >= 0) return counted + k;
    counted += rounds;
  }
}
