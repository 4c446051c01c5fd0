/**
 * `deno task bench --clones` (or `deno run -A scripts/bench/clones.ts`):
 * many copies of one checkpoint at once, each in its own pid namespace.
 *
 * A `workload anon <MiB>` (scripts/bench/workload.c) is started with
 * `cryo launch`, dumped (and killed), then restored: once alone, then
 * as many times one after the other, then `--copies` times at once, each by its own
 * `cryo restore <dir> --detach --json` process started together. Reports
 * the wall time until every copy runs, the CPU time (user+sys of the cryo
 * processes and everything they reaped, from wait4), each copy's own
 * heartbeat (alive after the restore) and the copies' total memory: the
 * sum of Pss over their processes (/proc/<pid>/smaps_rollup) beside the
 * image's page bytes times the copies (no page sharing between copies:
 * each restore copies its pages into private anonymous memory).
 *
 * For reference, the same workload started without a namespace is dumped
 * and restored once the usual way (same pids, one Deno process).
 *
 * Options: --copies <n> (10), --mib <n> (256), --out <file> (JSON).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { launch } from "../../engine/pidns/mod.ts";
import { checkpoint } from "../../engine/dump/mod.ts";
import { waitPid } from "../../ffi/wait.ts";
import { buildBenchProgram } from "./build.ts";
import {
  adopt,
  becomeSubreaper,
  type ChildResult,
  cleanupProcesses,
  killAndReap,
  spawnChild,
  waitChild,
} from "./procs.ts";

const cliPath = new URL("../../cli.ts", import.meta.url).pathname;

/** Options of {@link runClonesBench}. */
export interface ClonesOptions {
  copies: number;
  mib: number;
  out?: string;
}

/** What the clones bench measured. */
export interface ClonesResult {
  copies: number;
  imagePagesBytes: number;
  /** One restore alone: wall seconds of the cryo process, its CPU seconds. */
  single: { wallSeconds: number; cpuSeconds: number };
  /** One usual restore of the same workload dumped outside any namespace (the reference). */
  plainSingle: { wallSeconds: number; cpuSeconds: number };
  /** As many restores one after the other (each copy killed before the next). */
  sequential: { wallSeconds: number; cpuSeconds: number };
  /** All copies started together: wall seconds until the last cryo returned, total CPU seconds. */
  all: { wallSeconds: number; cpuSeconds: number; meanWallSeconds: number };
  /** Sum of the copies' Pss and Rss, bytes. */
  totalPssBytes: number;
  totalRssBytes: number;
  /** Host pids of the copies' roots and their distinct pid namespaces. */
  roots: number[];
  namespaces: number;
}

const log = (s: string) => console.error(`bench clones: ${s}`);

