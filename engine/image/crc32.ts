/**
 * CRC-32 with zlib's polynomial and conventions (`crc32(data, crc)` equals
 * node:zlib's `crc32(data, crc)`), without node:zlib: loading it brings in
 * Deno's Node compatibility layer, ~50 ms of CPU at every start of a
 * command. Buffers of 64 bytes or more are folded by PCLMULQDQ code
 * (ffi/crc32_fold.ts) and finished here with a table; shorter ones, and
 * every buffer on a machine without PCLMULQDQ, go through the table
 * (slicing by 8).
 *
 * @module
 */

import { crc32Fold } from "../../ffi/crc32_fold.ts";

const POLY = 0xedb88320;

/** T[k*256 + b]: the CRC register after byte b followed by k zero bytes (slicing by 8). */
const T = (() => {
  const t = new Int32Array(8 * 256);
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[b] = c;
  }
  for (let b = 0; b < 256; b++) {
    for (let k = 1; k < 8; k++) {
      t[k * 256 + b] = (t[(k - 1) * 256 + b] >>> 8) ^ t[t[(k - 1) * 256 + b] & 0xff];
    }
  }
  return t;
})();

/** The CRC register (not inverted) after `data[from, to)` from register `c`. */
function tableUpdate(c: number, data: Uint8Array, from: number, to: number): number {
  let i = from;
  for (; i + 8 <= to; i += 8) {
    const lo = c ^ (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24));
    c = T[1792 + (lo & 0xff)] ^ T[1536 + ((lo >>> 8) & 0xff)] ^
      T[1280 + ((lo >>> 16) & 0xff)] ^ T[1024 + (lo >>> 24)] ^
      T[768 + data[i + 4]] ^ T[512 + data[i + 5]] ^ T[256 + data[i + 6]] ^ T[data[i + 7]];
  }
  for (; i < to; i++) c = T[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return c;
}

/** Buffers shorter than this are not worth an FFI call. */
const FOLD_MIN = 64;

const remainder = new Uint8Array(16);

/**
 * The CRC-32 of `data` continuing from `crc` (the CRC of the bytes before
 * it; 0 for none), as zlib computes it: an unsigned 32-bit number.
 */
export function crc32(data: Uint8Array, crc = 0): number {
  let c = ~crc;
  const n = data.length;
  const fold = n >= FOLD_MIN ? crc32Fold() : null;
  if (fold === null) return ~tableUpdate(c, data, 0, n) >>> 0;
  const bulk = n - (n % 16);
  fold(data, bulk, c >>> 0, remainder);
  c = tableUpdate(0, remainder, 0, 16);
  return ~tableUpdate(c, data, bulk, n) >>> 0;
}

/**
 * The CRC-32 of a buffer whose first bytes (a multiple of 16, at least 64)
 * were folded into `remainder` (ffi/crc32_fold.ts, from the register `~crc`
 * of the bytes before them) and whose last bytes are `tail`.
 */
export function crc32AfterFold(remainder: Uint8Array, tail: Uint8Array): number {
  return ~tableUpdate(tableUpdate(0, remainder, 0, 16), tail, 0, tail.length) >>> 0;
}

/** The CRC-32 computed in JavaScript only (the table), for tests and comparisons. */
export function crc32Table(data: Uint8Array, crc = 0): number {
  return ~tableUpdate(~crc, data, 0, data.length) >>> 0;
}
