/**
 * Kill-anywhere campaign (many more points than tests/kill_anywhere_test.ts):
 * SIGKILLs `cryo dump` and `cryo restore` at every phase boundary, at every
 * injected syscall (`inject:1..N`) and page chunk (`pages:1..N`), and at
 * random time offsets, checking each time (tests/helpers/kill_anywhere.ts).
 *
 *   deno run -A scripts/kill_anywhere.ts [--inject 120] [--mid 40] [--pages 30]
 *     [--offsets 100] [--max-ms 800] [--lanes 3] [--seed 1] [--only dump|restore]
 *     [--no-phases] [--points phase,phase:n,...]
 *
 * `--mid N` adds the points inside injected syscalls: `inject-mid:1..N`
 * (the injected registers are set, the syscall has not run) and
 * `inject-restore:1..N` (a thread back in its interrupt stop, its own mask
 * put back but not yet its registers). Time offsets are taken from the
 * freeze (so many fall inside injected syscalls) and, as many again, from
 * the moment the pages stream. Prints one line per point and
 * a summary; a failed point is counted, its lane starts a fresh target and
 * the campaign goes on; exits 1 if any point failed.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { cleanupTargets } from "../tests/helpers/targets.ts";
import { removeTempDirs } from "../tests/helpers/fs.ts";
import {
  DumpLane,
  type KillOutcome,
  type KillPoint,
  pointName,
  RestoreLane,
} from "../tests/helpers/kill_anywhere.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    inject: { type: "string", default: "120" },
    mid: { type: "string", default: "40" },
    "no-phases": { type: "boolean", default: false },
    points: { type: "string", default: "" },
    pages: { type: "string", default: "30" },
    offsets: { type: "string", default: "100" },
    "max-ms": { type: "string", default: "800" },
    lanes: { type: "string", default: "3" },
    seed: { type: "string", default: "1" },
    only: { type: "string" },
  },
});

let seed = Number(values.seed) >>> 0 || 1;
/** xorshift32: reproducible offsets for a seed. */
function random(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 2 ** 32;
}
const offsets = (n: number, fromPages = false) =>
  Array.from({ length: n }, () => ({
    afterMs: Math.floor(random() * Number(values["max-ms"])),
    fromPages,
  }));

const phases = values["no-phases"] ? [] : [
  ..."frozen collect scratch ghosts notes written manifest fsync rename killed".split(" ")
    .map((phase) => ({ phase })),
];
const dumpPoints: KillPoint[] = [
  ...phases,
  ...values.points.split(",").filter(Boolean).map((phase) => ({ phase })),
  ...Array.from({ length: Number(values.inject) }, (_, i) => ({ phase: `inject:${i + 1}` })),
  ...Array.from({ length: Number(values.mid) }, (_, i) => [
    { phase: `inject-mid:${i + 1}` },
    { phase: `inject-restore:${i + 1}` },
  ]).flat(),
  ...Array.from({ length: Number(values.pages) }, (_, i) => ({ phase: `pages:${i + 1}` })),
  ...offsets(Number(values.offsets)),
  ...offsets(Number(values.offsets), true),
];
const restorePoints: KillPoint[] = values["no-phases"] ? offsets(Number(values.offsets)) : [
  ..."planned spawned launched exec program-done finalize released".split(" ")
    .map((phase) => ({ phase })),
  ...offsets(Number(values.offsets)),
];

let failures = 0;

async function campaign<L extends { trial(p: KillPoint): Promise<KillOutcome> }>(
  what: string,
  start: () => Promise<L>,
  points: KillPoint[],
): Promise<L[]> {
  const queue = [...points];
  const counts: Record<string, number> = {};
  const lanes: L[] = await Promise.all(Array.from({ length: Number(values.lanes) }, start));
  await Promise.all(lanes.map(async (_, i) => {
    for (let p = queue.shift(); p; p = queue.shift()) {
      let o: KillOutcome;
      try {
        o = await lanes[i].trial(p);
      } catch (e) {
        console.log(`${what} ${pointName(p)}: FAILED: ${(e as Error).message.split("\n")[0]}`);
        counts.FAILED = (counts.FAILED ?? 0) + 1;
        failures++;
        lanes[i] = await start();
        continue;
      }
      counts[o.result] = (counts[o.result] ?? 0) + 1;
      console.log(`${what} ${o.point}: ${o.result}`);
    }
  }));
  console.log(`${what}: ${points.length} points:`, counts);
  return lanes;
}

try {
  if (values.only !== "restore") await campaign("dump", () => DumpLane.start(), dumpPoints);
  if (values.only !== "dump") {
    const lanes = await campaign("restore", () => RestoreLane.start(), restorePoints);
    for (const lane of lanes) await lane.finish();
  }
} finally {
  await cleanupTargets();
  await removeTempDirs();
}
if (failures) Deno.exit(1);
