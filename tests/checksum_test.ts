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
