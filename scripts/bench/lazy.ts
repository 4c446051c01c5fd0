/**
 * `deno task bench-lazy [MiB...]` (default 512 2048): eager vs `--lazy`
 * restore of the anon workload (scripts/bench/workload.c), through the
 * library in this process (no CLI start-up in the figures). For each size
 * and mode, one run: dump (killing the workload), restore, and
 *
 * - first instruction: from calling restore() to the end of the restored
 *   workload's first heartbeat gap (it beats every ms: the first beat
 *   after the restore);
 * - running: restore() returned (every task released);
 * - all pages: eager: the same; lazy: the server's last page copied;
 * - the workload's own memory check (SIGUSR1: "verify ok") afterwards.
 *
 * Prints a markdown table and the load average (the machine is shared:
 * compare the two modes within one run).
 *
 * @module
 */

import { checkpoint } from "../../engine/dump/mod.ts";
import { restore } from "../../engine/restore/mod.ts";
import { adopt, becomeSubreaper, cleanupProcesses, epochMs } from "./procs.ts";
import { gapsOf, killWorkload, startWorkload, verifyWorkload } from "./workloads.ts";

interface Row {
  mib: number;
  mode: string;
  firstMs: number;
  runningMs: number;
  allMs: number;
  faults: number;
}

async function once(mib: number, lazy: boolean): Promise<Row> {
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
    // The dump killed it (and reaped it: it was traced); wait until its pid is free.
    while (await Deno.stat(`/proc/${w.child.pid}`).then(() => true, () => false)) {
      await new Promise((r) => setTimeout(r, 2));
    }
    const t0 = epochMs();
    const tree = await restore(dir, { lazy, verifyChecksums: false });
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
      mode: lazy ? "lazy" : "eager",
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
  const sizes = Deno.args.length ? Deno.args.map(Number) : [512, 2048];
  const rows: Row[] = [];
  try {
    for (const mib of sizes) {
      for (const lazy of [false, true]) rows.push(await once(mib, lazy));
    }
  } finally {
    await cleanupProcesses();
  }
  console.log(
    "| memory | restore | first instruction | tree released | all pages in | faults served |",
  );
  console.log("|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(
      `| ${r.mib} MiB | ${r.mode} | ${r.firstMs.toFixed(1)} ms | ${r.runningMs.toFixed(1)} ms | ${
        r.allMs.toFixed(1)
      } ms | ${r.faults} |`,
    );
  }
  console.log(`load average: ${Deno.readTextFileSync("/proc/loadavg").trim()}`);
}

if (import.meta.main) await main();
