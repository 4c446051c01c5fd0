/**
 * The near-zero downtime section of `deno task bench` (issue 11): for each
 * size, one writer (scripts/bench/dirtier.c, a fixed MiB/s of rewrites,
 * a 1 ms heartbeat) goes through, in order,
 *
 * 1. pre-copy chains (scripts/bench/predump.ts): plain dump vs a dump
 *    after 1, 2, 3 pre-dumps, left running; then a chain of 3 whose final
 *    dump kills it, restored and checked;
 * 2. restores (scripts/bench/lazy.ts): eager and `--lazy`, each after a
 *    dump that kills it, checked;
 * 3. live migration over loopback (scripts/bench/migration.ts), restored
 *    eagerly and lazily, checked.
 *
 * Each restored writer is the same program (same pid, same output) and
 * runs on into the next measurement; one whose memory check failed is
 * replaced by a fresh writer. Figures and targets: nearzero_report.ts.
 *
 * @module
 */

import { becomeSubreaper, cleanupProcesses } from "./procs.ts";
import { dirtierSpec, killWorkload, type RunningWorkload, startWorkload } from "./workloads.ts";
import { checkChain, measurePreDumps } from "./predump.ts";
import { measureRestore } from "./lazy.ts";
import { measureMigration } from "./migration.ts";
import {
  type MemoryCheck,
  migrationRows,
  type NearZeroResult,
  nearZeroTargets,
  preDumpRows,
  restoreRows,
} from "./nearzero_report.ts";
import { hostFacts, markdownTable, targetRows, textTable } from "./report.ts";

/** The parts of the section. */
export type NearZeroPart = "predump" | "lazy" | "migrate";

/** Every part, in the order they run. */
export const NEAR_ZERO_PARTS: NearZeroPart[] = ["predump", "lazy", "migrate"];

