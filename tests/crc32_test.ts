import assert from "node:assert/strict";
import * as zlib from "node:zlib";
import { byteTable, crc32, crc32AfterFold, crc32Table } from "../engine/image/crc32.ts";
import { crc32Fold, foldCode, hasWideFold } from "../ffi/crc32_fold.ts";
import { foldCodeLiteral } from "../ffi/crc32_fold_code.ts";

const random = (n: number) => {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536));
  return out;
};

Deno.test("crc32 equals node:zlib's for every length to 700, offsets and seeds", () => {
  const big = random(4096);
  for (let len = 0; len < 700; len++) {
    for (const off of [0, 1, 3, 8, 13]) {
      const d = big.subarray(off, off + len);
      for (const seed of [0, 1, 0x12345678, 0xedb88320, 0xffffffff]) {
        const want = zlib.crc32(d, seed) >>> 0;
        assert(crc32(d, seed) === want, `len ${len} offset ${off} seed ${seed}`);
        assert(crc32Table(d, seed) === want, `table: len ${len} offset ${off} seed ${seed}`);
      }
    }
  }
});

Deno.test("crc32 of large buffers, in one call and in pieces, equals node:zlib's", () => {
  const data = random((8 << 20) + 77);
  const want = zlib.crc32(data) >>> 0;
  assert(crc32(data) === want);
  let c = 0;
  for (let at = 0; at < data.length;) {
    const n = Math.min(data.length - at, 1 + Math.floor(Math.random() * 300_000));
    c = crc32(data.subarray(at, at + n), c);
    at += n;
  }
  assert(c === want);
  assert(crc32(new Uint8Array(1 << 20)) === (zlib.crc32(new Uint8Array(1 << 20)) >>> 0));
});

Deno.test("crc32 known values (the image format's checksums do not change)", () => {
  const text = new TextEncoder().encode("123456789");
  assert(crc32(text) === 0xcbf43926);
  const long = new TextEncoder().encode("The quick brown fox jumps over the lazy dog. ".repeat(10));
  assert(crc32(long) === (zlib.crc32(long) >>> 0));
});

Deno.test("the fold code is used on this machine when it has PCLMULQDQ, and is small", () => {
  const cpu = Deno.readTextFileSync("/proc/cpuinfo");
  if (Deno.build.arch === "x86_64" && /\bpclmulqdq\b/.test(cpu)) assert(crc32Fold() !== null);
  assert(foldCode().length < 4096);
});

Deno.test("the fold code written as literals is the generator's, for each variant", () => {
  for (const doneFlag of [false, true]) {
    for (const wide of [false, true]) {
      const want = foldCode(doneFlag, wide);
      const got = foldCodeLiteral(doneFlag, wide);
      assert(
        got.length === want.length && got.every((b, i) => b === want[i]),
        `foldCode(${doneFlag}, ${wide}) differs from ffi/crc32_fold_code.ts: run scripts/fold_code.ts`,
      );
    }
  }
});

Deno.test("the byte-wise table written as a literal is the one the polynomial gives", () => {
  const computed = byteTable();
  for (let b = 0; b < 256; b++) {
    // From register 0 (crc 0xffffffff), one byte leaves T1[b] in the register.
    const reg = ~crc32Table(new Uint8Array([b]), 0xffffffff) >>> 0;
    assert(reg === computed[b] >>> 0, `byte ${b}`);
  }
});

Deno.test("the wide (VPCLMULQDQ) fold gives the 16-byte code's CRC for every length and seed", () => {
  const wide = crc32Fold(true);
  const narrow = crc32Fold(false);
  const cpu = Deno.readTextFileSync("/proc/cpuinfo");
  if (Deno.build.arch === "x86_64" && /\bvpclmulqdq\b/.test(cpu) && /\bavx2\b/.test(cpu)) {
    assert(wide !== null && hasWideFold());
  }
  if (!wide || !narrow) return;
  const data = random(70_000);
  const a = new Uint8Array(16), b = new Uint8Array(16);
  const lengths = [64, 128, 240, 256, 272, 384, 400, 512, 1024 + 48, 4096, 65536 + 16 * 7];
  for (let len = 64; len < 1200; len += 16) lengths.push(len);
  for (const len of lengths) {
    for (const off of [0, 1, 5, 16, 33]) {
      for (const init of [0, 0xffffffff, 0x89abcdef]) {
        const d = data.subarray(off, off + len);
        wide(d, len, init, a);
        narrow(d, len, init, b);
        // The remainders may differ (each is only congruent to the bytes); the CRCs may not.
        const none = new Uint8Array(0);
        assert(
          crc32AfterFold(a, none) === crc32AfterFold(b, none),
          `len ${len} offset ${off} init ${init}`,
        );
        assert(crc32AfterFold(a, none) === crc32Table(d, ~init >>> 0), `len ${len} init ${init}`);
      }
    }
  }
  // And the CRCs through both equal node:zlib's.
  for (const len of [256, 300, 1 << 16, (1 << 20) + 7]) {
    const d = random(len);
    assert(crc32(d) === (zlib.crc32(d) >>> 0), `len ${len}`);
  }
});
