/**
 * engine/fds/packet_ring.ts's reading of the kernel's position in a ring
 * from the fill times its frames or blocks keep.
 */

import assert from "node:assert/strict";
import { nextFilled } from "../engine/fds/packet_ring.ts";

Deno.test("nextFilled: a ring never filled starts at 0", () => {
  assert.equal(nextFilled([0n, 0n, 0n, 0n]), 0);
});

Deno.test("nextFilled: a ring filled part way goes on after the last filled frame", () => {
  assert.equal(nextFilled([5n, 6n, 7n, 0n, 0n]), 3);
});

Deno.test("nextFilled: a ring gone round goes on after the newest frame", () => {
  assert.equal(nextFilled([10n, 11n, 7n, 8n, 9n]), 2);
  assert.equal(nextFilled([7n, 8n, 9n, 10n]), 0);
});

Deno.test("nextFilled: times that drop twice (a clock set back) tell nothing", () => {
  assert.equal(nextFilled([10n, 3n, 11n, 4n]), undefined);
});

Deno.test("nextFilled: frames put back after a restore keep their older times", () => {
  // Frames 3-4 the program owned (old), 5-6 filled since the restore, 0-2 given back (zeroed).
  assert.equal(nextFilled([0n, 0n, 0n, 4n, 5n, 20n, 21n, 0n]), 7);
});
