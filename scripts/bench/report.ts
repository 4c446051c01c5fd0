/**
 * Turning benchmark runs into per-workload figures (medians of the
 * repetitions, ratios to the baselines measured alongside), the printed
 * table, the target checks and the JSON document.
 *
 * @module
 */

import type { BaselineRun, CryoDumpRun, CryoRestoreRun } from "./measure.ts";

const MiB = 1 << 20;

/** Everything measured in one repetition of one workload (baseline and cryo alternate). */
export interface Repetition {
  baselineDump: BaselineRun;
  cryoDump: CryoDumpRun;
  baselineRestore: BaselineRun;
  cryoRestore: CryoRestoreRun;
  baselineRestore2?: BaselineRun;
  cryoRestoreNoVerify?: CryoRestoreRun;
  /** This repetition ran cryo before the baseline. */
  cryoFirst: boolean;
  /** 1-minute load average after the repetition. */
  loadAverage: number;
}

/** The figures of one workload (medians over repetitions; ratios are medians of per-pair ratios). */
export interface WorkloadResult {
  name: string;
  description: string;
  touchedBytes: number;
  pagesBytes: number;
  imageBytes: number;
  imageOverTouched: number;
  freezeSeconds: number;
  observedFreezeSeconds: number | null;
  dumpSeconds: number;
  dumpWallSeconds: number;
  dumpBytesPerSec: number;
  dumpRatio: number;
  restoreSeconds: number;
  restoreBytesPerSec: number;
  restoreRatio: number;
  restoreUntilRunningSeconds: number;
  restoreNoVerifySeconds: number | null;
  restoreNoVerifyBytesPerSec: number | null;
  restoreNoVerifyRatio: number | null;
  cryoPeakRssBytes: number;
  cryoDumpPeakRssBytes: number;
  cryoRestorePeakRssBytes: number;
  baseline: BaselineFigures;
  repetitions: Repetition[];
  /** Set when the workload's own memory check failed after the last restore. */
  verifyError?: string;
}

/** Baseline figures of one workload's size. */
export interface BaselineFigures {
  workload: string;
  bytes: number;
  dumpSeconds: number;
  dumpBytesPerSec: number;
  restoreSeconds: number;
  restoreBytesPerSec: number;
}

