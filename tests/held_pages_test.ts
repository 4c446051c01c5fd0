/**
 * A small dump frozen once with no CPU to spare holds its page data in
 * buffers until the thaw, then sums and writes it (engine/dump/held_pages.ts):
 *
 * - the writer puts every buffer's bytes at its offset (a short last one
 *   too) and gives each buffer's CRC in order once settled, not before;
 *   past {@link HELD_MAX_BYTES} held, the oldest is written at once; a write
 *   the kernel refuses makes `settled` throw; `abort` writes nothing;
 * - /proc/buddyinfo's free 2 MiB blocks are counted from the orders 9 and
 *   up of every zone but DMA; a buffer is 2 MiB aligned and can be faulted in;
 * - a one-freeze `--leave-running` dump of tests/targets/rt_precopy.c
 *   (4 MiB rewritten all the time) with the writes held
 *   (`CRYO_COPY_LANES=held`) restores the memory of its freeze, and the
 *   original runs on and checks itself;
 * - cryo SIGKILLed in the freeze with its buffers held (`pages`) and after
 *   the thaw before they are written (`notes`): no image, the target
 *   untouched.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { HELD_MAX_BYTES, HeldPageWriter, heldStats } from "../engine/dump/held_pages.ts";
import { freeHugeBlocks, hugePagesFree } from "../engine/proc/buddyinfo.ts";
import { faultInCalls, HUGE_PAGE, hugeAlignedBuffer, runCalls } from "../ffi/huge_buffer.ts";
import { addressOf } from "../ffi/libc.ts";
import { crc32 } from "../engine/image/crc32.ts";
import { startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import {
  assertOriginalThenRestored,
  RT_PRECOPY_CHECKS,
  RT_PRECOPY_READY,
  trackingTraces,
} from "./helpers/tracking.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { pathExists, tempDir } from "./helpers/fs.ts";
import { startPaused } from "./helpers/kill_anywhere.ts";
import { waitUntil } from "./helpers/wait.ts";

const MiB = 1 << 20;

Deno.test("held page writes: every buffer at its offset, CRCs in order, bounded, a refused write throws", async () => {
  const path = `${await tempDir("cryo-held-")}/pages`;
  Deno.writeFileSync(path, new Uint8Array());
  const want = new Uint8Array(HELD_MAX_BYTES + 8 * MiB + 12288);
  for (let i = 0; i < want.length; i += 4) {
    new DataView(want.buffer).setUint32(i, (i * 2654435761) >>> 0);
  }
  const w = new HeldPageWriter(MiB, path);
  assert.equal(w.sumsSubmits, true);
  const crcs: number[] = [];
  const frozenBefore = heldStats.writtenFrozen;
  for (let at = 0; at < want.length; at += MiB) {
    const n = Math.min(MiB, want.length - at);
    w.acquire(at).set(want.subarray(at, at + n));
    crcs.push(crc32(want.subarray(at, at + n)));
    w.submit(n, at);
  }
  assert.ok(heldStats.writtenFrozen - frozenBefore >= 8, "past the bound, the oldest written");
  assert.throws(() => w.submittedCrcs(), /not settled/);
  await w.close(); // nothing to wait for here
  await w.settled();
  assert.deepEqual(Deno.readFileSync(path), want);
  assert.deepEqual(w.submittedCrcs(), crcs, "each buffer's CRC, in order");

  const bad = new HeldPageWriter(MiB, path);
  bad.acquire(-4096).fill(1);
  bad.submit(4096, -4096); // EINVAL
  await assert.rejects(() => bad.settled());

  Deno.writeFileSync(path, new Uint8Array());
  const dropped = new HeldPageWriter(MiB, path);
  dropped.acquire(0).fill(1);
  dropped.submit(4096, 0);
  await dropped.abort();
  assert.equal(Deno.statSync(path).size, 0, "abort writes nothing");
});

Deno.test("free huge blocks from buddyinfo; a 2 MiB aligned buffer faulted in", () => {
  const text = [
    "Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3 ",
    "Node 0, zone    DMA32      7     17     12     12     15     11     10     11      9      1     18 ",
    "Node 0, zone   Normal   1301    360    467    833    581    502    315    201      5      2      1 ",
    "",
  ].join("\n");
  // DMA32: 1 + 18 * 2; Normal: 2 + 1 * 2; DMA left out.
  assert.equal(freeHugeBlocks(text), 1 + 36 + 2 + 2);
  assert.equal(freeHugeBlocks("garbage"), 0);
  // 41 free: room for twice 24 MiB (24 blocks) and 16 more, not for twice 26 MiB.
  assert.equal(hugePagesFree(24 << 20, text), true);
  assert.equal(hugePagesFree(26 << 20, text), false);
  assert.ok(freeHugeBlocks() >= 0);
  for (const huge of [true, false]) {
    const b = hugeAlignedBuffer(3 * MiB);
    assert.equal(b.length, 3 * MiB);
    assert.equal(addressOf(b) % BigInt(HUGE_PAGE), 0n);
    assert.equal(runCalls(faultInCalls(b, huge)), true);
    assert.ok(b.every((x) => x === 0), "zeroed");
  }
});

Deno.test(
  "a dump frozen once with its page writes held to the thaw: exact at the freeze, the original runs on",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["4"],
    });
    const dir = `${await tempDir("cryo-held-rt-")}/image`;
    const before = heldStats.buffers;
    Deno.env.set("CRYO_COPY_LANES", "held");
    try {
      const r = await checkpoint(t.pid, { dir, leaveRunning: true, sync: false });
      assert.equal(r.stats.precopy, undefined, "frozen once");
    } finally {
      Deno.env.delete("CRYO_COPY_LANES");
    }
    assert.ok(heldStats.buffers - before >= 4, "the page writes were held");
    await assertOriginalThenRestored(t, trigger, dir);
  }),
);

for (
  const [at, when] of [
    ["pages", "in the freeze, its page data held"],
    ["notes", "after the thaw, its held page data not written"],
  ] as const
) {
  Deno.test(
    `cryo dump --leave-running killed ${when}: no image, the target untouched`,
    withTargets(async () => {
      const { t, trigger, ready } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
        extra: ["4"],
      });
      const region = BigInt(`0x${ready[2]}`), pages = Number(ready[3]);
      const before = trackingTraces(t.pid, region, pages);
      const dir = `${await tempDir("cryo-held-kill-")}/image`;
      Deno.env.set("CRYO_COPY_LANES", "held");
      const paused = await startPaused(
        ["dump", String(t.pid), "--dir", dir, "--leave-running", "--no-sync"],
        at,
      ).finally(() => Deno.env.delete("CRYO_COPY_LANES"));
      const tracer = () =>
        Deno.readTextFileSync(`/proc/${t.pid}/status`).match(/^TracerPid:\s+(\d+)$/m)![1];
      if (at === "notes") assert.equal(tracer(), "0", "thawed");
      else assert.notEqual(tracer(), "0", "frozen");
      paused.child.kill("SIGKILL");
      await paused.output;
      await waitUntil("the target let go", () => tracer() === "0");
      assert.equal(pathExists(dir), false, "no image");
      const after = trackingTraces(t.pid, region, pages);
      assert.deepEqual(after.fds, before.fds, "the same fds");
      assert.equal(after.maps, before.maps, "the same mappings");
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, RT_PRECOPY_CHECKS, await t.wait(30000), {
        what: "original after the killed dump",
      });
    }),
  );
}
