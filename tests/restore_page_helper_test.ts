/**
 * The page helper thread of a restore (engine/restore/page_loads.ts): a
 * mapping with 16 MiB of pages or more is loaded by two threads.
 * tests/targets/rt_pages.c has a read-write region, a region made
 * read-only after it was filled, and a sparse reservation, all above that
 * size; after the restore it checks every page, the zeros between the
 * touched parts, the read-only protection and that it has one thread.
 * Also: the same restore while the helper's tid is held by another
 * process (tests/targets/hold_tid.c), where clone3 fails and the main
 * thread loads every page itself; and the pure parts (the split, the
 * choice of the tid).
 */

import assert from "node:assert/strict";
import type { ProcessImage } from "../engine/model.ts";
import { planRestore } from "../engine/restore/mod.ts";
import { pageHelperTid, splitPieces } from "../engine/restore/page_loads.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { adoptPid, startTarget, withTargets } from "./helpers/targets.ts";

const CHECKS = [
  "rw-region",
  "ro-region",
  "sparse-touched",
  "sparse-untouched-zero",
  "one-thread",
  "ro-region-perms",
];
const READY = /^ready pid=(\d+)$/m;

/** A single-threaded process image with just what {@link pageHelperTid} reads. */
function imageOf(pid: number, tids: number[] = [pid]): ProcessImage {
  return { pid, threads: tids.map((tid) => ({ tid })) } as unknown as ProcessImage;
}

Deno.test("the pages are split in two halves of the same size, at a page boundary", () => {
  const MiB = 1 << 20;
  const [a, b] = splitPieces([
    { addr: 0x10000000, length: 3 * MiB, fileOffset: 0x1000 },
    { addr: 0x20000000, length: MiB + 8192, fileOffset: 0x1000 + 3 * MiB },
  ]);
  const bytes = (l: { length: number }[]) => l.reduce((n, p) => n + p.length, 0);
  assert.equal(bytes(a) + bytes(b), 4 * MiB + 8192);
  assert.equal(bytes(a), 2 * MiB + 4096);
  assert.deepEqual(b[0], {
    addr: 0x10000000 + 2 * MiB + 4096,
    length: MiB - 4096,
    fileOffset: 0x1000 + 2 * MiB + 4096,
  });
  assert.deepEqual(b[1], { addr: 0x20000000, length: MiB + 8192, fileOffset: 0x1000 + 3 * MiB });
});

Deno.test("the helper's tid is outside every pid and tid of the tree, one per process", () => {
  const a = imageOf(100, [100, 999, 997]);
  const b = imageOf(998);
  const images = new Map([[100, a], [998, b]]);
  const ta = pageHelperTid(a, images, 1000);
  const tb = pageHelperTid(b, images, 1000);
  assert.equal(ta, 996);
  assert.equal(tb, 995);
});

/** Dumps, kills and restores rt_pages (with `beforeRestore` in between); asserts its checks. */
async function roundTrip(holdHelperTid: boolean): Promise<void> {
  const { t, trigger } = await startTriggered("rt_pages", READY, { timeoutMs: 20000 });
  if (holdHelperTid) {
    const tid = pageHelperTid(imageOf(t.pid), new Map([[t.pid, imageOf(t.pid)]]));
    const holder = await startTarget("hold_tid", [String(tid)]);
    const m = await holder.waitFor(/^(held (\d+)|setup failed: clone3: File exists)$/m);
    if (m[2]) adoptPid(Number(m[2])); // ours to kill at the end
    else console.log(`note: tid ${tid} is taken by another process already`);
  }
  const rt = await dumpKillRestore(t);
  const plan = await planRestore(rt.dir);
  const ops = plan.units[0].compiled.bootstrap.restore.ops;
  const helpers = ops.filter((o) => o.comment?.startsWith("page helper thread")).length;
  assert.ok(helpers >= 3, `${helpers} page helper clones in the program, expected 3`);
  await Deno.writeTextFile(trigger, "");
  assertChecksPassed(t, CHECKS, await t.wait(20000));
}

Deno.test(
  "large mappings restored by two threads come back exact",
  withTargets(() => roundTrip(false)),
);

Deno.test(
  "with the helper's tid taken, the main thread loads every page",
  withTargets(() => roundTrip(true)),
);