/** Median of a non-empty list. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Summarizes the repetitions of one workload. */
export function summarize(
  name: string,
  description: string,
  touchedBytes: number,
  reps: Repetition[],
): WorkloadResult {
  const pages = median(reps.map((r) => r.cryoDump.stats.pagesBytes));
  const rate = (bytes: number, s: number) => bytes / s;
  const dumpRates = reps.map((r) =>
    rate(r.cryoDump.stats.pagesBytes, r.cryoDump.stats.dumpSeconds)
  );
  const restoreRates = reps.map((r) => rate(r.cryoDump.stats.pagesBytes, r.cryoRestore.seconds));
  const blDump = reps.map((r) => rate(r.baselineDump.bytes, r.baselineDump.seconds));
  const blRestore = reps.map((r) => rate(r.baselineRestore.bytes, r.baselineRestore.seconds));
  const nv = reps.filter((r) => r.cryoRestoreNoVerify && r.baselineRestore2);
  const nvRates = nv.map((r) => rate(r.cryoDump.stats.pagesBytes, r.cryoRestoreNoVerify!.seconds));
  const nvBl = nv.map((r) => rate(r.baselineRestore2!.bytes, r.baselineRestore2!.seconds));
  const observed = reps.map((r) => r.cryoDump.observedFreezeSeconds).filter((x) =>
    x !== null
  ) as number[];
  const imageBytes = median(reps.map((r) => r.cryoDump.stats.imageBytes));
  const dumpRss = Math.max(...reps.map((r) => r.cryoDump.process.maxRssBytes));
  const restoreRss = Math.max(
    ...reps.flatMap((r) => [r.cryoRestore, r.cryoRestoreNoVerify].filter((x) => x)).map((x) =>
      x!.process.maxRssBytes
    ),
  );
  return {
    name,
    description,
    touchedBytes,
    pagesBytes: pages,
    imageBytes,
    imageOverTouched: imageBytes / touchedBytes,
    freezeSeconds: median(reps.map((r) => r.cryoDump.stats.freezeSeconds)),
    observedFreezeSeconds: observed.length ? median(observed) : null,
    dumpSeconds: median(reps.map((r) => r.cryoDump.stats.dumpSeconds)),
    dumpWallSeconds: median(reps.map((r) => r.cryoDump.process.wallSeconds)),
    dumpBytesPerSec: median(dumpRates),
    dumpRatio: median(dumpRates.map((x, i) => x / blDump[i])),
    restoreSeconds: median(reps.map((r) => r.cryoRestore.seconds)),
    restoreBytesPerSec: median(restoreRates),
    restoreRatio: median(restoreRates.map((x, i) => x / blRestore[i])),
    restoreUntilRunningSeconds: median(reps.map((r) => r.cryoRestore.untilRunningSeconds)),
    restoreNoVerifySeconds: nv.length
      ? median(nv.map((r) => r.cryoRestoreNoVerify!.seconds))
      : null,
    restoreNoVerifyBytesPerSec: nv.length ? median(nvRates) : null,
    restoreNoVerifyRatio: nv.length ? median(nvRates.map((x, i) => x / nvBl[i])) : null,
    cryoPeakRssBytes: Math.max(dumpRss, restoreRss),
    cryoDumpPeakRssBytes: dumpRss,
    cryoRestorePeakRssBytes: restoreRss,
    baseline: {
      workload: name,
      bytes: median(reps.map((r) => r.baselineDump.bytes)),
      dumpSeconds: median(reps.map((r) => r.baselineDump.seconds)),
      dumpBytesPerSec: median(blDump),
      restoreSeconds: median(reps.map((r) => r.baselineRestore.seconds)),
      restoreBytesPerSec: median(blRestore),
    },
    repetitions: reps,
  };
}

const gbps = (x: number | null) => x === null ? "-" : (x / 1e9).toFixed(2);
const secs = (x: number | null) => x === null ? "-" : x.toFixed(3);
const ratio = (x: number | null) => x === null ? "-" : `${x.toFixed(2)}x`;
const mib = (x: number) => (x / MiB).toFixed(x < 10 * MiB ? 2 : 0);

/** Renders rows as an aligned text table (first row is the header). */
export function textTable(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) =>
    r.map((cell, c) => c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])).join("  ")
  )
    .join("\n");
}

/** A table (header row first) as GitHub Markdown. */
export function markdownTable(rows: string[][]): string {
  const line = (r: string[]) => `| ${r.join(" | ")} |`;
  return [line(rows[0]), line(rows[0].map(() => "---")), ...rows.slice(1).map(line)].join("\n");
}

/** The main results table (also used in docs/PERFORMANCE.md as Markdown). */
export function resultRows(results: WorkloadResult[]): string[][] {
  const rows = [[
    "workload",
    "touched MiB",
    "image MiB",
    "img/touch",
    "freeze s",
    "seen s",
    "dump s",
    "dump GB/s",
    "x base",
    "restore s",
    "rst GB/s",
    "x base",
    "no-verify x",
    "to run s",
    "peak RSS MiB",
  ]];
  for (const r of results) {
    rows.push([
      r.verifyError ? `${r.name} (RESTORED WRONG)` : r.name,
      mib(r.touchedBytes),
      mib(r.imageBytes),
      r.imageOverTouched.toFixed(3),
      secs(r.freezeSeconds),
      secs(r.observedFreezeSeconds),
      secs(r.dumpSeconds),
      gbps(r.dumpBytesPerSec),
      ratio(r.dumpRatio),
      secs(r.restoreSeconds),
      gbps(r.restoreBytesPerSec),
      ratio(r.restoreRatio),
      ratio(r.restoreNoVerifyRatio),
      secs(r.restoreUntilRunningSeconds),
      mib(r.cryoPeakRssBytes),
    ]);
  }
  return rows;
}