/** What to run. */
export interface NearZeroOptions {
  /** Writer sizes, MiB (default 512 and 2048). */
  sizes?: number[];
  /** The writer's rate, MiB/s (default 16). */
  rate?: number;
  /** Repetitions of each measurement (default 1). */
  reps?: number;
  /** Pause between the dumps of a chain, ms (default 1000). */
  gapMs?: number;
  /** Parts to run (default all). */
  parts?: NearZeroPart[];
  /** Progress lines. */
  log?: (s: string) => void;
  /** Directory to make the work directory in (default the system's temporary directory). */
  workDir?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs the section; the caller is a child subreaper (becomeSubreaper) and cleans up processes. */
export async function runNearZero(opts: NearZeroOptions): Promise<NearZeroResult> {
  const sizes = opts.sizes ?? [512, 2048];
  const rate = opts.rate ?? 16, reps = opts.reps ?? 1, gapMs = opts.gapMs ?? 1000;
  const parts = new Set(opts.parts ?? NEAR_ZERO_PARTS);
  const log = opts.log ?? (() => {});
  const result: NearZeroResult = {
    rateMiBs: rate,
    gapMs,
    repetitions: reps,
    preDumps: [],
    chainChecks: [],
    restores: [],
    migrations: [],
    errors: [],
  };
  const work = await Deno.makeTempDir({ dir: opts.workDir, prefix: "cryo-bench-nearzero-" });
  try {
    for (const mib of sizes) {
      const spec = dirtierSpec(mib, rate);
      let w: RunningWorkload = await startWorkload(spec, work);
      log(`${spec.name}: ready (pid ${w.child.pid})`);
      await sleep(gapMs);
      const fresh = async () => {
        await killWorkload(w).catch(() => {});
        w = await startWorkload(spec, work);
        log(`${spec.name}: a fresh writer (pid ${w.child.pid})`);
        await sleep(gapMs);
      };
      /** Runs one measured step; a failure or a wrong memory check gets a fresh writer. */
      const step = async <T>(part: string, fn: () => Promise<T[]>, done: (r: T) => void) => {
        try {
          for (const r of await fn()) {
            done(r);
            log(`${spec.name} ${part}: ${JSON.stringify(r)}`);
            const check = (r as { check?: MemoryCheck }).check;
            if (check !== undefined && check !== "ok") await fresh();
          }
        } catch (e) {
          const error = String((e as Error)?.message ?? e);
          result.errors.push({ mib, part, error });
          log(`${spec.name} ${part} FAILED: ${error}`);
          await fresh();
        }
      };
      try {
        if (parts.has("predump")) {
          await step(
            "pre-copy",
            () => measurePreDumps(w, mib, reps, { work, gapMs }),
            (r) => result.preDumps.push(r),
          );
          await step(
            "chain check",
            async () => [await checkChain(w, mib, 3, { work, gapMs })],
            (r) => result.chainChecks.push(r),
          );
        }
        if (parts.has("lazy")) {
          for (let rep = 0; rep < reps; rep++) {
            for (const lazy of [false, true]) {
              await step(
                lazy ? "lazy restore" : "eager restore",
                async () => [await measureRestore(w, mib, lazy, work)],
                (r) => result.restores.push(r),
              );
            }
          }
        }
        if (parts.has("migrate")) {
          for (let rep = 0; rep < reps; rep++) {
            for (const lazy of [false, true]) {
              await sleep(gapMs); // the writer dirties pages before the first round
              await step(
                lazy ? "migration (lazy)" : "migration",
                async () => [await measureMigration(w, mib, lazy, work)],
                (r) => result.migrations.push(r),
              );
            }
          }
        }
      } finally {
        await killWorkload(w).catch(() => {});
      }
    }
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
  return result;
}

/** The section's tables (text and Markdown) and targets, for the console and the JSON. */
export function nearZeroReport(r: NearZeroResult) {
  const targets = nearZeroTargets(r);
  const tables = {
    preCopy: preDumpRows(r),
    restore: restoreRows(r),
    migration: migrationRows(r),
    targets: targetRows(targets),
  };
  const present = (rows: string[][]) => rows.length > 1;
  const titles: Record<keyof typeof tables, string> = {
    preCopy: "pre-copy chains (frozen time of the final dump)",
    restore: "lazy vs eager restore",
    migration: "live migration over loopback",
    targets: "near-zero downtime targets",
  };
  const text = (Object.keys(tables) as (keyof typeof tables)[])
    .filter((k) => present(tables[k]))
    .map((k) => `${titles[k]}:\n${textTable(tables[k])}`)
    .join("\n\n") +
    r.errors.map((e) => `\n\nFAILED ${e.mib} MiB ${e.part}: ${e.error}`).join("");
  const markdown = Object.fromEntries(
    (Object.keys(tables) as (keyof typeof tables)[])
      .filter((k) => present(tables[k]))
      .map((k) => [k, markdownTable(tables[k])]),
  );
  return { targets, text, markdown };
}

/** True when the run measured something wrong or failed (a wrong memory check, a failed part). */
export function nearZeroFailed(r: NearZeroResult): boolean {
  const checks = [...r.chainChecks, ...r.restores, ...r.migrations].map((x) => x.check);
  return r.errors.length > 0 || checks.some((c) => c !== "ok");
}

/**
 * The section on its own (`deno task bench --near-zero`, bench-predump,
 * bench-lazy): runs it, prints the tables and the load average, writes the
 * JSON document to `out`; returns the exit code (1 when something failed).
 */
export async function mainNearZero(opts: NearZeroOptions & { out?: string }): Promise<number> {
  becomeSubreaper();
  const log = opts.log ?? ((s: string) => console.error(`bench: ${s}`));
  const loadAtStart = loadAverage();
  log(`load average ${loadAtStart} at start`);
  const t0 = performance.now();
  const workDir = await Deno.makeTempDir({ prefix: "cryo-bench-" });
  const onSignal = () => {
    log("interrupted: cleaning up");
    cleanupProcesses().finally(async () => {
      await Deno.remove(workDir, { recursive: true }).catch(() => {});
      Deno.exit(130);
    });
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let r: NearZeroResult;
  try {
    r = await runNearZero({ ...opts, log, workDir });
  } finally {
    await cleanupProcesses();
    await Deno.remove(workDir, { recursive: true }).catch(() => {});
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
  const seconds = (performance.now() - t0) / 1000;
  const report = nearZeroReport(r);
  const loadAtEnd = loadAverage();
  console.log(report.text);
  console.log(
    `\nwriter ${r.rateMiBs} MiB/s, ${r.repetitions} repetition(s), ${seconds.toFixed(0)} s, ` +
      `load average ${loadAtStart} at start, ${loadAtEnd} at end`,
  );
  if (opts.out) {
    const doc = {
      date: new Date().toISOString(),
      loadAverageAtStart: loadAtStart,
      loadAverageAtEnd: loadAtEnd,
      seconds,
      host: hostFacts(),
      nearZero: { ...r, targets: report.targets, markdown: report.markdown },
    };
    await Deno.writeTextFile(opts.out, JSON.stringify(doc, null, 2) + "\n");
    log(`wrote ${opts.out}`);
  }
  return nearZeroFailed(r) ? 1 : 0;
}

/** The 1-minute load average (-1 when unreadable). */
export function loadAverage(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
  } catch {
    return -1;
  }
}
