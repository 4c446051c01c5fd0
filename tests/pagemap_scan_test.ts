/**
 * PAGEMAP_SCAN plans the same pages as the pagemap bits did
 * (engine/proc/pagemap_scan.ts against engine/proc/pagemap.ts), on every
 * mapping of targets holding every kind the dump meets: private and shared
 * anonymous memory, private file mappings with copy-on-write pages, shared
 * file mappings, the zero page, guard regions, locked and PROT_NONE parts,
 * growsdown, heap, stack, vdso (tests/targets/rt_memflags.c,
 * tests/targets/rt_memory.c, tests/targets/rt_cow.c).
 */

import assert from "node:assert/strict";
import { readSmapsFlags } from "../engine/proc/smaps_flags.ts";
import {
  ANON_PRESENT_OR_SWAPPED,
  openPagemap,
  PRESENT_OR_SWAPPED,
} from "../engine/proc/pagemap.ts";
import { PagemapScanner, runsOfRange } from "../engine/proc/pagemap_scan.ts";
import { startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

/** Compares both selections on every mapping of `pid`; returns how many mappings had pages. */
function compare(pid: number, what: string): number {
  const vmas = readSmapsFlags(pid).filter((v) => v.path !== "[vsyscall]");
  using pagemap = openPagemap(pid);
  using scanner = new PagemapScanner(pid);
  const regions = scanner.dataRegions(Number(vmas[0].start), Number(vmas[vmas.length - 1].end));
  let withPages = 0;
  for (const anonOnly of [true, false]) {
    let cursor = 0;
    for (const v of vmas) {
      const old = pagemap.runs(
        v.start,
        v.end,
        anonOnly ? ANON_PRESENT_OR_SWAPPED : PRESENT_OR_SWAPPED,
      )
        .map(([a, l]) => [Number(a), l]);
      const runs: { addr: number; length: number }[] = [];
      cursor = runsOfRange(regions, cursor, Number(v.start), Number(v.end), anonOnly, runs);
      assert.deepEqual(
        runs.map((r) => [r.addr, r.length]),
        old,
        `${what}: ${anonOnly ? "own" : "all"} pages of ${v.start.toString(16)}-${
          v.end.toString(16)
        } ${v.perms} ${v.path}`,
      );
      if (old.length) withPages++;
    }
  }
  return withPages;
}

for (
  const [name, ready, extra] of [
    ["rt_memflags", /^ready pid=(\d+)/m, ["future-onfault"]],
    ["rt_memflags", /^ready pid=(\d+)/m, []],
    ["rt_memory", /^ready pid=(\d+)/m, []],
    ["rt_cow", /^ready pid=(\d+)/m, []],
    ["rt_zeropage", /^ready pid=(\d+)/m, ["anon"]],
    ["rt_zeropage", /^ready pid=(\d+)/m, ["thp"]],
    ["rt_zeropage", /^ready pid=(\d+)/m, ["devzero"]],
  ] as const
) {
  Deno.test(
    `PAGEMAP_SCAN selects what the pagemap bits select: ${name} ${extra.join(" ")}`,
    withTargets(async () => {
      const { t } = await startTriggered(name, ready, {
        passWork: name !== "rt_memflags" && name !== "rt_zeropage",
        extra: [...extra],
      });
      assert.ok(compare(t.pid, name) > 5, "mappings with pages");
      await t.kill();
    }),
  );
}
