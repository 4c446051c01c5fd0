/**
 * engine/dump/page_writer.ts: page data written through the page buffer
 * (ffi/page_file.ts) lands in the file at the offsets given, page aligned
 * or not, nothing else is written, the buffer is page aligned, and a buffer
 * submitted for another offset than the one it was acquired for is refused.
 */

import assert from "node:assert/strict";
import { BufferPageWriter } from "../engine/dump/page_writer.ts";
import { pageAlignedBuffer } from "../ffi/page_file.ts";
import { addressOf } from "../ffi/libc.ts";

Deno.test("page buffers are page aligned", () => {
  for (const size of [4096, 3 * 4096, 1 << 20]) {
    const b = pageAlignedBuffer(size);
    assert.equal(b.length, size);
    assert.equal(addressOf(b) % 4096n, 0n);
    assert.ok(b.every((x) => x === 0));
  }
});

Deno.test("page buffers write their bytes at their offsets, nothing else", async () => {
  const path = await Deno.makeTempFile({ prefix: "cryo-pw-" });
  try {
    await Deno.writeFile(path, new Uint8Array(100).fill(7)); // a header to keep
    const w = new BufferPageWriter(3 * 4096, path);
    const a = w.acquire(8192);
    assert.equal(a.length, 3 * 4096);
    a.fill(1, 0, 4096);
    a.fill(2, 4096, 8192);
    w.submit(8192, 8192);
    const b = w.acquire(16384 + 100); // not page aligned
    b.fill(3, 0, 5000);
    w.submit(5000, 16384 + 100);
    w.acquire(40960);
    assert.throws(() => w.submit(10, 45056), /for 40960 submitted for 45056/);
    await w.close();
    const f = await Deno.readFile(path);
    assert.equal(f.length, 16384 + 100 + 5000, "nothing written past the last submit");
    assert.ok(f.subarray(0, 100).every((x) => x === 7), "header kept");
    assert.ok(f.subarray(100, 8192).every((x) => x === 0), "hole before the pages");
    assert.ok(f.subarray(8192, 12288).every((x) => x === 1));
    assert.ok(f.subarray(12288, 16384).every((x) => x === 2));
    assert.ok(f.subarray(16384, 16484).every((x) => x === 0), "before the unaligned buffer");
    assert.ok(f.subarray(16484, 21484).every((x) => x === 3));
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("a page buffer submitted twice or without acquire is refused", async () => {
  const path = await Deno.makeTempFile({ prefix: "cryo-pw-" });
  try {
    const w = new BufferPageWriter(4096, path);
    assert.throws(() => w.submit(10, 0), /without acquire/);
    w.acquire(0).fill(5, 0, 10);
    w.submit(10, 0);
    assert.throws(() => w.submit(10, 0), /without acquire/);
    await w.close();
    assert.deepEqual(await Deno.readFile(path), new Uint8Array(10).fill(5));
  } finally {
    await Deno.remove(path);
  }
});
