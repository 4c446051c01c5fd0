/**
 * Load: a policy checkpoints a writing target (tests/targets/soak_writer.c)
 * every 500 ms for 20 s with `keep: 3`. After every checkpoint and every
 * pruning the store holds exactly the newest checkpoints the retention
 * allows, `latest` names the newest, and every new checkpoint loads and
 * verifies; at the end the latest image is restored and the target checks
 * its memory and its data file. scripts/soak_policy.ts runs the full ten
 * minutes (every second) and prints its figures.
 */

import assert from "node:assert/strict";
import { assertChecksPassed } from "./helpers/checks.ts";
import { runSoak } from "./helpers/soak.ts";
import { withTargets } from "./helpers/targets.ts";

Deno.test(
  "a policy checkpointing a writing target every 500 ms for 20 s keeps exactly 3; the latest restores",
  withTargets(async () => {
    const f = await runSoak({ durationMs: 20000, everyMs: 500, keep: 3, writeMs: 5 });
    assert.deepEqual(f.violations, []);
    assert.ok(f.checkpoints >= 5, `only ${f.checkpoints} checkpoints in 20 s`);
    assert.equal(f.pruned, f.checkpoints - 3);
    assert.equal(f.retentionChecks, f.checkpoints, "one retention check per checkpoint");
    assert.ok(f.verified >= f.checkpoints / 2, `only ${f.verified} checkpoints verified`);
    assertChecksPassed(f.restored, ["memory", "sum", "file", "fd"], f.restoredExit, {
      what: "restored soak_writer",
    });
    assert.ok(f.records > 100, `the target wrote only ${f.records} records`);
  }),
);
