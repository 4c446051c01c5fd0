/**
 * The image checksum (CRC-32 as zlib computes it) and a way to get it
 * without reading page data back: the dumper computes the CRC of the page
 * data while streaming it, and {@link checksumAround} reads only the parts
 * before and after it and combines the three CRCs.
 *
 * @module
 */

import { crc32 } from "./crc32.ts";

const POLY = 0xedb88320;

function gf2Times(mat: Uint32Array, vec: number): number {
  let sum = 0;
  for (let i = 0; vec !== 0; i++, vec >>>= 1) if (vec & 1) sum ^= mat[i];
  return sum >>> 0;
}

function gf2Square(square: Uint32Array, mat: Uint32Array): void {
  for (let n = 0; n < 32; n++) square[n] = gf2Times(mat, mat[n]);
}

/**
 * `ZEROS[k]`: the operator that appends 2^k zero bytes to a CRC (a 32x32
 * matrix over GF(2), one column per word), computed once and extended as
 * longer lengths need it.
 */
const ZEROS: Uint32Array[] = [];

function zerosOperator(k: number): Uint32Array {
  if (ZEROS.length === 0) {
    let op = new Uint32Array(32); // one zero bit
    op[0] = POLY;
    for (let n = 1, row = 1; n < 32; n++, row <<= 1) op[n] = row >>> 0;
    for (let i = 0; i < 3; i++) { // 2, 4, 8 zero bits
      const sq = new Uint32Array(32);
      gf2Square(sq, op);
      op = sq;
    }
    ZEROS.push(op);
  }
  while (ZEROS.length <= k) {
    const sq = new Uint32Array(32);
    gf2Square(sq, ZEROS[ZEROS.length - 1]);
    ZEROS.push(sq);
  }
  return ZEROS[k];
}

/**
 * CRC-32 of the concatenation A‖B from crc(A), crc(B) and B's length (as
 * zlib's crc32_combine: crc1 with len2 zero bytes appended, in GF(2), then
 * xor crc2), with the operators for 2^k zero bytes kept between calls.
 */
export function crc32Combine(crc1: number, crc2: number, len2: number): number {
  if (len2 <= 0) return crc1 >>> 0;
  let c = crc1 >>> 0;
  for (let k = 0, len = len2; len !== 0; k++, len = Math.floor(len / 2)) {
    if (len % 2) c = gf2Times(zerosOperator(k), c);
  }
  return (c ^ crc2) >>> 0;
}

/** Formats a CRC the way manifests record it: "crc32:<8 hex digits>". */
export function formatChecksum(crc: number): string {
  return `crc32:${(crc >>> 0).toString(16).padStart(8, "0")}`;
}

/** CRC-32 of [start, end) of `f`, read with synchronous calls (the ranges are small). */
function crcOfRange(f: Deno.FsFile, start: number, end: number): number {
  const buf = new Uint8Array(Math.min(16 << 20, Math.max(end - start, 1)));
  let crc = 0;
  f.seekSync(start, Deno.SeekMode.Start);
  for (let pos = start; pos < end;) {
    const n = f.readSync(buf.subarray(0, Math.min(buf.length, end - pos)));
    if (n === null) throw new Error(`unexpected end of file at ${pos}`);
    crc = crc32(buf.subarray(0, n), crc);
    pos += n;
  }
  return crc >>> 0;
}

/**
 * The checksum of a file whose bytes [pagesStart, pagesEnd) have CRC
 * `pagesCrc` (already known): reads only the rest of the file (the ELF
 * header and bootstrap blob before, the notes after: small, so read with
 * synchronous calls, cheaper than async ones in a fresh Deno).
 */
// deno-lint-ignore require-await
export async function checksumAround(
  path: string,
  pagesStart: number,
  pagesEnd: number,
  pagesCrc: number,
  /**
   * The CRC-32 and length of everything after `pagesEnd`, when the caller
   * knows them (the image writer's `tail`: engine/image/writer.ts): then
   * not read back.
   */
  known?: { crc: number; length: number },
): Promise<string> {
  using f = Deno.openSync(path, { read: true });
  const size = known ? pagesEnd + known.length : f.statSync().size;
  const head = crcOfRange(f, 0, pagesStart);
  const tail = known ? known.crc >>> 0 : crcOfRange(f, pagesEnd, size);
  const withPages = crc32Combine(head, pagesCrc, pagesEnd - pagesStart);
  return formatChecksum(crc32Combine(withPages, tail, size - pagesEnd));
}
