/**
 * `deno task bench [--quick] [--out results.json]`: cryo's benchmark.
 *
 * Builds the workloads (scripts/bench/*.c, python3), and for each one, for
 * every repetition, alternates the raw C baselines with cryo (baseline
 * dump, cryo dump --leave-running, baseline restore, kill the workload,
 * cryo restore; and again with --no-verify; every other repetition with
 * cryo first), each cryo operation in its own
 * `deno run -A cli.ts ...` process so its peak RSS is cryo's own. Prints
 * the table, the baselines and the target checks; `--out` writes JSON.
 *
 * Options: --quick (64 and 512 MiB, small python heap; < 3 min on 2 cores),
 * --out <file>, --reps <n> (default 3), --warmup-reps <n> (default 1: run first,
 * not counted; the first contact with fresh memory is the slowest), --only <name[,name]>,
 * --no-verify-runs=false (skip the --no-verify restores),
 * --deno-flag <flag> (passed to each cryo process, e.g. --v8-flags=--perf-basic-prof),
 * --keep (keep the work directory with all logs), --fixed-order (baseline always first),
 * --no-warm (skip freeing recently used memory before each measurement; see
 * `baseline warm` in scripts/bench/baseline.c), --vs-criu (compare with CRIU instead of
 * the C baselines when a `criu` binary is on PATH or in $CRIU; see scripts/bench/criu.ts),
 * --variant-flag <flag> (with --vs-criu: the second cryo dump of each repetition runs with
 * this flag instead of --no-sync, e.g. --variant-flag=--no-precopy for an interleaved A/B).
 * --clones [--copies <n>] (instead: start n copies, default 10, of one 256 MiB checkpoint at
 * once, each in its own pid namespace; see scripts/bench/clones.ts).
 *
 * Near-zero downtime (issue 11; scripts/bench/nearzero.ts): a writer rewriting random pages at
 * a fixed rate, at 512 MiB and 2 GiB: frozen time of a plain dump vs after 1-3 pre-dumps, lazy
 * vs eager restore, live migration over loopback, each restored writer checking its memory.
 * `--near-zero` runs only this section; a full run (no --quick, --only, --vs-criu, --clones)
 * runs it after the workloads. --near-zero-mib <MiB[,MiB]> (default 512,2048),
 * --near-zero-parts <predump,lazy,migrate> (default all), --rate <MiB/s> (default 16),
 * --gap-ms <ms> (pause between the dumps of a chain, default 1000). --reps applies too.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { compareWithCriu, findCriu, vsRows, type VsSummary } from "./bench/criu.ts";
import { buildBenchProgram } from "./bench/build.ts";
import {
  mainNearZero,
  NEAR_ZERO_PARTS,
  nearZeroFailed,
  type NearZeroOptions,
  type NearZeroPart,
  nearZeroReport,
  runNearZero,
} from "./bench/nearzero.ts";
import type { NearZeroResult } from "./bench/nearzero_report.ts";
import { becomeSubreaper, cleanupProcesses } from "./bench/procs.ts";
import {
  killWorkload,
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
  prepareCli,
  warmMemory,
  writeRanges,
} from "./bench/measure.ts";
import {
  baselineRows,
  checkTargets,
  hostFacts,
  markdownTable,
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
    "warmup-reps": { type: "string", default: "1" },
    only: { type: "string" },
    "no-verify-runs": { type: "string", default: "true" },
    "deno-flag": { type: "string", multiple: true, default: [] },
    keep: { type: "boolean", default: false },
    "fixed-order": { type: "boolean", default: false },
    "no-warm": { type: "boolean", default: false },
    "vs-criu": { type: "boolean", default: false },
    "variant-flag": { type: "string", multiple: true },
    clones: { type: "boolean", default: false },
    copies: { type: "string", default: "10" },
    "near-zero": { type: "boolean", default: false },
    "near-zero-mib": { type: "string", default: "512,2048" },
    "near-zero-parts": { type: "string", default: NEAR_ZERO_PARTS.join(",") },
    rate: { type: "string", default: "16" },
    "gap-ms": { type: "string", default: "1000" },
  },
});
/** The near-zero downtime section's options, from the command line. */
const nearZeroOptions: NearZeroOptions = {
  sizes: opts["near-zero-mib"].split(",").map(Number),
  parts: opts["near-zero-parts"].split(",").map((p) => {
    if (!NEAR_ZERO_PARTS.includes(p as NearZeroPart)) {
      throw new Error(`--near-zero-parts: ${p}? (${NEAR_ZERO_PARTS.join(", ")})`);
    }
    return p as NearZeroPart;
  }),
  rate: Number(opts.rate),
  gapMs: Number(opts["gap-ms"]),
  reps: Number(opts.reps),
};
if (opts["near-zero"]) {
  Deno.exit(await mainNearZero({ ...nearZeroOptions, out: opts.out }));
}
/** A full run includes the near-zero downtime section. */
const withNearZero = !opts.quick && !opts.only && !opts["vs-criu"];
if (opts.clones) {
  // Many copies of one checkpoint at once, each in its own pid namespace (scripts/bench/clones.ts).
  const { runClonesBench } = await import("./bench/clones.ts");
  await runClonesBench({ copies: Number(opts.copies), mib: 256, out: opts.out });
  Deno.exit(0);
}
const reps = Number(opts.reps);
const warmupReps = Number(opts["warmup-reps"]);
const runtime: CryoRuntime = { denoFlags: opts["deno-flag"] ?? [] };
const noVerifyRuns = opts["no-verify-runs"] !== "false";
const warm = !opts["no-warm"];
const log = (s: string) => console.error(`bench: ${s}`);

