/**
 * The dump's passes over 10,000 mappings without a loop of their own in JS
 * code (issue 10, seventh pass, branch dumposr: no function for V8 to
 * compile for on-stack replacement on its workers): each rewritten pass
 * gives what its indexed loop gave, kept here as the reference, on random
 * and damaged inputs (no processes).
 *
 * @module
 */

import assert from "node:assert/strict";
import { countByte, findIndexBelow } from "../engine/find_from.ts";
import {
  executableText,
  gapOf,
  type MapEntry,
  parseMaps,
  parseMapsLine,
} from "../engine/proc/maps.ts";
import { inAddressOrder, type PagePolicy, type Vma } from "../engine/dump/vmas.ts";
import { vmaRecordsOf } from "../engine/proc/vma_flags_bpf.ts";
import { VMA_RECORD_SIZE } from "../ffi/bpf.ts";
import { flagsOfMaps, type SmapsArea } from "../engine/proc/smaps_flags.ts";
import { planReads } from "../engine/dump/plan.ts";
import { runsOfRangeFlat, type ScanRegion } from "../engine/proc/pagemap_scan.ts";
import type { PageSpan } from "../engine/memory/inherit.ts";
import { ProcFormatError } from "../engine/proc/errors.ts";

let seed = 1207;
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
const PAGE = 4096;

Deno.test("findIndexBelow and countByte: what their indexed loops give", () => {
  for (let round = 0; round < 500; round++) {
    const count = pick([0, 1, 2, 255, 256, 257, 1000]);
    const stop = rnd() < 0.5 ? -1 : Math.floor(rnd() * (count + 2));
    const seen: number[] = [];
    const got = findIndexBelow(count, (k) => (seen.push(k), k === stop));
    let want = -1;
    const wantSeen: number[] = [];
    for (let k = 0; k < count; k++) {
      wantSeen.push(k);
      if (k === stop) {
        want = k;
        break;
      }
    }
    assert.equal(got, want);
    assert.deepEqual(seen, wantSeen);
  }
  for (let round = 0; round < 300; round++) {
    const n = pick([0, 1, 255, 256, 257, 767, 768, 769, 5000]);
    const p = rnd();
    const bytes = new Uint8Array(n).map(() => (rnd() < p ? 10 : 65));
    let want = 0;
    for (let i = bytes.indexOf(10); i >= 0; i = bytes.indexOf(10, i + 1)) want++;
    assert.equal(countByte(bytes, 10), want, `n=${n}`);
    assert.equal(countByte(bytes.subarray(1), 10), want - (bytes[0] === 10 ? 1 : 0));
  }
});

/** A random maps line (sometimes damaged). */
function mapsLine(at: bigint): [string, bigint] {
  const size = BigInt(PAGE * (1 + Math.floor(rnd() * 4)));
  const perms = pick(["r--p", "rw-p", "r-xp", "---p", "rw-s", "r-xs"]);
  const path = pick(["", "", "/usr/lib/libc.so.6", "[heap]", "/memfd:x (deleted)", "[vdso]"]);
  let line = `${at.toString(16)}-${(at + size).toString(16)} ${perms} ` +
    `${pick(["00000000", "00001000"])} ${pick(["00:00", "fe:01"])} ${
      path.startsWith("/") ? 1234 : 0
    }${path ? " ".repeat(1 + Math.floor(rnd() * 20)) + path : " "}`;
  if (rnd() < 0.01) line = line.slice(0, Math.floor(rnd() * line.length)); // cut short
  if (rnd() < 0.005) line = line.replace("-", "+"); // a bad address
  return [line, at + size + (rnd() < 0.5 ? 0n : BigInt(PAGE * Math.floor(rnd() * 1e6)))];
}

/** engine/proc/maps.ts parseMaps as its loop was (before this pass): the reference. */
function referenceParseMaps(text: string): MapEntry[] | string {
  const out: MapEntry[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const e = parseMapsLine(line);
    if (!e) return `bad maps line ${JSON.stringify(line)}`;
    out.push(e);
  }
  return out;
}

/** Random area lists (start-sorted, sometimes not, some above user space). */
function randomAreas(n: number): MapEntry[] {
  const out: MapEntry[] = [];
  let at = BigInt(0x10000 + Math.floor(rnd() * 1e6) * PAGE);
  for (let i = 0; i < n; i++) {
    const [line, next] = mapsLine(at);
    const e = (() => {
      try {
        return parseMaps(line)[0];
      } catch {
        return undefined;
      }
    })();
    if (e) out.push(e);
    at = next;
    if (rnd() < 0.02) at = 0x800000000000n + BigInt(Math.floor(rnd() * 100) * PAGE);
    if (rnd() < 0.02) at = BigInt(Math.floor(rnd() * 1e6) * PAGE); // out of order
  }
  return out;
}

