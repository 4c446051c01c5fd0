/**
 * The two real-process scenarios a one-freeze copy mode of a dump
 * (`CRYO_COPY_LANES`: the deferred writes' queue thread) is tested
 * through, on rt_precopy: a round trip, and a kill of
 * `cryo dump --leave-running` at a pause point.
 *
 * @module
 */

import assert from "node:assert/strict";
import { checkpoint } from "../../engine/dump/mod.ts";
import { startTriggered } from "./roundtrip.ts";
import {
  assertOriginalThenRestored,
  RT_PRECOPY_CHECKS,
  RT_PRECOPY_READY,
  trackingTraces,
} from "./tracking.ts";
import { assertChecksPassed } from "./checks.ts";
import { pathExists, tempDir } from "./fs.ts";
import { startPaused } from "./kill_anywhere.ts";
import { waitUntil } from "./wait.ts";

/**
 * Dumps rt_precopy frozen once with `CRYO_COPY_LANES=mode`, asserts that
 * `counted()` (the mode's own counter) grew by at least 4, then that the
 * original runs on and the image restores exactly.
 */
export async function frozenOnceRoundTrip(
  mode: string,
  counted: () => number,
  what: string,
): Promise<void> {
  const { t, trigger } = await startTriggered("rt_precopy", RT_PRECOPY_READY, { extra: ["4"] });
  const dir = `${await tempDir(`cryo-${mode}-rt-`)}/image`;
  const before = counted();
  Deno.env.set("CRYO_COPY_LANES", mode);
  try {
    const r = await checkpoint(t.pid, { dir, leaveRunning: true, sync: false });
    assert.equal(r.stats.precopy, undefined, "frozen once");
  } finally {
    Deno.env.delete("CRYO_COPY_LANES");
  }
  assert.ok(counted() - before >= 4, what);
  await assertOriginalThenRestored(t, trigger, dir);
}

/**
 * SIGKILLs `cryo dump --leave-running --no-sync` of rt_precopy, run with
 * `CRYO_COPY_LANES=mode`, at the pause point `at` ("notes": after the
 * thaw; "pages": frozen, or after the thaw when the copy ahead read every
 * page in the freeze and the stream runs after it (engine/dump/copy_ahead.ts
 * `readAll`); any other: frozen), and asserts no image is left and the
 * target has the same fds and mappings and passes its own checks.
 */
export async function killedDumpLeavesTarget(mode: string, at: string): Promise<void> {
  const { t, trigger, ready } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
    extra: ["4"],
  });
  const region = BigInt(`0x${ready[2]}`), pages = Number(ready[3]);
  const before = trackingTraces(t.pid, region, pages);
  const dir = `${await tempDir(`cryo-${mode}-kill-`)}/image`;
  Deno.env.set("CRYO_COPY_LANES", mode);
  const paused = await startPaused(
    ["dump", String(t.pid), "--dir", dir, "--leave-running", "--no-sync"],
    at,
  ).finally(() => Deno.env.delete("CRYO_COPY_LANES"));
  const tracer = () =>
    Deno.readTextFileSync(`/proc/${t.pid}/status`).match(/^TracerPid:\s+(\d+)$/m)![1];
  if (at === "notes") assert.equal(tracer(), "0", "thawed");
  else if (at !== "pages") assert.notEqual(tracer(), "0", "frozen");
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
}
