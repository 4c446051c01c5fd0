import assert from "node:assert/strict";
import * as zlib from "node:zlib";
import { checksumAround, crc32Combine, formatChecksum } from "../engine/image/checksum.ts";
import { checksumFile } from "../engine/image/writer.ts";

function random(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    out.set(crypto.getRandomValues(new Uint8Array(Math.min(65536, n - i))), i);
  }
  return out;
}

Deno.test("crc32Combine equals the CRC of the concatenation", () => {
  for (const [la, lb] of [[0, 5], [5, 0], [1, 1], [1000, 12345], [4096, 1 << 20], [3, 7]]) {
    const a = random(la);
    const b = random(lb);
    const ab = new Uint8Array(la + lb);
    ab.set(a);
    ab.set(b, la);
    assert.equal(
      crc32Combine(zlib.crc32(a), zlib.crc32(b), lb),
      zlib.crc32(ab) >>> 0,
      `${la}+${lb}`,
    );
  }
});

Deno.test("checksumAround with the middle's CRC equals the whole-file checksum", async () => {
  const path = await Deno.makeTempFile({ prefix: "cryo-crc-" });
  try {
    const bytes = random(3 * 4096 + 777);
    await Deno.writeFile(path, bytes);
    const [start, end] = [4096, 3 * 4096];
    const middle = zlib.crc32(bytes.subarray(start, end));
    assert.equal(await checksumAround(path, start, end, middle), await checksumFile(path));
    assert.equal(await checksumFile(path), formatChecksum(zlib.crc32(bytes)));
    // A wrong middle CRC gives a different checksum.
    assert.notEqual(await checksumAround(path, start, end, middle ^ 1), await checksumFile(path));
  } finally {
    await Deno.remove(path);
  }
});

/** zlib's crc32_combine step by step (squaring the zero-bit operator for every call), as reference. */
function combineReference(crc1: number, crc2: number, len2: number): number {
  const times = (mat: Uint32Array, vec: number) => {
    let sum = 0;
    for (let i = 0; vec !== 0; i++, vec >>>= 1) if (vec & 1) sum ^= mat[i];
    return sum >>> 0;
  };
  const square = (sq: Uint32Array, mat: Uint32Array) => {
    for (let n = 0; n < 32; n++) sq[n] = times(mat, mat[n]);
  };
  const even = new Uint32Array(32);
  const odd = new Uint32Array(32);
  odd[0] = 0xedb88320;
  for (let n = 1, row = 1; n < 32; n++, row <<= 1) odd[n] = row >>> 0;
  square(even, odd);
  square(odd, even);
  let c = crc1 >>> 0;
  let len = len2;
  do {
    square(even, odd);
    if (len % 2) c = times(even, c);
    len = Math.floor(len / 2);
    if (len === 0) break;
    square(odd, even);
    if (len % 2) c = times(odd, c);
    len = Math.floor(len / 2);
  } while (len !== 0);
  return (c ^ crc2) >>> 0;
}

Deno.test("crc32Combine with kept operators equals zlib's algorithm up to 2^52 bytes", () => {
  const lengths = [1, 2, 3, 4095, 4096, 65537, 2 ** 31 + 7, 2 ** 32, 2 ** 33 + 12345, 2 ** 52 - 1];
  let x = 0x12345678;
  for (const len of lengths) {
    for (let i = 0; i < 4; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      const y = (Math.imul(x, 69069) + 1) >>> 0;
      assert.equal(crc32Combine(x, y, len), combineReference(x, y, len), `${len}`);
    }
  }
});
