/**
 * engine/proc/pagemap_scan.ts `runsOfRangeFlat` (the page plan's runs as
 * flat numbers, engine/dump/plan.ts) gives exactly the runs of
 * `runsOfRange`, with the same cursor, over random regions and mappings
 * visited in address order (adjacent regions joined, file regions left
 * out for anonymous-only policies, a mapping's runs never joined with the
 * previous mapping's).
 */

import assert from "node:assert/strict";
import { runsOfRange, runsOfRangeFlat, type ScanRegion } from "../engine/proc/pagemap_scan.ts";

const P = 4096;

Deno.test("runsOfRangeFlat: the runs and cursors of runsOfRange", () => {
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let round = 0; round < 200; round++) {
    const regions: ScanRegion[] = [];
    let at = 0x10000 * P;
    for (let i = rnd(30); i > 0; i--) {
      at += rnd(3) * P; // adjacent (0) or a hole
      const end = at + (1 + rnd(5)) * P;
      regions.push({ start: at, end, anon: rnd(3) !== 0 });
      at = end;
    }
    // Mappings in address order, touching or not, over the same span.
    const maps: [number, number, boolean][] = [];
    let m = 0x10000 * P - 2 * P;
    while (m < at + 2 * P) {
      m += rnd(2) * P;
      const end = m + (1 + rnd(6)) * P;
      maps.push([m, end, rnd(2) === 0]);
      m = end;
    }
    let c1 = 0, c2 = 0;
    const flat: number[] = [];
    maps.forEach(([s, e, anonOnly], k) => {
      const runs: { addr: number; length: number }[] = [];
      c1 = runsOfRange(regions, c1, s, e, anonOnly, runs);
      const before = flat.length;
      c2 = runsOfRangeFlat(regions, c2, s, e, anonOnly, k, flat);
      assert.equal(c2, c1, "cursor");
      const got = [];
      for (let i = before; i < flat.length; i += 3) {
        assert.equal(flat[i], k, "tag");
        got.push({ addr: flat[i + 1], length: flat[i + 2] });
      }
      assert.deepEqual(got, runs, `round ${round} mapping ${k}`);
    });
  }
});
