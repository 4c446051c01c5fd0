/**
 * Pre-copy chains (`dump --pre-dump`, `dump --parent`; engine/dump/parent.ts,
 * engine/dump/tracking.ts, engine/image/chain.ts) against
 * tests/targets/rt_precopy.c, which rewrites random pages of the first
 * half of its memory all the time and leaves the second half as written:
 *
 * - two pre-dumps then a final dump (left running): the pre-dumps leave the
 *   tracking fd and "uw" mappings in the target, but no image records them;
 *   the later dumps take the untouched half from their parent; after the
 *   final dump the original has the same fds as before, no userfaultfd
 *   flag, no write-protected page, and checks itself;
 * - the final image restores through its chain, memory exact;
 * - a missing or changed parent is refused with one line naming it;
 * - `flatten` gives an image that restores alone (the chain removed);
 * - a dump naming a parent that is not the latest pre-dump is refused and
 *   the tree keeps running untouched; `cancelPreDump` removes the tracking.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { cancelPreDump } from "../engine/dump/chain_dump.ts";
import { restore } from "../engine/restore/mod.ts";
import { flattenImage } from "../engine/image/chain.ts";
import { readImage } from "../engine/inspect.ts";
import { CHAIN_FORMAT_VERSION, IMAGE_FORMAT_VERSION } from "../engine/model.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";
import {
  assertNoTracking,
  RT_PRECOPY_CHECKS,
  RT_PRECOPY_READY,
  trackingTraces,
} from "./helpers/tracking.ts";

const PAGE = 4096;

/** No fd, and no mapping flag, of the image mentions a userfaultfd. */
async function assertNoTrackingInImage(dir: string): Promise<void> {
  const model = await readImage(dir);
  for (const p of model.processes) {
    for (const f of p.fds) {
      assert.ok(!/userfaultfd/.test(f.target), `fd ${f.fd} ${f.target} in ${dir}`);
    }
    for (const m of p.mappings) assert.ok(!m.vmFlags.includes("uw"), `uw flag in ${dir}`);
  }
}

Deno.test(
  "two pre-dumps then a final dump: incremental, exact through the chain, no trace left; bad parents refused; flatten",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["32"],
    });
    const region = BigInt(`0x${ready[2]}`), pages = Number(ready[3]);
    const before = trackingTraces(t.pid, region, pages);
    const d1 = await tempImageDir(), d2 = await tempImageDir(), d3 = await tempImageDir();

    const r1 = await checkpoint(t.pid, { dir: d1, preDump: true });
    assert.ok(r1.manifest.tracking?.fds.length, "the pre-dump left tracking");
    const armed = trackingTraces(t.pid, region, pages);
    assert.equal(armed.fds.length, before.fds.length + 1, "one fd more: the tracking");
    assert.ok(armed.uffdFlags > 0, "mappings registered");
    await assertNoTrackingInImage(d1);

    const r2 = await checkpoint(t.pid, { dir: d2, parent: d1, preDump: true });
    assert.ok(r2.manifest.parent, "d2 names its parent");
    assert.equal(r2.manifest.formatVersion, CHAIN_FORMAT_VERSION, "a chained image's own version");
    const half = (pages / 2) * PAGE;
    assert.ok((r2.stats.parentReusedBytes ?? 0) >= half, `d2 kept ${r2.stats.parentReusedBytes}`);
    await assertNoTrackingInImage(d2);

    // A dump naming d1 again (not the latest pre-dump) is refused; the tree runs on, tracked.
    await assert.rejects(
      checkpoint(t.pid, { dir: await tempImageDir(), parent: d1 }),
      /is not the latest pre-dump/,
    );
    assert.equal(t.poll(), undefined, "the target runs on");

    const r3 = await checkpoint(t.pid, { dir: d3, parent: d2, leaveRunning: true });
    assert.ok((r3.stats.parentReusedBytes ?? 0) >= half, `d3 kept ${r3.stats.parentReusedBytes}`);
    assert.ok(r3.stats.pagesBytes < pages * PAGE, "d3 stores less than the whole region");
    assert.equal(r3.manifest.tracking, undefined);
    const after = trackingTraces(t.pid, region, pages);
    assert.deepEqual(after.fds, before.fds, "the same fds after the final dump");
    assertNoTracking(after);
    await assertNoTrackingInImage(d3);

    // The original runs on, writes, and checks itself.
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, RT_PRECOPY_CHECKS, await t.wait(30000), {
      what: "original after the final dump",
    });

    const flat = await tempImageDir();
    const flatManifest = await flattenImage(d3, flat);
    assert.equal(flatManifest.formatVersion, IMAGE_FORMAT_VERSION);
    assert.equal(flatManifest.parent, undefined);

    // Through the chain: every page matches its generation at the final freeze.
    let tree = await restore(d3);
    t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
    assertChecksPassed(t, RT_PRECOPY_CHECKS, await t.wait(30000), {
      run: 2,
      what: "restored via the chain",
    });

    // A missing parent, then a changed one: one line naming it.
    await Deno.rename(d1, `${d1}.away`);
    await assert.rejects(
      restore(d3),
      (e: Error) => /parent image .* is missing/.test(e.message) && !e.message.includes("\n"),
    );
    await Deno.rename(`${d1}.away`, d1);
    await Deno.writeTextFile(`${d2}/manifest.json`, "\n", { append: true });
    await assert.rejects(restore(d3), /parent image .* has changed/);

    // The flattened image restores alone.
    await Deno.remove(d1, { recursive: true });
    await Deno.remove(d2, { recursive: true });
    await Deno.remove(d3, { recursive: true });
    tree = await restore(flat);
    t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
    assertChecksPassed(t, RT_PRECOPY_CHECKS, await t.wait(30000), {
      run: 3,
      what: "restored from flat",
    });
  }),
);