Deno.test("parseMaps: the same areas, or the same first bad line, as its loop", () => {
  let refused = 0;
  for (let round = 0; round < 400; round++) {
    const lines: string[] = [];
    let at = BigInt(0x10000 + Math.floor(rnd() * 1e6) * PAGE);
    const n = pick([0, 1, 2, 10, 100, 700]);
    for (let i = 0; i < n; i++) {
      const [line, next] = mapsLine(at);
      lines.push(rnd() < 0.01 ? "" : line);
      at = next;
    }
    const text = lines.join("\n") + (rnd() < 0.8 ? "\n" : "");
    const want = referenceParseMaps(text);
    let got: MapEntry[] | string;
    try {
      got = parseMaps(text, 7, "maps");
    } catch (e) {
      assert.ok(e instanceof ProcFormatError);
      got = e.message.slice(e.message.indexOf("bad maps line"));
      refused++;
    }
    assert.deepEqual(got, want);
  }
  assert.ok(refused > 10, `${refused} refused`);
});

/** maps.ts gapOf as its loop was: the reference. */
function referenceGap(areas: readonly MapEntry[]): { start: bigint; size: bigint } {
  let best = 0, bestI = 0;
  for (let i = 1; i < areas.length; i++) {
    if (areas[i].start >= 0x800000000000n) break;
    const size = Number(areas[i].start) - Number(areas[i - 1].end);
    if (size > best) {
      best = size;
      bestI = i;
    }
  }
  if (bestI === 0) return { start: 0n, size: 0n };
  return { start: areas[bestI - 1].end, size: areas[bestI].start - areas[bestI - 1].end };
}

/** maps.ts executableText as its loop was: the reference. */
function referenceExecutable(areas: readonly MapEntry[]): string {
  let out = "";
  for (const a of areas) {
    if (a.perms[0] !== "r" || a.perms[2] !== "x") continue;
    out += `${a.start.toString(16)}-${a.end.toString(16)} ${a.perms} ` +
      `${a.offset.toString(16).padStart(8, "0")} ${a.dev} ${a.inode} ${a.path}\n`;
  }
  return out;
}

Deno.test("gapOf, executableText, inAddressOrder: what their loops give", () => {
  let unordered = 0;
  for (let round = 0; round < 400; round++) {
    const areas = randomAreas(pick([0, 1, 2, 3, 20, 300]));
    assert.deepEqual(gapOf(areas), referenceGap(areas));
    assert.equal(executableText(areas), referenceExecutable(areas));
    let ordered = true;
    for (let i = 1; i < areas.length; i++) {
      if (!(areas[i - 1].start < areas[i].start)) ordered = false;
    }
    if (!ordered) unordered++;
    assert.equal(inAddressOrder([...areas] as unknown as Vma[]), ordered);
  }
  assert.ok(unordered > 20, `${unordered} out of order`);
});

Deno.test("vmaRecordsOf and flagsOfMaps: what their loops give", () => {
  for (let round = 0; round < 200; round++) {
    const count = pick([0, 1, 5, 1365, 1366]);
    const bytes = new Uint8Array(count * VMA_RECORD_SIZE);
    const all = new BigUint64Array(bytes.buffer);
    for (let i = 0; i < all.length; i++) all[i] = BigInt(Math.floor(rnd() * 2 ** 40));
    const r = vmaRecordsOf(bytes);
    assert.equal(r.count, count);
    const words = VMA_RECORD_SIZE / 8;
    for (let i = 0; i < count; i++) {
      assert.equal(r.start[i], all[words * i]);
      assert.equal(r.end[i], all[words * i + 1]);
      assert.equal(r.flags[i], all[words * i + 2]);
    }
  }
  for (let round = 0; round < 300; round++) {
    const maps = randomAreas(pick([0, 1, 4, 50]));
    const smaps = maps.map((m) => ({ ...m, vmFlags: [pick(["rd", "wr", "mr"])] })) as SmapsArea[];
    const change = rnd();
    if (change < 0.2 && smaps.length) smaps.pop();
    else if (change < 0.4 && smaps.length) smaps.push({ ...smaps[0], vmFlags: [] } as SmapsArea);
    else if (change < 0.6 && smaps.length) {
      const k = Math.floor(rnd() * smaps.length);
      smaps[k] = { ...smaps[k], perms: "----" };
    }
    // The reference: the first index where the lists differ, as the loop found it.
    let want: string | undefined;
    for (let i = 0; i < Math.max(maps.length, smaps.length); i++) {
      if (
        i < maps.length && i < smaps.length && maps[i].start === smaps[i].start &&
        maps[i].perms === smaps[i].perms && maps[i].end === smaps[i].end
      ) continue;
      want = `area ${i} was`;
      break;
    }
    let got: string | undefined;
    try {
      assert.deepEqual(flagsOfMaps(7, maps, smaps), smaps.map((a) => a.vmFlags));
    } catch (e) {
      if (!(e instanceof ProcFormatError)) throw e;
      got = e.message.match(/area \d+ was/)?.[0];
    }
    assert.equal(got, want);
  }
});

