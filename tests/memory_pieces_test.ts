/**
 * The page copy's remote pieces (engine/dump/memory.ts): runs of adjacent
 * readable mappings queued one after the other become one remote piece of
 * process_vm_readv; what lands in the buffers is byte for byte what a read
 * per run gives, across buffer boundaries, gaps and unreadable runs; a
 * merged piece stopped inside is finished as before (a PROT_NONE page
 * through /proc/<pid>/mem, an unmapped one fails the read); with the
 * tree running (`onUnreadable`) nothing is merged, and an unmapped page's
 * zeros stop at its run. The plan's runs of touching readable mappings are
 * saved as one (engine/dump/plan.ts `savePlanned`), each run's record
 * still pointing at its own data. With `noReads` (the buffers all read
 * ahead, the process running again) any read of the process throws.
 *
 * @module
 */

import assert from "node:assert/strict";
import { MemoryStreamer } from "../engine/dump/memory.ts";
import { type PagePlan, savePlanned } from "../engine/dump/plan.ts";
import type { ImageWriter } from "../engine/image/writer.ts";
import type { Mapping, PageRun } from "../engine/model.ts";
import { MemoryPageWriter } from "./helpers/memory_page_writer.ts";
import type { Vma } from "../engine/dump/vmas.ts";
import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";

const PAGE = 4096;

/** `pages` anonymous pages of this process, no two alike. */
function region(pages: number): { base: number; view: Uint8Array } {
  const r = rawSyscall(SYS.mmap, 0, pages * PAGE, 3, 0x22, -1, 0); // rw, MAP_PRIVATE|MAP_ANONYMOUS
  assert.ok(r > 0n, `mmap: ${r}`);
  const base = Number(r);
  const view = new Uint8Array(
    Deno.UnsafePointerView.getArrayBuffer(Deno.UnsafePointer.create(r)!, pages * PAGE),
  );
  for (let i = 0; i < pages; i++) view.fill((i * 7 + 3) & 0xff, i * PAGE, (i + 1) * PAGE);
  for (let i = 0; i < pages; i++) view[i * PAGE + 1] = i >> 8;
  return { base, view };
}

function protect(addr: number, length: number, prot: number): void {
  assert.equal(rawSyscall(SYS.mprotect, addr, length, prot), 0n);
}

/** Streams runs (page index, pages, readable) of `base`; returns the streamer and the output. */
async function stream(
  base: number,
  runs: [number, number, boolean][],
  bufBytes: number,
  onUnreadable?: (addr: bigint, length: number) => void,
) {
  const total = runs.reduce((n, r) => n + r[1] * PAGE, 0);
  const out = new MemoryPageWriter(bufBytes, total);
  let next = 0;
  const s = new MemoryStreamer(Deno.pid, out, (n) => {
    const at = next;
    next += n;
    return at;
  });
  if (onUnreadable) s.onUnreadable = onUnreadable;
  try {
    for (const [page, pages, readable] of runs) {
      const vma = { perms: readable ? "rw-p" : "---p" } as Vma;
      s.saveRun(vma, base + page * PAGE, pages * PAGE);
    }
    await s.finish();
  } catch (e) {
    await s.abort();
    throw e;
  }
  return { s, out: out.out };
}

