/**
 * Per-block checksums of the page data (engine/image/page_blocks.ts,
 * engine/dump/page_blocks.ts), without a target:
 *
 * - the memory streamer's block CRCs (reading this process's own memory,
 *   buffers not a multiple of the block size, so blocks span flushes) are
 *   the CRCs of the blocks of what it wrote, aligned to its start or, with
 *   `blockPhase`, to an earlier origin;
 * - after a pre-copy, the table is the pre-copy's blocks then the
 *   streamer's, the block they share combined, and equals the blocks of
 *   the whole region; a wrong page CRC leaves the field out;
 * - encoding, validation, and the tie to the whole-file checksum
 *   (`checksumWithBlocks` against `checksumFile`).
 */

import assert from "node:assert/strict";
import * as zlib from "node:zlib";
import { MemoryStreamer } from "../engine/dump/memory.ts";
import { streamedPageBlocks } from "../engine/dump/page_blocks.ts";
import { MemoryPageWriter } from "./helpers/memory_page_writer.ts";
import type { Vma } from "../engine/dump/vmas.ts";
import {
  checksumWithBlocks,
  combineBlocks,
  decodeBlockCrcs,
  encodeBlockCrcs,
  pageBlocksProblem,
  wholeFromParts,
} from "../engine/image/page_blocks.ts";
import { checksumFile } from "../engine/image/writer.ts";

const MIB = 1 << 20;

function random(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13, x ^= x >>> 17, x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function blocksOf(data: Uint8Array, size = MIB): number[] {
  const out: number[] = [];
  for (let o = 0; o < data.length; o += size) {
    out.push(zlib.crc32(data.subarray(o, Math.min(o + size, data.length))) >>> 0);
  }
  return out;
}

/** Streams `data` (this process's memory) from file offset `start` with `phase`. */
async function stream(data: Uint8Array, start: number, phase: number, bufSize: number) {
  const out = new MemoryPageWriter(bufSize, start + data.length);
  let next = start;
  const s = new MemoryStreamer(Deno.pid, out, (n) => {
    const at = next;
    next += n;
    return at;
  });
  s.blockCrcs = [];
  s.blockPhase = phase;
  const addr = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(data)));
  s.saveRuns({ perms: "rw-p" } as Vma, [{ addr, length: data.length }]);
  await s.finish();
  assert.deepEqual(out.out.subarray(start), data, "the streamer wrote the data");
  return s;
}

Deno.test("streamer block CRCs: aligned to its start, across flushes of odd sizes", async () => {
  const data = random(5 * MIB + 7 * 4096, 1);
  for (const buf of [MIB, 3 * MIB + 5 * 4096, 16 * MIB]) {
    const s = await stream(data, 0, 0, buf);
    assert.deepEqual(s.blockCrcs, blocksOf(data), `buffers of ${buf}`);
    assert.equal(s.crc32, zlib.crc32(data) >>> 0);
  }
});

Deno.test("after a pre-copy: the shared block combined, the table is the region's", async () => {
  const all = random(6 * MIB + 3 * 4096, 2);
  for (const preBytes of [2 * MIB, 2 * MIB + 9 * 4096, 4096]) {
    const preData = all.subarray(0, preBytes), rest = all.slice(preBytes);
    const s = await stream(rest, preBytes, preBytes, 3 * MIB + 4096);
    const pre = { pagesEnd: preBytes, pagesBlockCrcs: blocksOf(preData) };
    const crc = zlib.crc32(all) >>> 0;
    const got = streamedPageBlocks(s, 0, all.length, crc, pre).pageBlocks;
    assert.ok(got, `recorded (pre-copy of ${preBytes})`);
    assert.deepEqual([...(decodeBlockCrcs(got.crcs) as Uint32Array)], blocksOf(all));
    assert.deepEqual(streamedPageBlocks(s, 0, all.length, crc ^ 1, pre), {}, "wrong CRC: left out");
    assert.deepEqual(streamedPageBlocks(s, 0, all.length + 4096, crc, pre), {}, "short: left out");
  }
});

Deno.test("page blocks: encoding, validation, and the tie to the file's checksum", async () => {
  const crcs = [0, 1, 0xffffffff, 0x12345678];
  assert.deepEqual([...(decodeBlockCrcs(encodeBlockCrcs(crcs)) as Uint32Array)], crcs);
  assert.equal(typeof decodeBlockCrcs("a*b"), "string");
  assert.equal(typeof decodeBlockCrcs("AAA="), "string"); // 2 bytes: not a whole u32

  const head = random(3 * 4096, 3), pages = random(2 * MIB + 4096, 4), tail = random(777, 5);
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeFile(path, new Uint8Array([...head, ...pages, ...tail]));
    const section = { offset: head.length, size: pages.length };
    const { checksum, pageBlocks } = await checksumWithBlocks(path, section);
    assert.equal(checksum, await checksumFile(path));
    const table = decodeBlockCrcs(pageBlocks.crcs) as Uint32Array;
    assert.deepEqual([...table], blocksOf(pages));
    assert.equal(combineBlocks(table, MIB, pages.length), zlib.crc32(pages) >>> 0);
    const whole = wholeFromParts(
      zlib.crc32(head),
      pageBlocks,
      table,
      zlib.crc32(tail),
      tail.length,
    );
    assert.equal(whole, checksum);
    const size = head.length + pages.length + tail.length;
    assert.equal(pageBlocksProblem(pageBlocks, section, size), undefined);
    const short = { ...pageBlocks, crcs: encodeBlockCrcs(table.subarray(1)) };
    assert.match(pageBlocksProblem(short, section, size)!, /hold 2 checksums.* 3 blocks/);
    assert.match(
      pageBlocksProblem(pageBlocks, { ...section, offset: 0 }, size)!,
      /pageBlocks cover/,
    );
    assert.match(pageBlocksProblem(pageBlocks, section, size - 1000)!, /past the end/);
  } finally {
    await Deno.remove(path);
  }
});
