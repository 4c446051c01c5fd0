/**
 * One measurement each: the C baselines (serial process_vm_readv + write;
 * pread into fresh anonymous memory) and cryo's dump and restore, each run
 * as its own child process (`deno run -A cli.ts dump|restore ... --json`)
 * so that its peak RSS (wait4 rusage) is cryo's alone.
 *
 * @module
 */

import { openPagemap } from "../../engine/proc/pagemap.ts";
import { ANON_PRESENT_OR_SWAPPED, PRESENT_OR_SWAPPED } from "../../engine/proc/pagemap.ts";
import { readMaps } from "../../engine/proc/maps.ts";
import { classifyVma, pagePolicy } from "../../engine/dump/vmas.ts";
import { buildBenchProgram } from "./build.ts";
import { adopt, type ChildResult, spawnChild, waitChild } from "./procs.ts";
import { gapsOf, type RunningWorkload } from "./workloads.ts";

const cliPath = new URL("../../cli.ts", import.meta.url).pathname;

/** Result of a baseline run. */
export interface BaselineRun {
  seconds: number;
  bytes: number;
}

/**
 * Writes the ranges cryo would save of `pid` (same page selection: the
 * anonymous or COW'd present/swapped pages of readable private mappings,
 * every present page of shared anonymous ones) as "<hex-addr> <len>" lines.
 * Returns the total bytes.
 */
export function writeRanges(pid: number, path: string): number {
  const lines: string[] = [];
  let total = 0;
  using pagemap = openPagemap(pid);
  for (const m of readMaps(pid)) {
    const kind = classifyVma({ ...m, vmFlags: [] });
    const policy = pagePolicy(kind);
    if (policy === "none" || m.perms[0] !== "r") continue;
    const match = policy === "all-present" ? PRESENT_OR_SWAPPED : ANON_PRESENT_OR_SWAPPED;
    pagemap.forEachRun(m.start, m.end, match, (addr, length) => {
      lines.push(`${addr.toString(16)} ${length}`);
      total += length;
    });
  }
  Deno.writeTextFileSync(path, lines.join("\n") + "\n");
  return total;
}

async function runBaseline(args: string[], logPath: string): Promise<BaselineRun> {
  const child = spawnChild([await buildBenchProgram("baseline"), ...args], logPath);
  const r = await waitChild(child);
  const text = Deno.readTextFileSync(logPath);
  if (r.status.kind !== "exited" || r.status.code !== 0) {
    throw new Error(`baseline ${args[0]} failed: ${text}`);
  }
  const m = [...text.matchAll(/^seconds ([\d.]+) bytes (\d+)$/gm)].pop();
  if (!m) throw new Error(`baseline ${args[0]}: no result in ${text}`);
  return { seconds: Number(m[1]), bytes: Number(m[2]) };
}

/**
 * Writes back every dirty page (`sync`) right before a measurement, so that
 * no command starts with the previous command's unsynced image in the page
 * cache: 2 GiB left dirty by one dump (CRIU's, or cryo's `--no-sync`) push
 * the next one's writes over the kernel's dirty limits (the writer is
 * throttled in `balance_dirty_pages`, the flusher takes a CPU); see
 * docs/PERFORMANCE.md "The bench's lane gap". `BENCH_KEEP_DIRTY=1` skips it.
 */
export async function flushDirty(): Promise<void> {
  if (Deno.env.get("BENCH_KEEP_DIRTY")) return; // to measure the difference
  try {
    await new Deno.Command("sync", { stdout: "null", stderr: "null" }).output();
  } catch { /* no sync(1): measure as before */ }
}

/**
 * Touches and frees `bytes` of memory right before a measurement, so that
 * the measured operation finds recently used free memory whatever ran
 * before it (see `baseline warm` in baseline.c).
 */
export async function warmMemory(bytes: number, logPath: string): Promise<void> {
  await runBaseline(["warm", String(bytes)], logPath);
}

/** Baseline dump: the ranges of `pid` read with process_vm_readv and written to `out`. */
export function baselineDump(
  pid: number,
  rangesPath: string,
  out: string,
  logPath: string,
): Promise<BaselineRun> {
  return runBaseline(["dump", String(pid), rangesPath, out], logPath);
}

/** Baseline restore: `file` pread into fresh anonymous memory. */
export function baselineRestore(
  file: string,
  bytes: number,
  logPath: string,
): Promise<BaselineRun> {
  return runBaseline(["restore", file, String(bytes)], logPath);
}

/** What one `cryo dump --leave-running --json` measured. */
export interface CryoDumpRun {
  /** The dump statistics cryo printed (engine timing: no Deno start-up). */
  stats: {
    pagesBytes: number;
    imageBytes: number;
    freezeSeconds: number;
    dumpSeconds: number;
    mappings: number;
    threads: number;
  };
  /** The longest heartbeat gap inside the dump: the freeze as the process saw it (s). */
  observedFreezeSeconds: number | null;
  /** The CLI process: wall time (with Deno start-up), peak RSS, CPU. */
  process: ChildResult;
}

