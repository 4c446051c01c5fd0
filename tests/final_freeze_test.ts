/**
 * What the final dump of a pre-copy chain does with the tracking while the
 * tree is frozen (engine/dump/tracking.ts `detachTracking`), against
 * tests/targets/rt_precopy.c:
 *
 * - a final dump that kills the tree leaves the tracking in it until the
 *   kill (no page table walk to lift protections the tree never uses
 *   again): at `beforeKill` the frozen tree still holds the userfaultfd and
 *   its "uw" mappings, yet the image records neither, and the restored
 *   process has none and checks its memory;
 * - a final dump that fails once the tracking was taken (left running, or
 *   killing) leaves the tree running with exactly its own fds, no
 *   userfaultfd flag and no write-protected page.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { readImage } from "../engine/inspect.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";
import {
  assertNoTracking,
  RT_PRECOPY_CHECKS,
  RT_PRECOPY_READY,
  trackingTraces,
} from "./helpers/tracking.ts";

Deno.test(
  "a final dump killing the tree: tracking left to the kill, none in the image, none restored, exact",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["16"],
    });
    const region = BigInt(`0x${ready[2]}`), pages = Number(ready[3]);
    const before = trackingTraces(t.pid, region, pages);
    const d1 = await tempImageDir(), d2 = await tempImageDir();
    await checkpoint(t.pid, { dir: d1, preDump: true });
    let atKill: ReturnType<typeof trackingTraces> | undefined;
    const r = await checkpoint(t.pid, {
      dir: d2,
      parent: d1,
      beforeKill: () => atKill = trackingTraces(t.pid, region, pages),
    });
    assert.ok((r.stats.parentReusedBytes ?? 0) > 0, "pages kept in the parent");
    assert.ok(atKill, "beforeKill ran");
    assert.ok(atKill.fds.some((f) => f.includes("userfaultfd")), "the tracking fd is still there");
    assert.ok(atKill.uffdFlags > 0, "its mappings still registered while frozen");
    assert.equal((await t.wait(30000)).kind, "signaled", "the final dump killed the tree");
    const model = await readImage(d2);
    for (const p of model.processes) {
      for (const f of p.fds) assert.ok(!/userfaultfd/.test(f.target), `fd ${f.fd} ${f.target}`);
      for (const m of p.mappings) assert.ok(!m.vmFlags.includes("uw"), `uw on ${m.start}`);
    }
    const tree = await restore(d2);
    t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
    const restored = trackingTraces(t.pid, region, pages);
    assert.deepEqual(restored.fds, before.fds, "the restored process has its own fds only");
    assertNoTracking(restored);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, RT_PRECOPY_CHECKS, await t.wait(30000), {
      what: "restored via the chain",
    });
  }),
);

Deno.test(
  "a final dump failing after the tracking was taken (left running, then killing): the tree runs untracked",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["8"],
    });
    const region = BigInt(`0x${ready[2]}`), pages = Number(ready[3]);
    const before = trackingTraces(t.pid, region, pages);
    for (const leaveRunning of [true, false]) {
      const d1 = await tempImageDir();
      await checkpoint(t.pid, { dir: d1, preDump: true });
      assert.ok(trackingTraces(t.pid, region, pages).uffdFlags > 0, "tracking armed");
      await assert.rejects(
        checkpoint(t.pid, {
          dir: await tempImageDir(),
          parent: d1,
          leaveRunning,
          onEvent: (e) => {
            if (e.type === "frozen") throw new Error("injected failure");
          },
        }),
        /injected failure/,
      );
      assert.equal(t.poll(), undefined, "the target runs on");
      const after = trackingTraces(t.pid, region, pages);
      assert.deepEqual(after.fds, before.fds, `its own fds only (leaveRunning ${leaveRunning})`);
      assertNoTracking(after);
    }
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, RT_PRECOPY_CHECKS, await t.wait(30000), { what: "original" });
  }),
);
