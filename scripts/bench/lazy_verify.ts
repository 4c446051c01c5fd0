/**
 * `deno run -A scripts/bench/lazy_verify.ts [MiB...]` (default 64 512
 * 2048): time to first instruction of `restore --lazy` with checksums on,
 * two modes on images of the anon workload (scripts/bench/workload.c):
 * checked by blocks (the manifest's `pageBlocks`, engine/image/page_blocks.ts)
 * and the whole-file check (the field removed from the manifest, as an
 * older image has it). Through the library in this process. For each size
 * and mode, one run: dump (killing the workload), restore, and
 *
 * - first instruction: from calling restore() to the end of the restored
 *   workload's first heartbeat gap (it beats every ms);
 * - tree released: restore() returned;
 * - cryo's own CPU time (user+sys) inside restore(), all of it before the
 *   first instruction;
 * - all pages: the server's last page copied;
 * - the workload's own memory check (SIGUSR1: "verify ok") afterwards.
 *
 * Prints a markdown table and the load average (compare the modes and the
 * growth across sizes within one run; a first size repeated warms up).
 *
 * @module
 */

import * as nodeProcess from "node:process";
import { checkpoint } from "../../engine/dump/mod.ts";
import { restore } from "../../engine/restore/mod.ts";
import { adopt, becomeSubreaper, cleanupProcesses, epochMs } from "./procs.ts";
import { gapsOf, killWorkload, startWorkload, verifyWorkload } from "./workloads.ts";

interface Row {
  mib: number;
  mode: string;
  /** cryo's CPU time (user+sys) inside restore(). */
  cpuMs: number;
  firstMs: number;
  runningMs: number;
  allMs: number;
  faults: number;
}

function cpuMs(): number {
  const u = nodeProcess.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Lazy restore modes, checksums on: checked by blocks, or whole first. */
type Mode = "lazy, by blocks" | "lazy, whole file";

async function once(mib: number, mode: Mode): Promise<Row> {
  const lazy = true, verifyChecksums = true;
  const work = await Deno.makeTempDir({ prefix: "cryo-bench-lazy-" });
  try {
    const w = await startWorkload({
      name: `anon-${mib}`,
      description: `${mib} MiB anonymous memory`,
      program: "c",
      args: ["anon", String(mib)],
      quick: true,
    }, work);
    const dir = `${work}/image`;
    await checkpoint(w.child.pid, { dir });
    if (mode === "lazy, whole file") {
      // An image as older dumps wrote it: no per-block checksums.
      const m = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
      for (const p of m.processes) delete p.pageBlocks;
      await Deno.writeTextFile(`${dir}/manifest.json`, JSON.stringify(m));
    }
    // The dump killed it (and reaped it: it was traced); wait until its pid is free.
    while (await Deno.stat(`/proc/${w.child.pid}`).then(() => true, () => false)) {
      await new Promise((r) => setTimeout(r, 2));
    }
    const t0 = epochMs();
    const c0 = cpuMs();
    const tree = await restore(dir, { lazy, verifyChecksums });
    const cpu = cpuMs() - c0;
    const running = epochMs();
    adopt(w.child.pid);
    let faults = 0;
    if (tree.lazy) {
      tree.lazy.serve();
      faults = tree.lazy.progress.faults;
      if (tree.lazy.failure) throw new Error(`lazy restore failed: ${tree.lazy.failure}`);
    }
    const all = epochMs();
    let gap;
    const deadline = performance.now() + 10_000;
    while (!(gap = gapsOf(w).find((g) => g.toMs > t0))) {
      if (performance.now() > deadline) throw new Error("the restored workload does not beat");
      await new Promise((r) => setTimeout(r, 2));
    }
    await verifyWorkload(w);
    await killWorkload(w);
    return {
      mib,
      mode,
      cpuMs: cpu,
      firstMs: gap.toMs - t0,
      runningMs: running - t0,
      allMs: all - t0,
      faults,
    };
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

async function main(): Promise<void> {
  becomeSubreaper();
  const sizes = Deno.args.length ? Deno.args.map(Number) : [64, 512, 2048];
  const modes: Mode[] = ["lazy, by blocks", "lazy, whole file"];
  const rows: Row[] = [];
  try {
    for (const mib of sizes) {
      for (const mode of modes) rows.push(await once(mib, mode));
    }
  } finally {
    await cleanupProcesses();
  }
  console.log(
    "| memory | restore | first instruction | tree released | cryo CPU in restore() | all pages in | faults served |",
  );
  console.log("|---|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(
      `| ${r.mib} MiB | ${r.mode} | ${r.firstMs.toFixed(1)} ms | ${r.runningMs.toFixed(1)} ms | ${
        r.cpuMs.toFixed(1)
      } ms | ${r.allMs.toFixed(1)} ms | ${r.faults} |`,
    );
  }
  console.log(`load average: ${Deno.readTextFileSync("/proc/loadavg").trim()}`);
}

if (import.meta.main) await main();
