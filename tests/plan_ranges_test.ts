/**
 * The page plan without a page source (engine/dump/plan.ts `planReads`)
 * plans touching readable mappings of one policy as one range, and
 * `savePlanned` gives each mapping its part of the range's runs: the same
 * records (per mapping, address, length, file offset) and the same data,
 * in the same order, as a plan made mapping by mapping (`runsOfRange` per
 * mapping, the plan before the ranges), on random layouts: gaps,
 * unreadable mappings, three policies, [vsyscall], inherited runs, file
 * regions, and a streamer that does not merge (a running tree).
 *
 * @module
 */

import assert from "node:assert/strict";
import { type PagePlan, planReads, savePlanned } from "../engine/dump/plan.ts";
import type { PagePolicy, Vma } from "../engine/dump/vmas.ts";
import { runsOfRange, type ScanRegion } from "../engine/proc/pagemap_scan.ts";
import type { Mapping, PageRun } from "../engine/model.ts";
import type { MemoryStreamer } from "../engine/dump/memory.ts";
import type { ImageWriter } from "../engine/image/writer.ts";
import type { PageSpan } from "../engine/memory/inherit.ts";
import { Rng } from "../scripts/fuzz/mutate.ts";

const PAGE = 4096;

/** A seeded generator of floats in [0, 1) (the fuzzer's: tests repeat). */
function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

interface Layout {
  vmas: Vma[];
  policies: PagePolicy[];
  regions: ScanRegion[];
  given: Map<number, PageSpan[]>;
}

function layout(seed: number): Layout {
  const r = rng(seed);
  const vmas: Vma[] = [];
  const policies: PagePolicy[] = [];
  const given = new Map<number, PageSpan[]>();
  let at = 0x10000000;
  const n = 5 + Math.floor(r() * 60);
  for (let i = 0; i < n; i++) {
    if (r() < 0.25) at += PAGE * (1 + Math.floor(r() * 3)); // a gap
    const pages = 1 + Math.floor(r() * 4);
    const perms = r() < 0.15 ? "---p" : r() < 0.5 ? "r--p" : "rw-p";
    const path = r() < 0.03 ? "[vsyscall]" : "";
    vmas.push({ start: BigInt(at), end: BigInt(at + pages * PAGE), perms, path } as Vma);
    const p = r();
    policies.push(p < 0.15 ? "none" : p < 0.3 ? "all-present" : "anon-present");
    if (r() < 0.05) given.set(i, [{ addr: BigInt(at), length: PAGE }]);
    at += pages * PAGE;
  }
  // Data pages: random, each anonymous or a file's; regions merged as the kernel's walk is.
  const regions: ScanRegion[] = [];
  for (let a = 0x10000000; a < at; a += PAGE) {
    if (r() < 0.35) continue;
    const anon = r() < 0.8;
    const last = regions[regions.length - 1];
    if (last && last.end === a && last.anon === anon) last.end = a + PAGE;
    else regions.push({ start: a, end: a + PAGE, anon });
  }
  return { vmas, policies, regions, given };
}

/** A streamer stand-in: data laid out in the order saved; records each saved piece. */
function fakeStreamer(merge: boolean) {
  const saved: [number, number][] = [];
  const pieces: [number, number][] = [];
  let offset = 0;
  const s = {
    onUnreadable: merge ? undefined : () => {},
    pieces,
    saveRun(_v: Vma, addr: number, length: number, onBytes?: (n: number) => void) {
      const at = offset;
      pieces.push([addr, length]);
      const last = saved[saved.length - 1];
      if (last && last[0] + last[1] === addr) last[1] += length;
      else saved.push([addr, length]);
      offset += length;
      onBytes?.(length);
      return at;
    },
  };
  return { s: s as unknown as MemoryStreamer & { pieces: [number, number][] }, saved };
}

/** The plan mapping by mapping: each mapping's runs, the data in address order. */
function reference(l: Layout, order: readonly number[]) {
  const pages: { addr: number; length: number; fileOffset: number }[][] = l.vmas.map(() => []);
  let offset = 0;
  for (const k of order) {
    const v = l.vmas[k];
    const runs: { addr: number; length: number }[] = [];
    const given = l.given.get(k);
    if (given) { for (const g of given) runs.push({ addr: Number(g.addr), length: g.length }); }
    else if (l.policies[k] !== "none" && v.path !== "[vsyscall]") {
      runsOfRange(
        l.regions,
        0,
        Number(v.start),
        Number(v.end),
        l.policies[k] === "anon-present",
        runs,
      );
    }
    pages[k] = runs.map((x) => {
      const run = { addr: x.addr, length: x.length, fileOffset: offset };
      offset += x.length;
      return run;
    });
  }
  return { pages, bytes: offset };
}

