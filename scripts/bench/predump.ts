/**
 * `deno run -A scripts/bench/predump.ts [--mib 512[,2048]] [--rate 16] [--gap-ms 1000]`:
 * the frozen time of a plain dump vs a dump after 1-3 pre-dumps
 * (engine/dump/parent.ts), with scripts/bench/dirtier.c rewriting random
 * pages at a fixed rate. All dumps run in this process (engine API,
 * `sync: false`, left running) against the same workload, interleaved, so
 * the figures compare as ratios within one run. Ends with a chain whose
 * final dump kills the workload, a restore from the chain, and the
 * workload's own check of every page.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { checkpoint } from "../../engine/dump/mod.ts";
import { restore } from "../../engine/restore/mod.ts";
import { buildBenchProgram } from "./build.ts";
import { adopt, becomeSubreaper, cleanupProcesses, killAndReap, spawnChild } from "./procs.ts";

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    mib: { type: "string", default: "512" },
    rate: { type: "string", default: "16" },
    "gap-ms": { type: "string", default: "1000" },
  },
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(path: string, re: RegExp, from = 0, timeoutMs = 120_000): Promise<string> {
  const t0 = performance.now();
  for (;;) {
    const text = (await Deno.readTextFile(path).catch(() => "")).slice(from);
    const m = text.match(re);
    if (m) return m[0];
    if (performance.now() - t0 > timeoutMs) throw new Error(`timeout waiting for ${re} in ${path}`);
    await sleep(50);
  }
}

const work = await Deno.makeTempDir({ prefix: "cryo-predump-bench-" });
let n = 0;
const dir = () => `${work}/img-${++n}`;
const ms = (s: number) => `${(s * 1000).toFixed(0)} ms`;

/** One chain of `pre` pre-dumps then a final dump (left running); the final dump's stats. */
async function chain(pid: number, pre: number, gapMs: number, kill = false) {
  let parent: string | undefined;
  const dirs: string[] = [];
  const preFrozen: number[] = [];
  for (let i = 0; i < pre; i++) {
    const d = dir();
    const r = await checkpoint(pid, { dir: d, preDump: true, parent, sync: false });
    preFrozen.push(r.stats.freezeSeconds);
    dirs.push(d);
    parent = d;
    await sleep(gapMs);
  }
  const d = dir();
  const r = await checkpoint(pid, {
    dir: d,
    parent,
    leaveRunning: !kill,
    precopy: pre === 0 ? false : undefined,
    sync: false,
  });
  dirs.push(d);
  return { stats: r.stats, preFrozen, dirs };
}

becomeSubreaper();
const bin = await buildBenchProgram("dirtier");
const rate = Number(opts.rate), gapMs = Number(opts["gap-ms"]);
console.log(`pre-copy chains: writer dirtying ${rate} MiB/s, ${gapMs} ms between dumps`);
try {
  for (const mib of opts.mib.split(",").map(Number)) {
    const log = `${work}/dirtier-${mib}.log`;
    const child = spawnChild([bin, String(mib), String(rate)], log);
    await waitFor(log, /^ready pid=\d+ pages=\d+$/m);
    await sleep(gapMs);
    const rows: string[][] = [];
    // Interleaved: plain, 1, 2, 3 pre-dumps; twice; the median of two is reported per row.
    const results = new Map<number, { frozen: number[]; stored: number[]; pre: number[][] }>();
    for (let rep = 0; rep < 2; rep++) {
      for (const pre of [0, 1, 2, 3]) {
        const r = await chain(child.pid, pre, gapMs);
        const e = results.get(pre) ?? { frozen: [], stored: [], pre: [] };
        e.frozen.push(r.stats.freezeSeconds);
        e.stored.push(r.stats.pagesBytes); // the page data in the final image itself
        e.pre.push(r.preFrozen);
        results.set(pre, e);
        for (const d of r.dirs) await Deno.remove(d, { recursive: true });
        await sleep(gapMs);
      }
    }
    const plain = Math.min(...results.get(0)!.frozen);
    for (const [pre, e] of results) {
      const best = Math.min(...e.frozen);
      rows.push([
        String(mib),
        pre === 0 ? "plain dump" : `after ${pre} pre-dump${pre > 1 ? "s" : ""}`,
        e.frozen.map(ms).join(", "),
        `${((best / plain) * 100).toFixed(1)}%`,
        `${(Math.min(...e.stored) / (1 << 20)).toFixed(1)} MiB`,
        e.pre.map((p) => p.map(ms).join("+") || "-").join(", "),
      ]);
    }
    console.log(
      ["MiB", "final dump", "frozen (2 runs)", "best vs plain", "pages stored", "pre-dumps frozen"]
        .join(" | "),
    );
    for (const r of rows) console.log(r.join(" | "));

    // The memory check: 3 pre-dumps, a final dump that kills, a restore through the chain.
    const before = (await Deno.readTextFile(log)).length;
    const r = await chain(child.pid, 3, gapMs, true);
    await sleep(200);
    const tree = await restore(r.dirs[r.dirs.length - 1]);
    for (const p of tree.pids) adopt(p);
    await sleep(200);
    Deno.kill(child.pid, "SIGUSR1");
    const verdict = await waitFor(log, /^verify (ok|FAIL.*)$/m, before);
    console.log(
      `${mib} MiB: restored from a chain of 4, final frozen ${
        ms(r.stats.freezeSeconds)
      }: ${verdict}`,
    );
    await killAndReap(child.pid);
    for (const d of r.dirs) await Deno.remove(d, { recursive: true });
  }
} finally {
  await cleanupProcesses();
  await Deno.remove(work, { recursive: true }).catch(() => {});
}
