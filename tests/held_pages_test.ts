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
import { HELD_MAX_BYTES, HeldPageWriter, heldStats } from "../engine/dump/held_pages.ts";
import { freeHugeBlocks, hugePagesFree } from "../engine/proc/buddyinfo.ts";
import { faultInCalls, HUGE_PAGE, hugeAlignedBuffer, runCalls } from "../ffi/huge_buffer.ts";
import { addressOf } from "../ffi/libc.ts";
import { crc32 } from "../engine/image/crc32.ts";
import { withTargets } from "./helpers/targets.ts";
import { tempDir } from "./helpers/fs.ts";
import { frozenOnceRoundTrip, killedDumpLeavesTarget } from "./helpers/copy_lane_runs.ts";

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
  withTargets(() =>
    frozenOnceRoundTrip("held", () => heldStats.buffers, "the page writes were held")
  ),
);

for (
  const [at, when] of [
    ["pages", "in the freeze, its page data held"],
    ["notes", "after the thaw, its held page data not written"],
  ] as const
) {
  Deno.test(
    `cryo dump --leave-running killed ${when}: no image, the target untouched`,
    withTargets(() => killedDumpLeavesTarget("held", at)),
  );
}
