/**
 * `deno run -A scripts/soak_policy.ts [--minutes 10] [--every-ms 1000] [--keep 3] [--write-ms 5]
 * [--out figures.json]`: the policy soak of issue 13 (tests/soak_test.ts runs 20 s of it).
 *
 * A policy (engine/policy, through `runPolicy`) checkpoints
 * tests/targets/soak_writer.c, which writes a 32-byte record every
 * `write-ms` to a data file and keeps them in memory, every `every-ms` for
 * `minutes`, keeping `keep`. After every checkpoint and every pruning the
 * checkpoint directory must hold exactly the newest ones the retention
 * allows, with `latest` on the newest; every new checkpoint is loaded and
 * verified as a restore would (checksums, validation, compilation). At the
 * end the run is stopped (the target killed), the latest image restored, and
 * the target checks its memory and data file. Prints progress every 30 s
 * and the figures at the end (and writes them as JSON with `--out`); exits
 * 1 on any violation or failed self-check.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { removeTempDirs } from "../tests/helpers/fs.ts";
import { runSoak } from "../tests/helpers/soak.ts";
import { cleanupTargets } from "../tests/helpers/targets.ts";

const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "10" },
    "every-ms": { type: "string", default: "1000" },
    keep: { type: "string", default: "3" },
    "write-ms": { type: "string", default: "5" },
    out: { type: "string" },
  },
});
const opts = {
  durationMs: Number(values.minutes) * 60000,
  everyMs: Number(values["every-ms"]),
  keep: Number(values.keep),
  writeMs: Number(values["write-ms"]),
};
console.log(
  `soak: ${values.minutes} min, a checkpoint every ${opts.everyMs} ms, keep ${opts.keep}, ` +
    `a record every ${opts.writeMs} ms`,
);

let ok = false;
try {
  const f = await runSoak({ ...opts, progress: (l) => console.log(l) });
  const report = f.restored.output();
  const passed = /^PASS$/m.test(report) && !/FAIL/.test(report) &&
    f.restoredExit.kind === "exited" && f.restoredExit.code === 0;
  const ms = (s: { min: number; mean: number; max: number }) =>
    `${(s.min * 1000).toFixed(0)}/${(s.mean * 1000).toFixed(0)}/${(s.max * 1000).toFixed(0)} ms`;
  console.log(`checkpoints: ${f.checkpoints} complete, ${f.failed} failed, ${f.pruned} pruned`);
  console.log(`retention checks: ${f.retentionChecks}, checkpoints verified: ${f.verified}`);
  console.log(`dump min/mean/max: ${ms(f.dumpSeconds)}; frozen: ${ms(f.freezeSeconds)}`);
  console.log(`image: ${(f.imageBytes / 2 ** 20).toFixed(2)} MiB`);
  console.log(
    `latest restored in ${f.restoreSeconds.toFixed(2)} s; self-check ${passed ? "PASS" : "FAIL"}` +
      `, ${f.records} records`,
  );
  console.log(`violations: ${f.violations.length}`);
  for (const v of f.violations) console.log(`  ${v}`);
  if (!passed) console.log(report);
  if (values.out) {
    const { restored: _r, ...figures } = f;
    await Deno.writeTextFile(
      values.out,
      JSON.stringify({ options: opts, ...figures, selfCheck: passed }, null, 2) + "\n",
    );
  }
  ok = passed && f.violations.length === 0;
} catch (e) {
  console.error(`FAILED: ${e instanceof Error ? e.stack : e}`);
} finally {
  await cleanupTargets();
  await removeTempDirs();
}
Deno.exit(ok ? 0 : 1);
