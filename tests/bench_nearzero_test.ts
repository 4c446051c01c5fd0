/**
 * The near-zero downtime report of the bench (scripts/bench/nearzero_report.ts),
 * on made-up figures (nothing is timed here): the frozen-time ratio to the
 * plain dump (medians), the targets met or not from the values,
 * targets left out when their size did not run, and a wrong memory check
 * marked on its row and failing the memory-check target.
 */

import assert from "node:assert/strict";
import {
  frozenRatio,
  migrationRows,
  type NearZeroResult,
  nearZeroTargets,
  preDumpRows,
  restoreRows,
} from "../scripts/bench/nearzero_report.ts";

function result(over: Partial<NearZeroResult> = {}): NearZeroResult {
  const pre = (mib: number, preDumps: number, frozenSeconds: number) => ({
    mib,
    preDumps,
    frozenSeconds,
    heartbeatGapMs: frozenSeconds * 1000 + 1,
    storedBytes: 16 << 20,
    preFrozenSeconds: Array(preDumps).fill(0.01),
  });
  return {
    rateMiBs: 16,
    gapMs: 1000,
    repetitions: 2,
    preDumps: [
      pre(2048, 0, 1.0),
      pre(2048, 0, 3.0), // median plain: 2.0
      pre(2048, 1, 0.1),
      pre(2048, 1, 0.3), // 10%
      pre(2048, 2, 0.1),
      pre(2048, 2, 0.1), // 5%
      pre(2048, 3, 0.05),
      pre(2048, 3, 0.05), // 2.5%
    ],
    chainChecks: [{ mib: 2048, preDumps: 3, frozenSeconds: 0.05, check: "ok" }],
    restores: [
      {
        mib: 2048,
        mode: "eager",
        firstMs: 900,
        runningMs: 890,
        allMs: 890,
        faults: 0,
        check: "ok",
      },
      { mib: 2048, mode: "lazy", firstMs: 30, runningMs: 25, allMs: 2000, faults: 9, check: "ok" },
      { mib: 2048, mode: "lazy", firstMs: 45, runningMs: 40, allMs: 2100, faults: 7, check: "ok" },
    ],
    migrations: [{
      mib: 2048,
      restore: "eager",
      totalMs: 9000,
      downtimeMs: 700,
      untilFinalRoundMs: 100,
      untilSwitchMs: 400,
      restoreMs: 290,
      frozenSeconds: 0.05,
      rounds: 4,
      sentBytes: 2100 * 1024 * 1024,
      allMs: 9000,
      check: "ok",
    }],
    errors: [],
    ...over,
  };
}

Deno.test("bench near-zero: frozen ratio uses the medians, against the plain dump", () => {
  const r = result();
  assert.equal(frozenRatio(r.preDumps, 2048, 1), 0.1);
  assert.equal(frozenRatio(r.preDumps, 2048, 3), 0.025);
  assert.equal(frozenRatio(r.preDumps, 512, 1), null, "a size that did not run");
});

Deno.test("bench near-zero: targets met from the measured values", () => {
  const t = nearZeroTargets(result());
  assert.deepEqual(t.map((x) => [x.target, x.value, x.met]), [
    ["frozen after pre-copy <= 10% of plain dump", "1: 10.0%, 2: 5.0%, 3: 2.5%", true],
    ["lazy restore first instruction <= 50 ms", "45.0 ms", true],
    ["restored program's memory check passes", "5 of 5 ok", true],
  ]);
});

Deno.test("bench near-zero: targets not met, a wrong row, a failed part", () => {
  const r = result();
  r.preDumps.push({ ...r.preDumps[2], frozenSeconds: 0.5 }); // median after 1: 0.3 s = 15%
  r.restores[2] = { ...r.restores[2], firstMs: 51, check: "verify FAIL 3" };
  r.errors.push({ mib: 2048, part: "migration", error: "boom" });
  const t = nearZeroTargets(r);
  assert.deepEqual(t.map((x) => x.met), [false, false, false]);
  assert.equal(t[0].value, "1: 15.0%, 2: 5.0%, 3: 2.5%");
  assert.equal(t[2].value, "4 of 5 ok, 1 part(s) failed to run");
  const rows = restoreRows(r);
  assert.equal(rows[3][rows[3].length - 1], "WRONG: verify FAIL 3");
  assert.equal(rows[1][rows[1].length - 1], "ok");
});

Deno.test("bench near-zero: targets of sizes that did not run are left out", () => {
  const r = result({
    preDumps: result().preDumps.map((x) => ({ ...x, mib: 512 })),
    restores: result().restores.map((x) => ({ ...x, mib: 512 })),
  });
  assert.deepEqual(nearZeroTargets(r).map((x) => x.target), [
    "restored program's memory check passes",
  ]);
  assert.deepEqual(
    nearZeroTargets(result({ chainChecks: [], restores: [], migrations: [] })).map(
      (x) => x.target,
    ),
    ["frozen after pre-copy <= 10% of plain dump"],
  );
});

Deno.test("bench near-zero: tables", () => {
  const r = result();
  const pre = preDumpRows(r);
  assert.equal(pre.length, 1 + 4 + 1, "header, one row per chain length, the chain check");
  assert.deepEqual(pre[1].slice(0, 5), [
    "2048 MiB",
    "plain dump",
    "1000 ms, 3000 ms",
    "100.0%",
    "1001 ms, 3001 ms",
  ]);
  assert.equal(pre[2][1], "after 1 pre-dump");
  assert.equal(pre[5][1], "after 3 pre-dumps, killed, restored");
  assert.equal(pre[5][7], "ok");
  const mig = migrationRows(r);
  assert.deepEqual(mig[1], [
    "2048 MiB",
    "eager",
    "9000 ms",
    "700 ms",
    "100 ms",
    "400 ms",
    "290 ms",
    "50 ms",
    "4",
    "2100.0 MiB",
    "9000 ms",
    "ok",
  ]);
});
