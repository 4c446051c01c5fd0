/**
 * Kill-anywhere campaign (many more points than tests/kill_anywhere_test.ts):
 * SIGKILLs `cryo dump` and `cryo restore` at every phase boundary, at every
 * injected syscall (`inject:1..N`) and page chunk (`pages:1..N`), and at
 * random time offsets, checking each time (tests/helpers/kill_anywhere.ts).
 *
 *   deno run -A scripts/kill_anywhere.ts [--inject 120] [--pages 30]
 *     [--offsets 100] [--max-ms 800] [--lanes 3] [--seed 1] [--only dump|restore]
 *
 * Prints one line per point and a summary; exits 1 at the first failure.
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
const offsets = (n: number) =>
  Array.from({ length: n }, () => ({ afterMs: Math.floor(random() * Number(values["max-ms"])) }));

const dumpPoints: KillPoint[] = [
  ..."frozen collect scratch ghosts notes written manifest fsync rename killed".split(" ")
    .map((phase) => ({ phase })),
  ...Array.from({ length: Number(values.inject) }, (_, i) => ({ phase: `inject:${i + 1}` })),
  ...Array.from({ length: Number(values.pages) }, (_, i) => ({ phase: `pages:${i + 1}` })),
  ...offsets(Number(values.offsets)),
];
const restorePoints: KillPoint[] = [
  ..."planned spawned launched exec program-done finalize released".split(" ")
    .map((phase) => ({ phase })),
  ...offsets(Number(values.offsets)),
];

async function campaign<L extends { trial(p: KillPoint): Promise<KillOutcome> }>(
  what: string,
  lanes: L[],
  points: KillPoint[],
): Promise<void> {
  const queue = [...points];
  const counts: Record<string, number> = {};
  await Promise.all(lanes.map(async (lane) => {
    for (let p = queue.shift(); p; p = queue.shift()) {
      let o: KillOutcome;
      try {
        o = await lane.trial(p);
      } catch (e) {
        console.log(`${what} ${pointName(p)}: FAILED: ${(e as Error).message}`);
        await cleanupTargets();
        Deno.exit(1);
      }
      counts[o.result] = (counts[o.result] ?? 0) + 1;
      console.log(`${what} ${o.point}: ${o.result}`);
    }
  }));
  console.log(`${what}: ${points.length} points:`, counts);
}

const n = Number(values.lanes);
try {
  if (values.only !== "restore") {
    const lanes = await Promise.all(Array.from({ length: n }, () => DumpLane.start()));
    await campaign("dump", lanes, dumpPoints);
  }
  if (values.only !== "dump") {
    const lanes = await Promise.all(Array.from({ length: n }, () => RestoreLane.start()));
    await campaign("restore", lanes, restorePoints);
    for (const lane of lanes) await lane.finish();
  }
} finally {
  await cleanupTargets();
  await removeTempDirs();
}
