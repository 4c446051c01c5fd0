/**
 * Long one-shot passes without a long loop in JS code. A loop that runs
 * 10,000 rounds once (a pass over an image's 10,000 mappings) is compiled
 * by V8 for on-stack replacement while it runs, twice (Maglev, then
 * TurboFan) and on its worker threads, as a whole function with what it
 * inlines: for a maps-10000 restore ~70 ms of CPU beside cryo's main thread
 * (on 2 vCPUs, in its way), mostly for code that is ready after the pass
 * is over. The loop of `Array.prototype.findIndex` is V8's own, compiled
 * already; the test it calls is a small function that V8 optimizes the
 * ordinary way, once. `findIndex` visits every index in order, holes too
 * (as `undefined`), as an indexed loop does. Passes counted by index use
 * a typed array's `findIndex` the same way ({@link findIndexBelow}).
 *
 * @module
 */

/**
 * The first index in `[from, to)` of `items` for which `test` is true, or
 * -1; `test` sees the items in order (holes as `undefined`), with their
 * index in `items`, as `for (let k = from; k < to; k++)` would, and none
 * after the first true. Slices of doubling length are searched, so a run
 * from `from` costs what its own length does (`to` defaults to the end;
 * beyond it is the end).
 */
export function findFrom<T>(
  items: readonly T[],
  test: (item: T, index: number) => boolean,
  from = 0,
  to = items.length,
): number {
  const end = Math.min(to, items.length);
  if (from === 0 && end === items.length) return items.findIndex(test);
  let chunk = 16;
  for (let at = from; at < end; at += chunk, chunk *= 2) {
    const base = at;
    const k = items.slice(at, Math.min(at + chunk, end)).findIndex((x, j) => test(x, base + j));
    if (k >= 0) return base + k;
  }
  return -1;
}

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
