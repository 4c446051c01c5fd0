/**
 * The benchmark workloads: what each one is, starting it, waiting until it
 * is ready, and reading its heartbeat (see scripts/bench/workload.c).
 *
 * @module
 */

import { buildBenchProgram } from "./build.ts";
import { type Child, killAndReap, spawnChild } from "./procs.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";

const MiB = 1 << 20;

/** One workload of the benchmark. */
export interface WorkloadSpec {
  /** Name in the table and the JSON. */
  name: string;
  /** What it is, in words. */
  description: string;
  /**
   * "c": scripts/bench/workload.c with `args`; "python": workload.py with `args`;
   * "dirtier": scripts/bench/dirtier.c with `args` (the near-zero downtime writer).
   */
  program: "c" | "python" | "dirtier";
  args: string[];
  /** Memory the workload touches on purpose (undefined: the process's RssAnon when ready). */
  touchedBytes?: number;
  /** Part of `--quick`. */
  quick: boolean;
  /** Processes in the tree (default 1); each verifies itself on SIGUSR1 to the root. */
  processes?: number;
}

/** The workloads, in the order they run. */
export function workloads(quick: boolean): WorkloadSpec[] {
  const all: WorkloadSpec[] = [
    anon(64, true),
    anon(512, true),
    anon(2048, false),
    {
      name: "sparse-8GiB",
      description: "8 GiB MAP_NORESERVE reservation, 256 MiB touched in 1 MiB pieces",
      program: "c",
      args: ["sparse", "8192", "256"],
      touchedBytes: 256 * MiB,
      quick: true,
    },
    {
      name: "maps-10000",
      description: "10,000 one-page mappings (alternating rw-/r--), all touched",
      program: "c",
      args: ["maps", "10000"],
      touchedBytes: 10000 * 4096,
      quick: true,
    },
    {
      name: "threads-64",
      description: "64 threads idle in nanosleep, 16 MiB touched",
      program: "c",
      args: ["threads", "64"],
      touchedBytes: 16 * MiB,
      quick: true,
    },
    {
      name: "threads4-512MiB",
      description: "4 threads, 512 MiB touched",
      program: "c",
      args: ["threads", "4", "512"],
      touchedBytes: 512 * MiB,
      quick: true,
    },
    {
      name: "tree3x512MiB",
      description: "a tree of 3 processes with 512 MiB each, a pipe from the root to a child",
      program: "c",
      args: ["tree", "3", "512"],
      touchedBytes: 3 * 512 * MiB,
      quick: true,
      processes: 3,
    },
    {
      name: "tree3x64MiB",
      description: "a tree of 3 processes with 64 MiB each, a pipe from the root to a child",
      program: "c",
      args: ["tree", "3", "64"],
      touchedBytes: 3 * 64 * MiB,
      quick: false,
      processes: 3,
    },
    {
      name: quick ? "python-128MiB" : "python-512MiB",
      description: "python3 with a dict of small str objects and a list of 4 KiB bytes",
      program: "python",
      args: [quick ? "128" : "512"],
      quick: true,
    },
  ];
  return all.filter((w) => !quick || w.quick);
}

function anon(mib: number, quick: boolean): WorkloadSpec {
  return {
    name: mib >= 1024 ? `anon-${mib / 1024}GiB` : `anon-${mib}MiB`,
    description: `${mib} MiB of anonymous memory filled with a pattern`,
    program: "c",
    args: ["anon", String(mib)],
    touchedBytes: mib * MiB,
    quick,
  };
}

/** The near-zero downtime writer: `mib` MiB rewritten at `rate` MiB/s (scripts/bench/dirtier.c). */
export function dirtierSpec(mib: number, rate: number): WorkloadSpec {
  return {
    name: mib >= 1024 ? `dirtier-${mib / 1024}GiB` : `dirtier-${mib}MiB`,
    description: `${mib} MiB of anonymous memory, random pages rewritten at ${rate} MiB/s`,
    program: "dirtier",
    args: [String(mib), String(rate)],
    touchedBytes: mib * MiB,
    quick: true,
  };
}

