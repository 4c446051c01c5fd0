/**
 * engine/memory/own_tracking.ts: engine/memory/flags.ts asks it whether a
 * "uw" VmFlag is cryo's own tracking; it answers "no" until
 * engine/dump/tracking.ts is loaded, and then what the tracking module says.
 *
 * @module
 */

import assert from "node:assert/strict";
import { isOwnTrackingFlag } from "../engine/memory/own_tracking.ts";

Deno.test("own tracking: flags.ts sees the tracking module's state once it is loaded", async () => {
  const pid = 2 ** 22 + 12345; // never a live pid: only this process's tables are touched
  assert.equal(isOwnTrackingFlag(pid, 0x1000, 0x2000), false);
  const tracking: typeof import("../engine/dump/tracking.ts") = await import(
    "../engine/dump/tracking.ts"
  );
  assert.equal(isOwnTrackingFlag(pid, 0x1000, 0x2000), false);
  tracking.beginLifting(pid, [[0x1000, 0x2000], [0x2000, 0x3000], [0x8000, 0x9000]]);
  try {
    assert.equal(isOwnTrackingFlag(pid, 0x1800, 0x2800), true);
    assert.equal(isOwnTrackingFlag(pid, 0x8000, 0x8001), true);
    assert.equal(isOwnTrackingFlag(pid, 0x3000, 0x8000), false);
    assert.equal(
      isOwnTrackingFlag(pid, 0x1000, 0x2000),
      tracking.isOwnTrackingFlag(pid, 0x1000, 0x2000),
    );
  } finally {
    tracking.endLifting(pid);
  }
  assert.equal(isOwnTrackingFlag(pid, 0x1000, 0x2000), false);
  tracking.setTrackingFd(pid, 7);
  try {
    assert.equal(isOwnTrackingFlag(pid, 0x5000, 0x6000), true);
  } finally {
    tracking.clearTracking(pid);
  }
});