/** Runs two measurements one after the other (never concurrently); resolves both results. */
async function inOrder<A, B>(a: () => Promise<A>, b: () => Promise<B>): Promise<[A, B]> {
  const ra = await a();
  const rb = await b();
  return [ra, rb];
}

/** The 1-minute load average (other work on the machine makes every figure noisier). */
function loadAverage(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
  } catch {
    return -1;
  }
}

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
  let verifyError: string | undefined;
  try {
    // Repetitions below 0 are warm-ups: measured and logged, not counted.
    for (let i = -warmupReps; i < reps; i++) {
      const base = `${workDir}/${spec.name}-${i}`;
      const blFile = `${base}.baseline.bin`;
      const imgDir = `${base}.image`;
      try {
        // Alternate which of the two goes first, so neither always meets the warmer memory.
        const cryoFirst = !opts["fixed-order"] && Math.abs(i % 2) === 1;
        const rangesBytes = writeRanges(w.child.pid, `${base}.ranges`);
        // Every measured operation starts right after the same amount of memory was freed.
        const warmBytes = Math.round(rangesBytes * 1.1) + (256 << 20);
        const warmed = <T>(fn: () => Promise<T>) => async () => {
          if (warm) await warmMemory(warmBytes, `${base}.warm.log`);
          return await fn();
        };
        const dumpBaseline = warmed(async () => {
          const r = await baselineDump(
            w.child.pid,
            `${base}.ranges`,
            blFile,
            `${base}.bl-dump.log`,
          );
          if (r.bytes !== rangesBytes) {
            throw new Error(`baseline read ${r.bytes} of ${rangesBytes}`);
          }
          return r;
        });
        const dumpCryo = warmed(() => cryoDump(w, imgDir, `${base}.dump`, runtime));
        const [bd, cd] = cryoFirst
          ? await inOrder(dumpCryo, dumpBaseline).then(([c, b]) => [b, c] as const)
          : await inOrder(dumpBaseline, dumpCryo);
        const restorePair = (verify: boolean, label: string) => {
          const baseline = warmed(() =>
            baselineRestore(blFile, bd.bytes, `${base}.bl-${label}.log`)
          );
          const cryo = async () => {
            await killWorkload(w);
            return await warmed(() =>
              cryoRestore(w, imgDir, verify, `${base}.${label}`, runtime)
            )();
          };
          return cryoFirst
            ? inOrder(cryo, baseline).then(([c, b]) => [b, c] as const)
            : inOrder(baseline, cryo);
        };
        const [br, cr] = await restorePair(true, "restore");
        const rep: Repetition = {
          baselineDump: bd,
          cryoDump: cd,
          baselineRestore: br,
          cryoRestore: cr,
          cryoFirst,
          loadAverage: loadAverage(),
        };
        if (noVerifyRuns) {
          [rep.baselineRestore2, rep.cryoRestoreNoVerify] = await restorePair(false, "restore-nv");
        }
        if (i >= 0) results.push(rep);
        log(
          `${spec.name} ${i < 0 ? "warm-up" : `#${i + 1}`}${
            cryoFirst ? " (cryo first)" : ""
          }: dump ${cd.stats.dumpSeconds.toFixed(3)} s (baseline ${
            bd.seconds.toFixed(3)
          } s), freeze ${cd.stats.freezeSeconds.toFixed(3)} s, ` +
            `restore ${cr.seconds.toFixed(3)} s (baseline ${br.seconds.toFixed(3)} s)` +
            (rep.cryoRestoreNoVerify
              ? `, no-verify ${rep.cryoRestoreNoVerify.seconds.toFixed(3)} s (baseline ${
                rep.baselineRestore2!.seconds.toFixed(3)
              } s)`
              : "") +
            `, load ${rep.loadAverage}`,
        );
      } finally {
        await removeQuietly(blFile);
        await removeQuietly(imgDir);
      }
    }
    try {
      await verifyWorkload(w);
    } catch (e) {
      verifyError = (e as Error).message;
      log(`${spec.name}: ${verifyError}`);
    }
  } finally {
    await killWorkload(w).catch(() => {});
  }
  return { ...summarize(spec.name, spec.description, touched, results), verifyError };
}

/** `--vs-criu`: every workload compared with CRIU; prints the table, `--out` writes JSON. */
async function mainVsCriu(criu: string, specs: WorkloadSpec[]): Promise<number> {
  await buildBenchProgram("workload");
  await buildBenchProgram("baseline");
  await prepareCli();
  const workDir = await Deno.makeTempDir({ prefix: "cryo-bench-" });
  const onSignal = () => {
    log("interrupted: cleaning up");
    cleanupProcesses().finally(async () => {
      if (!opts.keep) await removeQuietly(workDir);
      Deno.exit(130);
    });
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const loadAtStart = loadAverage();
  const t0 = performance.now();
  const results: VsSummary[] = [];
  try {
    for (const spec of specs) {
      let w;
      try {
        w = await startWorkload(spec, workDir);
        log(`${spec.name}: ready (pid ${w.child.pid})`);
        const reps = await compareWithCriu(criu, w, workDir, {
          reps: Number(opts.reps),
          warmupReps,
          warm,
          rt: runtime,
          log,
          variantFlags: opts["variant-flag"],
        });
        results.push({ name: spec.name, reps });
      } catch (e) {
        log(`${spec.name} FAILED: ${(e as Error)?.message ?? e}`);
        const done = (e as { repsDone?: VsSummary["reps"] }).repsDone ?? [];
        results.push({ name: spec.name, reps: done, error: String((e as Error)?.message ?? e) });
      } finally {
        if (w) await killWorkload(w).catch(() => {});
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
  console.log(textTable(vsRows(results, opts["variant-flag"])));
  for (const r of results) if (r.error) console.log(`\nFAILED ${r.name}: ${r.error}`);
  console.log(
    `\n${results.length} workloads vs ${criu}, ${reps} repetitions, ${seconds.toFixed(0)} s`,
  );
  if (opts.out) {
    const doc = {
      date: new Date().toISOString(),
      criu,
      loadAverageAtStart: loadAtStart,
      loadAverageAtEnd: loadAverage(),
      quick: opts.quick,
      repetitions: reps,
      seconds,
      host: {
        kernel: Deno.osRelease(),
        cpus: navigator.hardwareConcurrency,
        deno: Deno.version.deno,
      },
      workloads: results,
      markdown: markdownTable(vsRows(results, opts["variant-flag"])),
    };
    await Deno.writeTextFile(opts.out, JSON.stringify(doc, null, 2) + "\n");
    log(`wrote ${opts.out}`);
  }
  return results.some((r) => r.error) ? 1 : 0;
}

async function main(): Promise<number> {
  becomeSubreaper();
  let specs = workloads(opts.quick);
  if (opts.only) {
    const names = new Set(opts.only.split(","));
    specs = specs.filter((s) => names.has(s.name));
  }
  if (opts["vs-criu"]) {
    const criu = findCriu();
    if (criu) return await mainVsCriu(criu, specs);
    log("--vs-criu: no criu binary on PATH or in $CRIU; running the usual bench");
  }
  // Compile everything before any workload runs.
  await buildBenchProgram("workload");
  await buildBenchProgram("baseline");
  await prepareCli();
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
  const loadAtStart = loadAverage();
  if (loadAtStart > 0.5) log(`load average ${loadAtStart}: other work on this machine adds noise`);
  const t0 = performance.now();
  const results: WorkloadResult[] = [];
  const failures: { name: string; error: string }[] = [];
  let nearZero: NearZeroResult | undefined;
  try {
    for (const spec of specs) {
      if (interrupted) break;
      try {
        const r = await runWorkload(spec, workDir);
        results.push(r);
        if (r.verifyError) failures.push({ name: spec.name, error: r.verifyError });
      } catch (e) {
        failures.push({ name: spec.name, error: String((e as Error)?.stack ?? e) });
        log(`${spec.name} FAILED: ${(e as Error)?.message ?? e}`);
      }
    }
    if (withNearZero && !interrupted) {
      nearZero = await runNearZero({ ...nearZeroOptions, log, workDir });
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
  const nz = nearZero && nearZeroReport(nearZero);
  if (nz) console.log(`\nnear-zero downtime (writer ${nearZero!.rateMiBs} MiB/s):\n${nz.text}`);
  if (nearZero && nearZeroFailed(nearZero)) {
    failures.push({ name: "near-zero", error: "a part failed or a memory check is wrong" });
  }
  for (const f of failures) console.log(`\nFAILED ${f.name}: ${f.error}`);
  console.log(`\n${results.length} workloads, ${reps} repetitions, ${seconds.toFixed(0)} s`);
  if (opts.out) {
    const doc = {
      date: new Date().toISOString(),
      loadAverageAtStart: loadAtStart,
      loadAverageAtEnd: loadAverage(),
      quick: opts.quick,
      repetitions: reps,
      warmupRepetitions: warmupReps,
      seconds,
      host: hostFacts(),
      workloads: results,
      baselines: results.map((r) => r.baseline),
      targets: checks,
      failures,
      markdown: {
        results: markdownTable(resultRows(results)),
        baselines: markdownTable(baselineRows(results)),
        targets: markdownTable(targetRows(checks)),
      },
      nearZero: nearZero && { ...nearZero, targets: nz!.targets, markdown: nz!.markdown },
    };
    await Deno.writeTextFile(opts.out, JSON.stringify(doc, null, 2) + "\n");
    log(`wrote ${opts.out}`);
  }
  return failures.length ? 1 : 0;
}

Deno.exit(await main());