function expected(view: Uint8Array, runs: [number, number, boolean][]): Uint8Array {
  return new Uint8Array(runs.flatMap(([p, n]) => [...view.subarray(p * PAGE, (p + n) * PAGE)]));
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

Deno.test("page copy: adjacent readable runs are one remote piece, across mappings and buffers", async () => {
  const pages = 700;
  const { base, view } = region(pages);
  try {
    // Every other page read-only: 700 one-page mappings that do not merge (maps-10000's layout).
    for (let i = 1; i < pages; i += 2) protect(base + i * PAGE, PAGE, 1);
    const all: [number, number, boolean][] = [];
    for (let i = 0; i < pages; i++) all.push([i, 1, true]);
    // 1 MiB buffers: 256 pages each, so 3 buffers, one piece each.
    const a = await stream(base, all, 1 << 20);
    assert.ok(same(a.out, expected(view, all)));
    assert.equal(a.s.remotePieces, 3, "one piece per buffer");
    // Gaps, runs of several pages, a run split by a buffer's end, an unreadable run between.
    const mixed: [number, number, boolean][] = [
      [0, 3, true],
      [3, 1, true], // adjacent: merged
      [5, 2, true], // a gap before it: a new piece
      [7, 1, false], // read through /proc/<pid>/mem: the queue drained before it
      [8, 4, true], // adjacent to the unreadable run: a new piece
      [12, 300, true], // crosses the 64 KiB buffers
      [400, 1, true],
      [402, 1, true],
      [403, 1, true],
    ];
    const b = await stream(base, mixed, 16 * PAGE);
    assert.ok(same(b.out, expected(view, mixed)), "64 KiB buffers");
    const c = await stream(base, mixed, 1 << 20);
    assert.ok(same(c.out, expected(view, mixed)), "1 MiB buffers");
    // 0-4, 5-7, 8-312 split at the buffer's end (11 + 245 pages), 400, 402-404.
    assert.equal(c.s.remotePieces, 6);
  } finally {
    rawSyscall(SYS.munmap, base, pages * PAGE);
  }
});
Deno.test("page copy: a merged piece stopped inside is finished as before", async () => {
  const pages = 12;
  const { base, view } = region(pages);
  try {
    const runs: [number, number, boolean][] = [];
    for (let i = 0; i < pages; i++) runs.push([i, 1, true]);
    const whole = expected(view, runs); // (read now: this process may not touch them later)
    // A PROT_NONE page inside: process_vm_readv stops there, /proc/<pid>/mem reads it.
    protect(base + 5 * PAGE, PAGE, 0);
    const a = await stream(base, runs, 1 << 20);
    assert.equal(a.s.remotePieces, 1);
    assert.ok(same(a.out, whole), "the PROT_NONE page read");
    protect(base + 5 * PAGE, PAGE, 3);
    // An unmapped page inside, the dump frozen (nothing may be lost): the read fails, as
    // the read of that run alone did.
    assert.equal(rawSyscall(SYS.munmap, base + 8 * PAGE, PAGE), 0n);
    await assert.rejects(
      () => stream(base, runs, 1 << 20),
      /Input\/output error|cannot read memory at/,
    );
    // With the tree running (a pre-copy: lost pages are copied again) no piece is merged:
    // the unmapped page's zeros are reported and stop at its run, the later runs are read.
    const want = whole.slice();
    want.fill(0, 8 * PAGE, 9 * PAGE);
    const lost: [bigint, number][] = [];
    const b = await stream(base, runs, 1 << 20, (addr, length) => lost.push([addr, length]));
    assert.equal(b.s.remotePieces, 12);
    assert.ok(same(b.out, want), "the runs after the lost page read");
    assert.deepEqual(lost, [[BigInt(base + 8 * PAGE), PAGE]]);
  } finally {
    rawSyscall(SYS.munmap, base, pages * PAGE);
  }
});

Deno.test("page copy: the plan's touching runs read as one, each run's record at its data", async () => {
  const pages = 40;
  const { base, view } = region(pages);
  try {
    for (let i = 1; i < pages; i += 2) protect(base + i * PAGE, PAGE, 1);
    protect(base + 20 * PAGE, PAGE, 0); // unreadable: read through /proc/<pid>/mem, not merged
    const whole = view.slice(0, 20 * PAGE); // (page 20 may not be touched from here now)
    // One mapping per page (perms as set above); runs: pages 0-9, 11-19, 20, 21-25, 30.
    const vmas: Vma[] = [];
    for (let i = 0; i < pages; i++) {
      vmas.push({
        start: BigInt(base + i * PAGE),
        end: BigInt(base + (i + 1) * PAGE),
        perms: i === 20 ? "---p" : i % 2 ? "r--p" : "rw-p",
      } as Vma);
    }
    const reads: number[] = [];
    for (const i of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]) {
      reads.push(i, base + i * PAGE, PAGE);
    }
    for (const i of [21, 22, 23, 24, 25, 30]) reads.push(i, base + i * PAGE, PAGE);
    const plan: PagePlan = {
      pieces: vmas.map(() => []),
      reads,
      readBytes: reads.length / 3 * PAGE,
      reusedBytes: 0,
      parentBytes: 0,
    };
    const out = new MemoryPageWriter(1 << 20, plan.readBytes);
    let next = 0;
    const s = new MemoryStreamer(Deno.pid, out, (n) => {
      const at = next;
      next += n;
      return at;
    });
    // Each record with its start text, as the collect makes it (savePlanned's records take it).
    const mappings = vmas.map((v) => ({
      start: `0x${v.start.toString(16)}`,
      pages: [] as PageRun[],
    })) as unknown as Mapping[];
    let told = 0;
    const later = savePlanned(plan, vmas, mappings, s, undefined as unknown as ImageWriter, (n) => {
      told += n;
    });
    await s.finish();
    later();
    assert.equal(told, plan.readBytes);
    // 0-9, 11-19 (a gap before), 21-25 (after the unreadable one), 30.
    assert.equal(s.remotePieces, 4);
    const saved = mappings.flatMap((m) => m.pages.map((r) => [Number(BigInt(r.addr)), r]));
    assert.equal(saved.length, reads.length / 3, "one record per run");
    for (const [addr, r] of saved as [number, PageRun][]) {
      assert.equal(r.addr, `0x${addr.toString(16)}`, "the address text of the run");
    }
    for (const [addr, r] of saved as [number, PageRun][]) {
      const page = (addr - base) / PAGE;
      const data = out.out.subarray(r.fileOffset, r.fileOffset + r.length);
      if (page < 20) {
        assert.ok(same(data, whole.subarray(page * PAGE, (page + 1) * PAGE)), `${page}`);
      } else if (page > 20) {
        assert.ok(same(data, view.subarray(page * PAGE, (page + 1) * PAGE)), `page ${page}`);
      }
    }
  } finally {
    rawSyscall(SYS.munmap, base, pages * PAGE);
  }
});

Deno.test("memory: with noReads (every buffer read ahead, the process running), a read throws", async () => {
  const { base } = region(4);
  for (const readable of [true, false]) {
    const out = new MemoryPageWriter(2 * PAGE, 4 * PAGE);
    let next = 0;
    const s = new MemoryStreamer(Deno.pid, out, (n) => {
      const at = next;
      next += n;
      return at;
    });
    s.noReads = true;
    await assert.rejects(async () => {
      s.saveRun({ perms: readable ? "rw-p" : "---p" } as Vma, base, 4 * PAGE);
      await s.finish();
    }, /a page read after the pages were read ahead/);
    await s.abort();
  }
  assert.equal(rawSyscall(SYS.munmap, base, 4 * PAGE), 0n);
});
