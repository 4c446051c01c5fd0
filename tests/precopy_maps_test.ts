/**
 * The pre-copy of a process of many small mappings (engine/dump/precopy.ts):
 * tests/targets/rt_precopy.c in its "maps" mode has one mapping per page
 * (every other page MADV_DONTDUMP) and rewrites random pages of the first
 * half all the time, so pages of hundreds of mappings are written between
 * the pre-copy's protection and the final freeze.
 *
 * - the dump pre-copied every page and kept the untouched half, took the
 *   written ones again, and the restored process finds every page matching
 *   its generation table (the memory of the final freeze);
 * - the original keeps its mappings (one per page, the same text), its fds,
 *   and no userfaultfd flag or write-protected page is left.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import {
  assertNoTracking,
  assertOriginalThenRestored,
  RT_PRECOPY_READY,
  trackingTraces,
} from "./helpers/tracking.ts";

const PAGE = 4096;

Deno.test(
  "dump --leave-running pre-copies a process of 2,048 one-page mappings written meanwhile: exact at the final freeze",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["8", "maps"],
    });
    const region = BigInt(`0x${ready[2]}`), pages = Number(ready[3]);
    const before = trackingTraces(t.pid, region, pages);
    const end = region + BigInt(pages * PAGE);
    const inRegion = before.maps.split("\n").filter((l) => {
      const [s] = l.split(" ")[0].split("-");
      return s && BigInt(`0x${s}`) >= region && BigInt(`0x${s}`) < end;
    }).length;
    assert.ok(inRegion >= pages, `one mapping per page (${inRegion} for ${pages} pages)`);
    const dir = await tempImageDir();
    const dump = await checkpoint(t.pid, { dir, leaveRunning: true, precopy: true });
    const pre = dump.stats.precopy;
    assert.ok(pre, "the dump pre-copied");
    assert.ok(pre.bytes >= pages * PAGE, `pre-copied ${pre.bytes} bytes`);
    assert.ok(pre.reusedBytes >= (pages / 2) * PAGE, `kept ${pre.reusedBytes} bytes`);
    assert.ok(pre.reusedBytes < pre.bytes, "pages written meanwhile were taken again");
    const after = trackingTraces(t.pid, region, pages);
    assert.deepEqual(after.fds, before.fds, "the same fds after the dump");
    assert.equal(after.maps, before.maps, "the same mappings after the dump");
    assertNoTracking(after);
    await assertOriginalThenRestored(t, trigger, dir);
  }),
);
