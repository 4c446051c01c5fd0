/**
 * `deno task bench [--quick] [--out results.json]`: cryo's benchmark.
 *
 * Builds the workloads (scripts/bench/*.c, python3), and for each one, for
 * every repetition, alternates the raw C baselines with cryo (baseline
 * dump, cryo dump --leave-running, baseline restore, kill the workload,
 * cryo restore; and again with --no-verify), each cryo operation in its own
 * `deno run -A cli.ts ...` process so its peak RSS is cryo's own. Prints
 * the table, the baselines and the target checks; `--out` writes JSON.
 *
 * Options: --quick (64 and 512 MiB, small python heap; < 3 min on 2 cores),
 * --out <file>, --reps <n> (default 3), --only <name[,name]>,
 * --no-verify-runs=false (skip the --no-verify restores),
 * --deno-flag <flag> (passed to each cryo process, e.g. --v8-flags=--perf-basic-prof),
 * --keep (keep the work directory with all logs).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { buildBenchProgram } from "./bench/build.ts";
import { becomeSubreaper, cleanupProcesses, killAndReap } from "./bench/procs.ts";
import {
  rssAnonBytes,
  startWorkload,
  verifyWorkload,
  workloads,
  type WorkloadSpec,
} from "./bench/workloads.ts";
import {
  baselineDump,
  baselineRestore,
  cryoDump,
  cryoRestore,
  type CryoRuntime,
  writeRanges,
} from "./bench/measure.ts";
import {
  baselineRows,
  checkTargets,
  type Repetition,
  resultRows,
  summarize,
  targetRows,
  textTable,
  type WorkloadResult,
} from "./bench/report.ts";

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean", default: false },
    out: { type: "string" },
    reps: { type: "string", default: "3" },
    only: { type: "string" },
    "no-verify-runs": { type: "string", default: "true" },
    "deno-flag": { type: "string", multiple: true, default: [] },
    keep: { type: "boolean", default: false },
    "cryo-first": { type: "boolean", default: false },
    alternate: { type: "boolean", default: false },
  },
});
const reps = Number(opts.reps);
const runtime: CryoRuntime = { denoFlags: opts["deno-flag"] ?? [] };
const noVerifyRuns = opts["no-verify-runs"] !== "false";
const log = (s: string) => console.error(`bench: ${s}`);

async function removeQuietly(path: string): Promise<void> {
  await Deno.remove(path, { recursive: true }).catch(() => {});
}

async function runWorkload(spec: WorkloadSpec, workDir: string): Promise<WorkloadResult> {
  const t0 = performance.now();
  const w = await startWorkload(spec, workDir);
  const touched = spec.touchedBytes ?? rssAnonBytes(w.child.pid);
  log(
    `${spec.name}: ready in ${((performance.now() - t0) / 1000).toFixed(1)} s (pid ${w.child.pid})`,
  );
  const results: Repetition[] = [];
  try {
    for (let i = 0; i < reps; i++) {
      const base = `${workDir}/${spec.name}-${i}`;
      const blFile = `${base}.baseline.bin`;
      const imgDir = `${base}.image`;
      try {
        const rangesBytes = writeRanges(w.child.pid, `${base}.ranges`);
        const bd = await baselineDump(w.child.pid, `${base}.ranges`, blFile, `${base}.bl-dump.log`);
        if (bd.bytes !== rangesBytes) {
          throw new Error(`baseline read ${bd.bytes} of ${rangesBytes}`);
        }
        const cd = await cryoDump(w, imgDir, `${base}.dump`, runtime);
        const br = await baselineRestore(blFile, bd.bytes, `${base}.bl-restore.log`);
        await killAndReap(w.child.pid);
        const cr = await cryoRestore(w, imgDir, true, `${base}.restore`, runtime);
        const rep: Repetition = {
          baselineDump: bd,
          cryoDump: cd,
          baselineRestore: br,
          cryoRestore: cr,
        };
        if (noVerifyRuns) {
          rep.baselineRestore2 = await baselineRestore(blFile, bd.bytes, `${base}.bl-restore2.log`);
          await killAndReap(w.child.pid);
          rep.cryoRestoreNoVerify = await cryoRestore(
            w,
            imgDir,
            false,
            `${base}.restore-nv`,
            runtime,
          );
        }
        results.push(rep);
        log(
          `${spec.name} #${i + 1}: dump ${cd.stats.dumpSeconds.toFixed(3)} s ` +
            `(baseline ${bd.seconds.toFixed(3)} s), freeze ${
              cd.stats.freezeSeconds.toFixed(3)
            } s, ` +
            `restore ${cr.seconds.toFixed(3)} s (baseline ${br.seconds.toFixed(3)} s)` +
            (rep.cryoRestoreNoVerify
              ? `, no-verify ${rep.cryoRestoreNoVerify.seconds.toFixed(3)} s (baseline ${
                rep.baselineRestore2!.seconds.toFixed(3)
              } s)`
              : ""),
        );
      } finally {
        await removeQuietly(blFile);
        await removeQuietly(imgDir);
      }
    }
    await verifyWorkload(w);
  } finally {
    await killAndReap(w.child.pid).catch(() => {});
  }
  return summarize(spec.name, spec.description, touched, results);
}

function markdownTable(rows: string[][]): string {
  const line = (r: string[]) => `| ${r.join(" | ")} |`;
  return [line(rows[0]), line(rows[0].map(() => "---")), ...rows.slice(1).map(line)].join("\n");
}

async function main(): Promise<number> {
  becomeSubreaper();
  let specs = workloads(opts.quick);
  if (opts.only) {
    const names = new Set(opts.only.split(","));
    specs = specs.filter((s) => names.has(s.name));
  }
  // Compile everything before any workload runs.
  await buildBenchProgram("workload");
  await buildBenchProgram("baseline");
  const workDir = await Deno.makeTempDir({ prefix: "cryo-bench-" });
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    log("interrupted: cleaning up");
    cleanupProcesses().finally(async () => {
      if (!opts.keep) await removeQuietly(workDir);
      Deno.exit(130);
    });
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const t0 = performance.now();
  const results: WorkloadResult[] = [];
  const failures: { name: string; error: string }[] = [];
  try {
    for (const spec of specs) {
      if (interrupted) break;
      try {
        results.push(await runWorkload(spec, workDir));
      } catch (e) {
        failures.push({ name: spec.name, error: String((e as Error)?.stack ?? e) });
        log(`${spec.name} FAILED: ${(e as Error)?.message ?? e}`);
      }
    }
  } finally {
    await cleanupProcesses();
    if (opts.keep) log(`work directory kept: ${workDir}`);
    else await removeQuietly(workDir);
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
  const seconds = (performance.now() - t0) / 1000;
  const checks = checkTargets(results);
  console.log(textTable(resultRows(results)));
  console.log("\nbaselines (C, same bytes, same run, alternating with cryo):");
  console.log(textTable(baselineRows(results)));
  console.log("\ntargets:");
  console.log(textTable(targetRows(checks)));
  for (const f of failures) console.log(`\nFAILED ${f.name}: ${f.error}`);
  console.log(`\n${results.length} workloads, ${reps} repetitions, ${seconds.toFixed(0)} s`);
  if (opts.out) {
    const doc = {
      date: new Date().toISOString(),
      quick: opts.quick,
      repetitions: reps,
      seconds,
      host: {
        kernel: Deno.osRelease(),
        cpus: navigator.hardwareConcurrency,
        memoryBytes: Deno.systemMemoryInfo().total,
        deno: Deno.version.deno,
      },
      workloads: results,
      baselines: results.map((r) => r.baseline),
      targets: checks,
      failures,
      markdown: {
        results: markdownTable(resultRows(results)),
        baselines: markdownTable(baselineRows(results)),
        targets: markdownTable(targetRows(checks)),
      },
    };
    await Deno.writeTextFile(opts.out, JSON.stringify(doc, null, 2) + "\n");
    log(`wrote ${opts.out}`);
  }
  return failures.length ? 1 : 0;
}

Deno.exit(await main());
