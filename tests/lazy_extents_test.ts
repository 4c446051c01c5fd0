/**
 * The lazy server's plan (engine/memory/lazy_extents.ts): pending saved
 * pages as extents, one per run whatever the size, split by faults, eaten
 * by the background pass, removed and moved as the program unmaps, drops
 * and remaps memory. Pure data: no process.
 */

import assert from "node:assert/strict";
import { PendingPages } from "../engine/memory/lazy_extents.ts";

const P = 4096;
const GiB = 1 << 30;

/** Every pending page as [address, file offset]. */
function pagesOf(p: PendingPages, lo = 0, hi = 2 ** 47): [number, number][] {
  const out: [number, number][] = [];
  for (const e of p.within(lo, hi)) {
    for (let a = e.start; a < e.end; a += P) out.push([a, e.fileOffset + (a - e.start)]);
  }
  return out;
}

Deno.test("lazy plan: one extent per run, whatever the size of the run", () => {
  const small = PendingPages.fromRuns([{ addr: 0x10000n, length: 64 << 20, fileOffset: 8192 }]);
  const big = PendingPages.fromRuns([{ addr: 0x10000n, length: 2 * GiB, fileOffset: 8192 }]);
  assert.equal(small.entries, 1);
  assert.equal(big.entries, 1);
  assert.equal(big.pages, (2 * GiB) / P);
  assert.deepEqual(big.at(0x10000 + 5 * P, 16), { pages: 16, fileOffset: 8192 + 5 * P });
  assert.deepEqual(big.at(0x10000 + 2 * GiB - 2 * P, 16), {
    pages: 2,
    fileOffset: 8192 + 2 * GiB - 2 * P,
  });
  assert.equal(big.at(0x10000 - P, 16), undefined);
  assert.equal(big.at(0x10000 + 2 * GiB, 16), undefined);
});

Deno.test("lazy plan: faults split, the background pass eats from the lowest address", () => {
  const p = PendingPages.fromRuns([
    { addr: 0x200000n, length: 8 * P, fileOffset: 100 * P },
    { addr: 0x100000n, length: 4 * P, fileOffset: 10 * P }, // given out of order
  ]);
  assert.equal(p.pages, 12);
  assert.equal(p.first(), 0x100000);
  // A fault in the middle of the second run: two pages copied.
  assert.equal(p.remove(0x200000 + 3 * P, 0x200000 + 5 * P), 2);
  assert.equal(p.entries, 3);
  assert.equal(p.at(0x200000 + 3 * P, 16), undefined);
  assert.deepEqual(p.at(0x200000 + 5 * P, 16), { pages: 3, fileOffset: 105 * P });
  assert.deepEqual(p.at(0x200000, 16), { pages: 3, fileOffset: 100 * P });
  // Background chunks, in address order.
  const order: number[] = [];
  for (let a = p.first(); a !== undefined; a = p.first()) {
    const at = p.at(a, 2)!;
    order.push(a);
    p.remove(a, a + at.pages * P);
  }
  assert.deepEqual(order, [
    0x100000,
    0x100000 + 2 * P,
    0x200000,
    0x200000 + 2 * P,
    0x200000 + 5 * P,
    0x200000 + 7 * P,
  ]);
  assert.equal(p.pages, 0);
  assert.equal(p.entries, 0);
});

Deno.test("lazy plan: munmap and madvise ranges are removed across extents", () => {
  const p = PendingPages.fromRuns([
    { addr: 0x100000n, length: 4 * P, fileOffset: 0 },
    { addr: 0x100000n + BigInt(6 * P), length: 4 * P, fileOffset: 4 * P },
  ]);
  assert.equal(p.remove(0x100000 + 2 * P, 0x100000 + 8 * P), 4);
  assert.deepEqual(pagesOf(p), [
    [0x100000, 0],
    [0x100000 + P, P],
    [0x100000 + 8 * P, 6 * P],
    [0x100000 + 9 * P, 7 * P],
  ]);
  assert.equal(p.remove(0x300000, 0x400000), 0, "outside every extent");
});