/** The python3 interpreter to use (the system one first: no shims). */
export function findPython(): string {
  for (const p of ["/usr/bin/python3", "/usr/local/bin/python3"]) {
    try {
      Deno.statSync(p);
      return p;
    } catch { /* next */ }
  }
  throw new Error("python3 not found in /usr/bin or /usr/local/bin");
}

/** A running workload process. */
export interface RunningWorkload {
  spec: WorkloadSpec;
  child: Child;
  /** Its output file (heartbeat lines). */
  outputPath: string;
  /** The pids of the root's children (tree workloads), from its "ready" line. */
  childPids: number[];
}

/** Builds (if needed) and starts a workload; resolves once it printed "ready". */
export async function startWorkload(
  spec: WorkloadSpec,
  workDir: string,
  timeoutMs = 300_000,
): Promise<RunningWorkload> {
  const argv = spec.program === "python"
    ? [findPython(), new URL("./workload.py", import.meta.url).pathname, ...spec.args]
    : [await buildBenchProgram(spec.program === "c" ? "workload" : "dirtier"), ...spec.args];
  const outputPath = `${workDir}/${spec.name}.out`;
  const child = spawnChild(argv, outputPath);
  const w: RunningWorkload = { spec, child, outputPath, childPids: [] };
  const m = await waitForOutput(w, /^ready .*$/m, 0, timeoutMs);
  const kids = m[0].match(/ children((?: \d+)*)$/);
  w.childPids = kids ? kids[1].trim().split(" ").filter(Boolean).map(Number) : [];
  return w;
}

/** Output of the workload so far. */
export function outputOf(w: RunningWorkload): string {
  try {
    return Deno.readTextFileSync(w.outputPath);
  } catch {
    return "";
  }
}

/** Waits until the output from character `from` on matches `re`; returns the match. */
export async function waitForOutput(
  w: RunningWorkload,
  re: RegExp,
  from: number,
  timeoutMs: number,
): Promise<RegExpMatchArray> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const m = outputOf(w).slice(from).match(re);
    if (m) return m;
    if (performance.now() > deadline) {
      throw new Error(`${w.spec.name}: timed out waiting for ${re}; output:\n${outputOf(w)}`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A pause of the heartbeat: the process did not run from `fromMs` to `toMs` (epoch ms). */
export interface Gap {
  fromMs: number;
  toMs: number;
}

/** Every heartbeat gap the workload reported. */
export function gapsOf(w: RunningWorkload): Gap[] {
  const out: Gap[] = [];
  for (const m of outputOf(w).matchAll(/^gap (\d+) (\d+)$/gm)) {
    out.push({ fromMs: Number(m[1]) / 1e6, toMs: Number(m[2]) / 1e6 });
  }
  return out;
}

/** Asks the workload to check its memory (SIGUSR1); throws unless it says "verify ok". */
export async function verifyWorkload(w: RunningWorkload, timeoutMs = 60_000): Promise<void> {
  const from = outputOf(w).length;
  rawSyscall(SYS.kill, w.child.pid, 10 /* SIGUSR1 */);
  const want = w.spec.processes ?? 1;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const lines = [...outputOf(w).slice(from).matchAll(/^verify (ok|FAIL)(.*)$/gm)];
    const bad = lines.find((l) => l[1] !== "ok");
    if (bad) throw new Error(`${w.spec.name}: memory check after restore: ${bad[0]}`);
    if (lines.length >= want) return;
    if (performance.now() > deadline) {
      throw new Error(`${w.spec.name}: ${lines.length} of ${want} processes verified`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** RssAnon of a process, bytes (0 if unreadable). */
export function rssAnonBytes(pid: number): number {
  try {
    const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/^RssAnon:\s+(\d+) kB/m);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** The parent pid of `pid` (undefined when it is gone). */
function parentOf(pid: number): number | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined;
  }
}

/**
 * Kills a workload and reaps it, its children included: the children (still
 * the root's, checked by their parent pid) get SIGKILL first, then the root
 * is killed and reaped, and the children, re-parented to the bench (a
 * subreaper), are reaped in turn.
 */
export async function killWorkload(w: RunningWorkload): Promise<void> {
  const kids = w.childPids.filter((c) => parentOf(c) === w.child.pid);
  for (const c of kids) rawSyscall(SYS.kill, c, 9);
  await killAndReap(w.child.pid);
  for (const c of kids) await killAndReap(c);
}