function rollup(pid: number, field: string): number {
  const m = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`).match(
    new RegExp(`^${field}:\\s+(\\d+) kB`, "m"),
  );
  return m ? Number(m[1]) * 1024 : 0;
}

/** The process `pid` and all its descendants. */
function treeOf(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      const kids = Deno.readTextFileSync(`/proc/${out[i]}/task/${out[i]}/children`).trim();
      if (kids) out.push(...kids.split(/\s+/).map(Number));
    } catch { /* gone */ }
  }
  return out;
}

const cpu = (r: ChildResult) => r.userSeconds + r.systemSeconds;

/** What a workload printed so far ("" before its output file exists). */
function outputOf(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

async function restoreCopies(img: string, n: number, work: string, tag: string) {
  const t0 = performance.now();
  const children = Array.from({ length: n }, (_, i) =>
    spawnChild(
      [Deno.execPath(), "run", "-A", cliPath, "restore", img, "--detach", "--json"],
      `${work}/${tag}-${i}.json`,
      `${work}/${tag}-${i}.err`,
    ));
  const results: ChildResult[] = [];
  const roots: number[] = [];
  for (const [i, c] of children.entries()) {
    const r = await waitChild(c);
    results.push(r);
    if (r.status.kind !== "exited" || r.status.code !== 0) {
      throw new Error(`copy ${i}: ${Deno.readTextFileSync(`${work}/${tag}-${i}.err`)}`);
    }
    const root = Number(JSON.parse(Deno.readTextFileSync(`${work}/${tag}-${i}.json`)).rootPid);
    adopt(root);
    roots.push(root);
  }
  return { wallSeconds: (performance.now() - t0) / 1000, results, roots };
}

/** Runs the clones bench; prints a summary on stderr and returns the figures. */
export async function runClonesBench(opts: ClonesOptions): Promise<ClonesResult> {
  becomeSubreaper();
  const work = Deno.makeTempDirSync({ prefix: "cryo-bench-clones-" });
  try {
    const workload = await buildBenchProgram("workload");
    const out = `${work}/workload.out`;
    const tree = launch("/bin/sh", [
      "-c",
      `exec ${workload} anon ${opts.mib} </dev/null >${out} 2>&1`,
    ]);
    adopt(tree.pid);
    const deadline = Date.now() + 120_000;
    while (!outputOf(out).includes("ready")) {
      if (Date.now() > deadline) throw new Error("the workload did not get ready");
      await new Promise((r) => setTimeout(r, 20));
    }
    const img = `${work}/img`;
    const dumped = await checkpoint(tree.pid, { dir: img, sync: false });
    waitPid(tree.pid); // killed with its namespace
    const pages = dumped.stats.pagesBytes;
    log(`image of ${(pages / 2 ** 20).toFixed(0)} MiB of pages`);

    // Reference: the same workload outside any namespace, dumped and restored as usual.
    const plainOut = `${work}/plain.out`;
    const plain = spawnChild([workload, "anon", String(opts.mib)], plainOut);
    while (!outputOf(plainOut).includes("ready")) {
      if (Date.now() > deadline) throw new Error("the plain workload did not get ready");
      await new Promise((r) => setTimeout(r, 20));
    }
    const plainImg = `${work}/plain-img`;
    await checkpoint(plain.pid, { dir: plainImg, sync: false });
    await killAndReap(plain.pid).catch(() => {});
    const usual = await restoreCopies(plainImg, 1, work, "plain");
    const plainSingle = { wallSeconds: usual.wallSeconds, cpuSeconds: cpu(usual.results[0]) };
    for (const r of usual.roots) await killAndReap(r);
    Deno.removeSync(plainImg, { recursive: true });
    log(
      `one usual restore (no namespace): ${plainSingle.wallSeconds.toFixed(2)} s wall, ${
        plainSingle.cpuSeconds.toFixed(2)
      } s CPU`,
    );

    const one = await restoreCopies(img, 1, work, "single");
    const single = { wallSeconds: one.wallSeconds, cpuSeconds: cpu(one.results[0]) };
    for (const r of one.roots) await killAndReap(r);
    log(
      `one restore: ${single.wallSeconds.toFixed(2)} s wall, ${single.cpuSeconds.toFixed(2)} s CPU`,
    );

    // The same number of copies one after the other (each killed after it runs).
    const seqStart = performance.now();
    let seqCpu = 0;
    for (let i = 0; i < opts.copies; i++) {
      const c = await restoreCopies(img, 1, work, `seq-${i}`);
      seqCpu += cpu(c.results[0]);
      for (const r of c.roots) await killAndReap(r);
    }
    const sequential = { wallSeconds: (performance.now() - seqStart) / 1000, cpuSeconds: seqCpu };
    log(
      `${opts.copies} restores one after the other: ${sequential.wallSeconds.toFixed(2)} s wall, ${
        seqCpu.toFixed(2)
      } s CPU`,
    );

    const all = await restoreCopies(img, opts.copies, work, "copy");
    await new Promise((r) => setTimeout(r, 500));
    let pss = 0;
    let rss = 0;
    const namespaces = new Set<string>();
    for (const root of all.roots) {
      namespaces.add(Deno.readLinkSync(`/proc/${root}/ns/pid`));
      for (const pid of treeOf(root)) {
        pss += rollup(pid, "Pss");
        rss += rollup(pid, "Rss");
      }
    }
    const result: ClonesResult = {
      copies: opts.copies,
      imagePagesBytes: pages,
      single,
      plainSingle,
      sequential,
      all: {
        wallSeconds: all.wallSeconds,
        cpuSeconds: all.results.reduce((s, r) => s + cpu(r), 0),
        meanWallSeconds: all.results.reduce((s, r) => s + r.wallSeconds, 0) / opts.copies,
      },
      totalPssBytes: pss,
      totalRssBytes: rss,
      roots: all.roots,
      namespaces: namespaces.size,
    };
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
    log(
      `${opts.copies} copies at once: all running after ${all.wallSeconds.toFixed(2)} s wall ` +
        `(${(all.wallSeconds / single.wallSeconds).toFixed(1)}x one restore), ` +
        `${result.all.cpuSeconds.toFixed(2)} s CPU (${
          (result.all.cpuSeconds / opts.copies).toFixed(2)
        } s per copy); ${namespaces.size} pid namespaces`,
    );
    log(
      `memory: Pss ${mib(pss)}, Rss ${mib(rss)} for ${opts.copies} x ${
        mib(pages)
      } of image pages ` +
        `(${
          (pss / (opts.copies * pages)).toFixed(2)
        } of copies x pages: no sharing between copies)`,
    );
    if (opts.out) Deno.writeTextFileSync(opts.out, JSON.stringify(result, null, 2) + "\n");
    return result;
  } finally {
    await cleanupProcesses();
    Deno.removeSync(work, { recursive: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      copies: { type: "string", default: "10" },
      mib: { type: "string", default: "256" },
      out: { type: "string" },
    },
  });
  await runClonesBench({ copies: Number(values.copies), mib: Number(values.mib), out: values.out });
}