/** engine/dump/plan.ts planReads as its loop was (before this pass): the reference. */
function referencePlanReads(
  vmas: readonly Vma[],
  order: readonly number[],
  policies: readonly PagePolicy[],
  inherited: (index: number) => PageSpan[] | undefined,
  regions: readonly ScanRegion[],
): { reads: number[]; bytes: number } {
  const wanted = (k: number) => policies[k] !== "none" && vmas[k].path !== "[vsyscall]";
  let cursor = 0;
  const reads: number[] = [];
  for (let o = 0; o < order.length; o++) {
    const k = order[o];
    const given = inherited(k);
    if (given) {
      for (const r of given) reads.push(k, Number(r.addr), r.length);
    } else if (wanted(k)) {
      const v = vmas[k], policy = policies[k];
      let end = Number(v.end);
      if (v.perms[0] === "r") {
        for (let next = k + 1; o + 1 < order.length && order[o + 1] === next; next++, o++) {
          const w = vmas[next];
          if (
            policies[next] !== policy || w.perms[0] !== "r" || Number(w.start) !== end ||
            w.path === "[vsyscall]" || inherited(next)
          ) break;
          end = Number(w.end);
        }
      }
      cursor = runsOfRangeFlat(
        regions,
        cursor,
        Number(v.start),
        end,
        policy === "anon-present",
        k,
        reads,
      );
    }
  }
  let bytes = 0;
  for (let i = 2; i < reads.length; i += 3) bytes += reads[i];
  return { reads, bytes };
}

Deno.test("planReads: the reads its loop planned, on random layouts and orders", () => {
  let joined = 0;
  for (let round = 0; round < 600; round++) {
    const vmas: Vma[] = [];
    const policies: PagePolicy[] = [];
    const given = new Map<number, PageSpan[]>();
    let at = 0x10000000;
    const n = pick([0, 1, 2, 17, 40, 200]);
    const long = rnd() < 0.3; // long ranges of touching readable mappings
    for (let i = 0; i < n; i++) {
      if (!long && rnd() < 0.25) at += PAGE * (1 + Math.floor(rnd() * 3));
      const pages = 1 + Math.floor(rnd() * 3);
      const perms = long ? pick(["r--p", "rw-p"]) : pick(["---p", "r--p", "rw-p"]);
      const path = rnd() < 0.03 ? "[vsyscall]" : "";
      vmas.push({ start: BigInt(at), end: BigInt(at + pages * PAGE), perms, path } as Vma);
      policies.push(long ? "anon-present" : pick(["none", "all-present", "anon-present"]));
      if (rnd() < 0.04) given.set(i, [{ addr: BigInt(at), length: PAGE }]);
      at += pages * PAGE;
    }
    const regions: ScanRegion[] = [];
    for (let a = 0x10000000; a < at; a += PAGE) {
      if (rnd() < 0.35) continue;
      const anon = rnd() < 0.8;
      const last = regions[regions.length - 1];
      if (last && last.end === a && last.anon === anon) last.end = a + PAGE;
      else regions.push({ start: a, end: a + PAGE, anon });
    }
    const order = vmas.map((_, k) => k);
    if (rnd() < 0.2) { // an order with some indexes swapped (planReads takes any)
      for (let s = 0; s < 3 && n > 1; s++) {
        const a = Math.floor(rnd() * n), b = Math.floor(rnd() * n);
        [order[a], order[b]] = [order[b], order[a]];
      }
    }
    const inherited = (k: number) => given.get(k);
    const want = referencePlanReads(vmas, order, policies, inherited, regions);
    const got = planReads(vmas, order, policies, inherited, regions);
    assert.deepEqual(got, want, `round ${round}`);
    if (long && want.reads.length / 3 < n / 2) joined++;
  }
  assert.ok(joined > 10, `${joined} layouts joined into ranges`);
});