Deno.test("lazy plan: mremap moves the pending pages with their file offsets", () => {
  const p = PendingPages.fromRuns([
    { addr: 0x100000n, length: 8 * P, fileOffset: 0 },
    { addr: 0x900000n, length: 2 * P, fileOffset: 8 * P }, // the destination's old plan
  ]);
  p.remove(0x100000 + P, 0x100000 + 2 * P); // one page in already
  // Pages 0..3 move to 0x900000 (replacing what was there).
  const moved = p.extract(0x100000, 0x100000 + 4 * P);
  p.remove(0x900000, 0x900000 + 4 * P);
  const by = 0x900000 - 0x100000;
  p.insert(moved.map((e) => ({ ...e, start: e.start + by, end: e.end + by })));
  assert.deepEqual(pagesOf(p), [
    [0x100000 + 4 * P, 4 * P],
    [0x100000 + 5 * P, 5 * P],
    [0x100000 + 6 * P, 6 * P],
    [0x100000 + 7 * P, 7 * P],
    [0x900000, 0],
    [0x900000 + 2 * P, 2 * P],
    [0x900000 + 3 * P, 3 * P],
  ]);
  assert.equal(p.pages, 7);
  assert.equal(p.first(), 0x100000 + 4 * P);
});

Deno.test("lazy plan: a lower range moved in after the pass went by is still served", () => {
  const p = PendingPages.fromRuns([
    { addr: 0x800000n, length: 4 * P, fileOffset: 0 },
    { addr: 0x900000n, length: 4 * P, fileOffset: 4 * P },
  ]);
  p.remove(0x800000, 0x800000 + 4 * P); // the pass is past the first run
  assert.equal(p.first(), 0x900000);
  const moved = p.extract(0x900000, 0x900000 + 2 * P);
  p.insert(moved.map((e) => ({ ...e, start: e.start - 0x800000, end: e.end - 0x800000 })));
  assert.equal(p.first(), 0x100000);
  assert.deepEqual(p.at(0x100000, 16), { pages: 2, fileOffset: 4 * P });
  assert.equal(p.pages, 4);
});

Deno.test("lazy plan: many faults then a compaction keep it exact; clone and flat form", () => {
  const n = 1000;
  const p = PendingPages.fromRuns([{ addr: 0n, length: n * P, fileOffset: 0 }]);
  for (let i = 1; i < n; i += 2) p.remove(i * P, (i + 1) * P); // every odd page
  assert.equal(p.entries, n / 2);
  const c = p.clone();
  for (let i = 0; i < n; i += 4) p.remove(i * P, (i + 1) * P); // every fourth page
  assert.equal(p.pages, n / 4);
  assert.deepEqual(pagesOf(p).map(([a]) => a / P), [...Array(n / 4).keys()].map((k) => 4 * k + 2));
  assert.ok(pagesOf(p).every(([a, off]) => a === off), "offsets follow the addresses");
  assert.equal(c.pages, n / 2, "the clone is independent");
  assert.deepEqual(PendingPages.fromFlat(p.toFlat()).toFlat(), p.toFlat());
  p.clear();
  assert.equal(p.first(), undefined);
});

Deno.test("lazy plan: a range moved over pages already in (emptied extents) is found again", () => {
  const p = PendingPages.fromRuns([
    { addr: 0x100000n, length: 16 * P, fileOffset: 0 },
    { addr: 0x900000n, length: 2 * P, fileOffset: 16 * P },
    { addr: 0x900000n + BigInt(4 * P), length: 2 * P, fileOffset: 18 * P },
  ]);
  p.remove(0x900000, 0x900000 + 2 * P); // in already: an emptied extent at 0x900000
  // mremap of 16 pages from 0x100000 to 0x8f8000: over both extents at 0x900000.
  const to = 0x900000 - 8 * P;
  const moved = p.extract(0x100000, 0x100000 + 16 * P);
  p.remove(to, to + 16 * P);
  p.insert(
    moved.map((e) => ({ ...e, start: e.start + to - 0x100000, end: e.end + to - 0x100000 })),
  );
  assert.equal(p.pages, 16);
  for (let k = 0; k < 16; k++) {
    assert.deepEqual(p.at(to + k * P, 1), { pages: 1, fileOffset: k * P }, `page ${k}`);
  }
  const order: number[] = [];
  for (let a = p.first(); a !== undefined; a = p.first()) {
    order.push(a);
    p.remove(a, a + p.at(a, 4)!.pages * P);
  }
  assert.deepEqual(order, [0, 4, 8, 12].map((k) => to + k * P));
});