/** The baselines table. */
export function baselineRows(results: WorkloadResult[]): string[][] {
  const rows = [["workload", "bytes MiB", "dump s", "dump GB/s", "restore s", "restore GB/s"]];
  for (const r of results) {
    const b = r.baseline;
    rows.push([
      r.name,
      mib(b.bytes),
      secs(b.dumpSeconds),
      gbps(b.dumpBytesPerSec),
      secs(b.restoreSeconds),
      gbps(b.restoreBytesPerSec),
    ]);
  }
  return rows;
}

/** One target of issue 6 and whether the run met it. */
export interface TargetCheck {
  target: string;
  workload: string;
  value: string;
  met: boolean;
}

/** Checks the performance targets against the results (those whose workloads ran). */
export function checkTargets(results: WorkloadResult[]): TargetCheck[] {
  const out: TargetCheck[] = [];
  const by = new Map(results.map((r) => [r.name, r]));
  for (const name of ["anon-512MiB", "anon-2GiB"]) {
    const r = by.get(name);
    if (!r) continue;
    out.push({
      target: "dump throughput >= 1.0 x baseline",
      workload: name,
      value: ratio(r.dumpRatio),
      met: r.dumpRatio >= 1.0,
    });
    out.push({
      target: "restore throughput >= 0.9 x baseline",
      workload: name,
      value: `${ratio(r.restoreRatio)} (no-verify ${ratio(r.restoreNoVerifyRatio)})`,
      met: r.restoreRatio >= 0.9,
    });
    const limit = r.touchedBytes * 1.01 + 2 * MiB;
    out.push({
      target: "image <= touched x 1.01 + 2 MiB",
      workload: name,
      value: `${mib(r.imageBytes)} <= ${mib(limit)} MiB`,
      met: r.imageBytes <= limit,
    });
  }
  const sparse = by.get("sparse-8GiB");
  if (sparse) {
    const limit = sparse.touchedBytes * 1.01 + 2 * MiB;
    out.push({
      target: "image <= touched x 1.01 + 2 MiB",
      workload: sparse.name,
      value: `${mib(sparse.imageBytes)} <= ${mib(limit)} MiB`,
      met: sparse.imageBytes <= limit,
    });
  }
  const big = by.get("anon-2GiB") ?? by.get("anon-512MiB");
  if (big) {
    out.push({
      target: `cryo peak RSS <= 150 MiB${big.name === "anon-2GiB" ? "" : " (2 GiB not run)"}`,
      workload: big.name,
      value: `${mib(big.cryoPeakRssBytes)} MiB`,
      met: big.cryoPeakRssBytes <= 150 * MiB,
    });
  }
  const small = by.get("anon-64MiB");
  for (const name of ["maps-10000", "threads-64"]) {
    const r = by.get(name);
    if (!r || !small) continue;
    const d = r.dumpSeconds / small.dumpSeconds;
    const s = r.restoreSeconds / small.restoreSeconds;
    out.push({
      target: "dump < 10 x anon-64MiB",
      workload: name,
      value: `${d.toFixed(1)}x`,
      met: d < 10,
    });
    out.push({
      target: "restore < 10 x anon-64MiB",
      workload: name,
      value: `${s.toFixed(1)}x`,
      met: s < 10,
    });
  }
  return out;
}

/** The target checks as table rows. */
export function targetRows(checks: TargetCheck[]): string[][] {
  return [
    ["target", "workload", "measured", "met"],
    ...checks.map((c) => [c.target, c.workload, c.value, c.met ? "yes" : "NO"]),
  ];
}

/** The machine a bench ran on, for its JSON results. */
export function hostFacts() {
  return {
    kernel: Deno.osRelease(),
    cpus: navigator.hardwareConcurrency,
    memoryBytes: Deno.systemMemoryInfo().total,
    deno: Deno.version.deno,
  };
}
