/**
 * Kill cryo anywhere: `cryo dump` (without --leave-running) and `cryo
 * restore` are SIGKILLed at every phase boundary (CRYO_TEST_PAUSE_AT,
 * engine/pause.ts), inside injected syscalls, and at time offsets; after each kill the target runs on
 * untouched or its complete image restores, and a killed restore leaves
 * nothing behind and the image unchanged (tests/helpers/kill_anywhere.ts).
 * scripts/kill_anywhere.ts runs many more points.
 */

import assert from "node:assert/strict";
import { withTargets } from "./helpers/targets.ts";
import {
  DumpLane,
  type KillOutcome,
  type KillPoint,
  pointName,
  RestoreLane,
} from "./helpers/kill_anywhere.ts";

/**
 * Dump points: every phase boundary, injected syscalls (before, inside: the
 * injected registers set, and while a thread gets its own state back), inside
 * and at the end of a syscall batch (the mlockall probe's page is mapped and
 * unmapped by the main thread's batch: engine/memory/flags.ts), each
 * TCP connection in repair mode, page chunks, and time offsets (from the
 * freeze: they fall among the injected syscalls).
 */
export const DUMP_POINTS: KillPoint[] = [
  ...["frozen", "collect", "scratch", "ghosts", "notes", "written", "manifest", "fsync", "rename"]
    .map((phase) => ({ phase })),
  { phase: "killed" },
  // The target's ~11 injected syscalls and batches (the per-thread queries are one batch).
  ...Array.from({ length: 11 }, (_, i) => ({ phase: `inject:${i + 1}` })),
  ...[1, 2, 3, 4, 5, 8, 10].map((n) => ({ phase: `inject-mid:${n}` })),
  ...[1, 2, 3, 4].map((n) => ({ phase: `inject-restore:${n}` })),
  // The second of each: the other thread's batch, run at the same time as the main thread's.
  ...["batch-mid", "batch-end", "batch-mid:2", "batch-end:2"].map((phase) => ({ phase })),
  // Each of the target's two TCP sockets while it is read in repair mode.
  ...["tcp-repair", "tcp-repair:2"].map((phase) => ({ phase })),
  ...[1, 2, 3, 4].map((n) => ({ phase: `pages:${n}` })),
  // Time offsets: the injected phases above that a dump reaches vary as the dump's own work moves
  // (the seventeenth pass took two round trips out of it), these reach the same span every time.
  ...[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 17, 20, 25, 30, 35, 40, 45, 50].map((
    afterMs,
  ) => ({ afterMs })),
  ...[0, 5, 20, 80].map((afterMs) => ({ afterMs, fromPages: true })),
];

/**
 * Restore points: every phase boundary and time offsets after the restored
 * pid appears: every millisecond for the first 48 (the restore of this small
 * target may be over ~45 ms after its pid appears), then every 4 ms.
 */
export const RESTORE_POINTS: KillPoint[] = [
  ...["planned", "spawned", "launched", "exec", "program-done", "finalize", "released"]
    .map((phase) => ({ phase })),
  ...Array.from({ length: 60 }, (_, i) => ({ afterMs: i < 48 ? i : 48 + (i - 48) * 4 })),
];

/** Runs `points` over `lanes` in parallel, one trial at a time per lane. */
async function runLanes<L extends { trial(p: KillPoint): Promise<KillOutcome> }>(
  lanes: L[],
  points: KillPoint[],
): Promise<KillOutcome[]> {
  const queue = [...points];
  const out: KillOutcome[] = [];
  await Promise.all(lanes.map(async (lane) => {
    for (let p = queue.shift(); p; p = queue.shift()) out.push(await lane.trial(p));
  }));
  return out;
}

/**
 * `n` time offsets spread over the span of the time points of `points` that
 * a kill reached (the longest one reached, at least 1 ms), shifted by
 * `round` so that no two rounds share an offset: fractions of a millisecond
 * between the whole ones.
 */
function offsetsWithin(
  points: KillPoint[],
  outcomes: KillOutcome[],
  n: number,
  round: number,
): KillPoint[] {
  const reached = new Set(outcomes.filter((o) => o.result !== "completed").map((o) => o.point));
  const spans = points.filter((p) => "afterMs" in p && reached.has(pointName(p)))
    .map((p) => "afterMs" in p ? p.afterMs : 0);
  const span = Math.max(1, ...spans);
  const shift = (round + 1) / 4; // 0.25, 0.5, 0.75 of a step
  return Array.from({ length: n }, (_, i) => ({
    afterMs: Math.round(((i + shift) * span / n) * 1000) / 1000,
  }));
}

function summary(outcomes: KillOutcome[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const o of outcomes) counts[o.result] = (counts[o.result] ?? 0) + 1;
  return counts;
}

Deno.test(
  "kill anywhere: cryo dump SIGKILLed at 50+ points never loses both the target and its image",
  withTargets(async () => {
    const lanes = await Promise.all([DumpLane.start(), DumpLane.start()]);
    const outcomes = await runLanes(lanes, DUMP_POINTS);
    const counts = summary(outcomes);
    console.log(`dump kill points: ${outcomes.length}`, counts);
    const missed = outcomes.filter((o) => o.result === "completed").map((o) => o.point);
    if (missed.length) console.log(`not reached (the dump completed first): ${missed.join(" ")}`);
    const killed = outcomes.filter((o) => o.result !== "completed").length;
    assert.ok(killed >= 50, `only ${killed} points were reached`);
    assert.ok((counts["target-intact"] ?? 0) > 0 && (counts.image ?? 0) > 0, "both outcomes seen");
  }),
);

Deno.test(
  "kill anywhere: cryo restore SIGKILLed at 50+ points leaves nothing half-restored; the image restores",
  withTargets(async () => {
    const lanes = await Promise.all([RestoreLane.start(), RestoreLane.start()]);
    const outcomes = await runLanes(lanes, RESTORE_POINTS);
    const killedOf = () => outcomes.filter((o) => o.result !== "completed").length;
    // A faster restore is over before the later offsets: more offsets, between
    // the ones already there, inside the span that the kills reached.
    for (let round = 0; killedOf() < 50 && round < 3; round++) {
      const more = offsetsWithin(RESTORE_POINTS, outcomes, 30, round);
      outcomes.push(...await runLanes(lanes, more));
    }
    const counts = summary(outcomes);
    console.log(`restore kill points: ${outcomes.length}`, counts);
    const killed = killedOf();
    assert.ok(killed >= 50, `only ${killed} points were reached`);
    for (const lane of lanes) await lane.finish();
  }),
);
