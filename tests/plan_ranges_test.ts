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

const PAGE = 4096;

/** A small deterministic generator (tests repeat). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
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
  let offset = 0;
  const s = {
    onUnreadable: merge ? undefined : () => {},
    saveRun(_v: Vma, addr: number, length: number, onBytes?: (n: number) => void) {
      const at = offset;
      const last = saved[saved.length - 1];
      if (last && last[0] + last[1] === addr) last[1] += length;
      else saved.push([addr, length]);
      offset += length;
      onBytes?.(length);
      return at;
    },
  };
  return { s: s as unknown as MemoryStreamer, saved };
}

/** The plan mapping by mapping: each mapping's runs, the data in address order. */
function reference(l: Layout) {
  const pages: { addr: number; length: number; fileOffset: number }[][] = [];
  let offset = 0;
  for (let k = 0; k < l.vmas.length; k++) {
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
    pages.push(runs.map((x) => {
      const run = { addr: x.addr, length: x.length, fileOffset: offset };
      offset += x.length;
      return run;
    }));
  }
  return { pages, bytes: offset };
}

for (const merge of [true, false]) {
  Deno.test(`plan ranges: the same records and data as a plan per mapping (${merge ? "merged" : "a running tree"})`, () => {
    for (let seed = 1; seed <= 400; seed++) {
      const l = layout(seed);
      const order = l.vmas.map((_, i) => i);
      const { reads, bytes } = planReads(
        l.vmas,
        order,
        l.policies,
        (k) => l.given.get(k),
        l.regions,
      );
      const want = reference(l);
      assert.equal(bytes, want.bytes, `seed ${seed}: bytes`);
      const plan: PagePlan = {
        pieces: l.vmas.map(() => []),
        reads,
        readBytes: bytes,
        reusedBytes: 0,
        parentBytes: 0,
      };
      const mappings = l.vmas.map(() => ({ pages: [] as PageRun[] })) as unknown as Mapping[];
      const { s, saved } = fakeStreamer(merge);
      let told = 0;
      const later = savePlanned(
        plan,
        l.vmas,
        mappings,
        s,
        undefined as unknown as ImageWriter,
        (n) => {
          told += n;
        },
      );
      later();
      assert.equal(told, bytes, `seed ${seed}: bytes told`);
      const got = mappings.map((m) =>
        m.pages.map((p) => ({
          addr: Number(BigInt(p.addr)),
          length: p.length,
          fileOffset: p.fileOffset,
        }))
      );
      assert.deepEqual(got, want.pages, `seed ${seed}: records`);
      // The data read: every run, in address order, back to back.
      const flat: [number, number][] = [];
      for (const runs of want.pages) {
        for (const x of runs) {
          const last = flat[flat.length - 1];
          if (last && last[0] + last[1] === x.addr) last[1] += x.length;
          else flat.push([x.addr, x.length]);
        }
      }
      assert.deepEqual(saved, flat, `seed ${seed}: data`);
      if (!merge) {
        // Not merged: no piece saved crosses the end of a mapping.
        for (const [a, n] of saved) {
          const v = l.vmas.find((m) => Number(m.start) <= a && a < Number(m.end))!;
          assert.ok(v, `seed ${seed}: a piece in a mapping`);
        }
      }
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
