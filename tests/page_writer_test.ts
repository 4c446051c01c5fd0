/**
 * engine/dump/page_writer.ts: page data written through shared-mapped
 * windows of the image file (ffi/file_write_window.ts) lands in the file at
 * the offsets given, windows unaligned to the page included, and a window
 * submitted for another offset than the one it was mapped at is refused.
 */

import assert from "node:assert/strict";
import { MappedPageWriter } from "../engine/dump/page_writer.ts";

Deno.test("mapped page windows write their bytes at their offsets, nothing else", async () => {
  const path = await Deno.makeTempFile({ prefix: "cryo-pw-" });
  try {
    await Deno.writeFile(path, new Uint8Array(100).fill(7)); // a header to keep
    const w = new MappedPageWriter(3 * 4096, path);
    const a = w.acquire(8192);
    assert.equal(a.length, 3 * 4096);
    a.fill(1, 0, 4096);
    a.fill(2, 4096, 8192);
    w.submit(8192, 8192);
    const b = w.acquire(16384 + 100); // not page aligned
    b.fill(3, 0, 5000);
    w.submit(5000, 16384 + 100);
    const c = w.acquire(40960);
    assert.throws(() => w.submit(10, 45056), /mapped at 40960 submitted for 45056/);
    c.fill(9, 0, 1); // the refused window is still this writer's
    await w.close();
    const f = await Deno.readFile(path);
    assert.ok(f.length >= 16384 + 100 + 5000);
    assert.ok(f.subarray(0, 100).every((x) => x === 7), "header kept");
    assert.ok(f.subarray(100, 8192).every((x) => x === 0), "hole before the pages");
    assert.ok(f.subarray(8192, 12288).every((x) => x === 1));
    assert.ok(f.subarray(12288, 16384).every((x) => x === 2));
    assert.ok(f.subarray(16384, 16484).every((x) => x === 0), "before the unaligned window");
    assert.ok(f.subarray(16484, 21484).every((x) => x === 3));
    assert.ok(f.subarray(21484, 40960).every((x) => x === 0), "unwritten part of a window");
  } finally {
    await Deno.remove(path);
  }
});