function parseJsonOutput(path: string, what: string, errPath: string): Record<string, unknown> {
  const text = Deno.readTextFileSync(path);
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${what}: no JSON output:\n${text}\n${Deno.readTextFileSync(errPath)}`);
  }
}

/**
 * Builds the start-up bundles of `cryo dump` and `cryo restore` (cli/bundle.ts) of the
 * tree of `path` before anything is measured: the first of these commands after a change
 * of the sources builds them (~1 s), which no measurement should include.
 */
export async function prepareCli(path: string = cliPath): Promise<void> {
  for (const command of ["dump", "restore"]) {
    await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", path, command, "--help"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
  }
}

/** Extra flags for the deno runtime of each cryo process (e.g. --cpu-prof). */
export interface CryoRuntime {
  denoFlags: string[];
  /** cli.ts to run (default: this tree's; another tree's for an A/B, scripts/bench/ab.ts). */
  cliPath?: string;
  /** Environment variables set for each cryo process (beside the bench's own). */
  env?: Readonly<Record<string, string>>;
}

/** Runs `cryo dump <pid> --dir <dir> --leave-running --json` and reads its figures. */
export async function cryoDump(
  w: RunningWorkload,
  dir: string,
  logBase: string,
  rt: CryoRuntime,
  extraArgs: string[] = [],
): Promise<CryoDumpRun> {
  const argv = [
    Deno.execPath(),
    "run",
    "-A",
    ...rt.denoFlags,
    rt.cliPath ?? cliPath,
    "dump",
    String(w.child.pid),
    "--dir",
    dir,
    "--leave-running",
    "--json",
    ...extraArgs,
  ];
  const child = spawnChild(argv, `${logBase}.json`, `${logBase}.err`, rt.env);
  const r = await waitChild(child);
  const endMs = child.spawnedAtEpochMs + r.wallSeconds * 1000;
  if (r.status.kind !== "exited" || r.status.code !== 0) {
    throw new Error(`cryo dump failed: ${Deno.readTextFileSync(`${logBase}.err`)}`);
  }
  const out = parseJsonOutput(`${logBase}.json`, "cryo dump", `${logBase}.err`);
  // The heartbeat line of the freeze is printed once the process runs again: wait a moment.
  await new Promise((res) => setTimeout(res, 30));
  const inside = gapsOf(w).filter((g) => g.toMs > child.spawnedAtEpochMs && g.fromMs < endMs);
  const longest = inside.reduce((a, g) => Math.max(a, g.toMs - g.fromMs), 0);
  return {
    stats: out as unknown as CryoDumpRun["stats"],
    observedFreezeSeconds: inside.length ? longest / 1000 : null,
    process: r,
  };
}

/** What one `cryo restore --detach --json` measured. */
export interface CryoRestoreRun {
  /** Seconds cryo reports from the start of restore() until every task runs (no Deno start-up). */
  seconds: number;
  /** Seconds from spawning the CLI until the restored process's first heartbeat. */
  untilRunningSeconds: number;
  /** The CLI process: wall time, peak RSS, CPU. */
  process: ChildResult;
}

/**
 * Runs `cryo restore <dir> --detach --json` (with `--no-verify` when asked);
 * the restored root is re-parented to the bench when the CLI exits and is
 * adopted. Resolves once the restored process has run again.
 */
export async function cryoRestore(
  w: RunningWorkload,
  dir: string,
  verify: boolean,
  logBase: string,
  rt: CryoRuntime,
): Promise<CryoRestoreRun> {
  const argv = [
    Deno.execPath(),
    "run",
    "-A",
    ...rt.denoFlags,
    rt.cliPath ?? cliPath,
    "restore",
    dir,
    "--detach",
    "--json",
    ...(verify ? [] : ["--no-verify"]),
  ];
  const child = spawnChild(argv, `${logBase}.json`, `${logBase}.err`, rt.env);
  let r: ChildResult;
  try {
    r = await waitChild(child);
  } finally {
    adopt(w.child.pid); // whatever happened, a restored process with this pid is ours to kill
  }
  if (r.status.kind !== "exited" || r.status.code !== 0) {
    throw new Error(`cryo restore failed: ${Deno.readTextFileSync(`${logBase}.err`)}`);
  }
  const out = parseJsonOutput(`${logBase}.json`, "cryo restore", `${logBase}.err`);
  // The first heartbeat after the restore: a gap ending after the CLI was spawned.
  const deadline = performance.now() + 10_000;
  for (;;) {
    const g = gapsOf(w).find((g) => g.toMs > child.spawnedAtEpochMs);
    if (g) {
      return {
        seconds: Number(out.seconds),
        untilRunningSeconds: (g.toMs - child.spawnedAtEpochMs) / 1000,
        process: r,
      };
    }
    if (performance.now() > deadline) throw new Error("the restored process does not run");
    await new Promise((res) => setTimeout(res, 2));
  }
}