/** The layout listed backwards (indexes no longer in address order), and its address order. */
function reversed(l: Layout): { l: Layout; order: number[] } {
  const n = l.vmas.length;
  const given = new Map<number, PageSpan[]>();
  for (const [k, g] of l.given) given.set(n - 1 - k, g);
  return {
    l: {
      vmas: [...l.vmas].reverse(),
      policies: [...l.policies].reverse(),
      regions: l.regions,
      given,
    },
    order: l.vmas.map((_, i) => n - 1 - i),
  };
}

/** Plans and saves `l` as the freeze does; checks records and data against {@link reference}. */
function check(l: Layout, order: number[], merge: boolean, what: string): void {
  const { reads, bytes } = planReads(l.vmas, order, l.policies, (k) => l.given.get(k), l.regions);
  const want = reference(l, order);
  assert.equal(bytes, want.bytes, `${what}: bytes`);
  const plan: PagePlan = {
    pieces: l.vmas.map(() => []),
    reads,
    readBytes: bytes,
    reusedBytes: 0,
    parentBytes: 0,
  };
  const mappings = l.vmas.map((v) => ({
    start: `0x${v.start.toString(16)}`,
    pages: [] as PageRun[],
  })) as unknown as Mapping[];
  const { s, saved } = fakeStreamer(merge);
  let told = 0;
  const later = savePlanned(plan, l.vmas, mappings, s, undefined as unknown as ImageWriter, (n) => {
    told += n;
  });
  later();
  assert.equal(told, bytes, `${what}: bytes told`);
  const got = mappings.map((m) =>
    m.pages.map((p) => ({
      addr: Number(BigInt(p.addr)),
      length: p.length,
      fileOffset: p.fileOffset,
    }))
  );
  assert.deepEqual(got, want.pages, `${what}: records`);
  // Each run's address text is the one the image always had: `0x` and lower-case hex.
  for (const m of mappings) {
    for (const p of m.pages) assert.equal(p.addr, `0x${BigInt(p.addr).toString(16)}`, what);
  }
  // The data read: every run, in address order, back to back.
  const flat: [number, number][] = [];
  for (const k of order) {
    for (const x of want.pages[k]) {
      const last = flat[flat.length - 1];
      if (last && last[0] + last[1] === x.addr) last[1] += x.length;
      else flat.push([x.addr, x.length]);
    }
  }
  assert.deepEqual(saved, flat, `${what}: data`);
  if (!merge) {
    // Not merged: no piece saved crosses the end of a mapping.
    for (const [a, n] of s.pieces) {
      const v = l.vmas.find((m) => Number(m.start) <= a && a + n <= Number(m.end));
      assert.ok(v, `${what}: piece ${a.toString(16)}+${n} in one mapping`);
    }
  }
}

for (const merge of [true, false]) {
  Deno.test(`plan ranges: the same records and data as a plan per mapping (${merge ? "merged" : "a running tree"})`, () => {
    for (let seed = 1; seed <= 400; seed++) {
      const l = layout(seed);
      check(l, l.vmas.map((_, i) => i), merge, `seed ${seed}`);
      const r = reversed(l);
      check(r.l, r.order, merge, `seed ${seed}, listed backwards`);
    }
  });
}

Deno.test("plan ranges: touching readable mappings of one policy are one read", () => {
  // 1,000 one-page mappings of alternating protections, every page data: one range, one read.
  const vmas: Vma[] = [];
  const base = 0x20000000;
  for (let i = 0; i < 1000; i++) {
    vmas.push({
      start: BigInt(base + i * PAGE),
      end: BigInt(base + (i + 1) * PAGE),
      perms: i % 2 ? "r--p" : "rw-p",
      path: "",
    } as Vma);
  }
  const order = vmas.map((_, i) => i);
  const policies = vmas.map(() => "anon-present" as PagePolicy);
  const regions = [{ start: base, end: base + 1000 * PAGE, anon: true }];
  const { reads, bytes } = planReads(vmas, order, policies, () => undefined, regions);
  assert.deepEqual(reads, [0, base, 1000 * PAGE]);
  assert.equal(bytes, 1000 * PAGE);
  // Listed out of address order (a list not from maps): mapping by mapping.
  const reversed = [...vmas].reverse();
  const byAddress = reversed.map((_, i) => reversed.length - 1 - i);
  const back = planReads(reversed, byAddress, policies, () => undefined, regions);
  assert.equal(back.reads.length, 3000);
  assert.equal(back.bytes, 1000 * PAGE);
});