Deno.test(
  "an abandoned pre-dump: cancel removes the tracking; a plain dump after a pre-dump removes it too",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["8"],
    });
    const region = BigInt(`0x${ready[2]}`), pages = Number(ready[3]);
    const before = trackingTraces(t.pid, region, pages);
    await checkpoint(t.pid, { dir: await tempImageDir(), preDump: true });
    assert.ok(trackingTraces(t.pid, region, pages).uffdFlags > 0, "tracking armed");
    assert.equal(cancelPreDump(t.pid), 1, "one fd closed");
    const cancelled = trackingTraces(t.pid, region, pages);
    assert.deepEqual(cancelled.fds, before.fds);
    assert.equal(cancelled.uffdFlags, 0);
    assert.equal(cancelled.protectedPages, 0);
    assert.throws(() => cancelPreDump(t.pid), /no pre-dump tracking/);

    await checkpoint(t.pid, { dir: await tempImageDir(), preDump: true });
    const plain = await tempImageDir();
    await checkpoint(t.pid, { dir: plain, leaveRunning: true });
    // A plain image is no parent.
    await assert.rejects(
      checkpoint(t.pid, { dir: await tempImageDir(), parent: plain }),
      /is not a pre-dump/,
    );
    const after = trackingTraces(t.pid, region, pages);
    assert.deepEqual(after.fds, before.fds);
    assert.equal(after.uffdFlags, 0);
    assert.equal(after.protectedPages, 0);
    await assertNoTrackingInImage(plain);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, RT_PRECOPY_CHECKS, await t.wait(30000), { what: "original" });
  }),
);

Deno.test(
  "a chain while the process remaps and drops parts of its memory, the final dump killing it: exact at the final freeze",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["16", "churn"],
    });
    const d1 = await tempImageDir(), d2 = await tempImageDir(), d3 = await tempImageDir();
    await checkpoint(t.pid, { dir: d1, preDump: true });
    await new Promise((r) => setTimeout(r, 200));
    await checkpoint(t.pid, { dir: d2, parent: d1, preDump: true });
    await new Promise((r) => setTimeout(r, 200));
    // The final dump kills the tree (the default).
    const r3 = await checkpoint(t.pid, { dir: d3, parent: d2 });
    assert.ok((r3.stats.parentReusedBytes ?? 0) > 0, "some pages kept in the parents");
    const killed = await t.wait(30000);
    assert.equal(killed.kind, "signaled", "the final dump killed the tree");
    await Deno.writeTextFile(trigger, "");
    const tree = await restore(d3);
    t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
    assertChecksPassed(t, RT_PRECOPY_CHECKS, await t.wait(30000), {
      what: "restored via the chain",
    });
  }),
);

Deno.test(
  "memory moved by mremap over an area the pre-dump saw: the final dump reads it, not the parent's pages",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_premove", /^ready pid=(\d+)$/m);
    const d1 = await tempImageDir(), d2 = await tempImageDir();
    await checkpoint(t.pid, { dir: d1, preDump: true });
    Deno.kill(t.pid, "SIGUSR1");
    await t.waitFor(/^moved$/m);
    await checkpoint(t.pid, { dir: d2, parent: d1 });
    await t.wait(30000);
    await Deno.writeTextFile(trigger, "");
    const tree = await restore(d2);
    t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
    assertChecksPassed(t, ["moved", "gone"], await t.wait(30000), { what: "restored" });
  }),
);

Deno.test(
  "a child forked after a pre-dump (inheriting the tracking fd): tracked from the next pre-dump, no fd in any image, exact",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_chainfork", /^ready pid=(\d+)$/m);
    const d1 = await tempImageDir(), d2 = await tempImageDir(), d3 = await tempImageDir();
    await checkpoint(t.pid, { dir: d1, preDump: true });
    Deno.kill(t.pid, "SIGUSR1");
    const child = Number((await t.waitFor(/^forked child=(\d+)$/m))[1]);
    adoptPid(child);
    const r2 = await checkpoint(t.pid, { dir: d2, parent: d1, preDump: true });
    assert.equal(r2.manifest.processes.length, 2);
    assert.ok(r2.manifest.tracking?.fds.some((f) => f.pid === child), "the child is tracked");
    await assertNoTrackingInImage(d2);
    const r3 = await checkpoint(t.pid, { dir: d3, parent: d2 });
    assert.ok((r3.stats.parentReusedBytes ?? 0) > 0, "pages kept in the parents");
    await assertNoTrackingInImage(d3);
    await t.wait(30000);
    await Deno.writeTextFile(trigger, "");
    const tree = await restore(d3);
    t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
    // Both report (their lines may interleave); the parent's verdict comes after reaping the child.
    assertChecksPassed(t, ["child"], await t.wait(30000), { run: 2, what: "restored" });
    assert.equal(t.output().match(/^check memory ok$/gm)?.length, 2, t.output());
  }),
);
