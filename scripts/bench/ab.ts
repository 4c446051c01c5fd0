/**
 * `deno run -A scripts/bench/ab.ts --base <other tree>/cli.ts [--only a,b] [--rounds n]
 * [--flag-a <flag>] [--flag-b <flag>] [--quick]`: an interleaved A/B of `cryo dump --leave-running`
 * between another cryo tree (A, e.g. `git archive main` unpacked in /tmp) and this one (B),
 * on the bench workloads. Every round dumps the same running workload with A and B, in
 * alternating order; it reports per variant the medians of the command's wall time, CPU
 * (user + system, from wait4), peak RSS and the freeze the workload saw (its heartbeat).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { cryoDump, type CryoRuntime, flushDirty, prepareCli } from "./measure.ts";
import { becomeSubreaper } from "./procs.ts";
import { killWorkload, startWorkload, workloads } from "./workloads.ts";

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    base: { type: "string" },
    only: { type: "string" },
    /** The quick set of workloads (python-128MiB instead of python-512MiB...). */
    quick: { type: "boolean", default: false },
    rounds: { type: "string", default: "5" },
    "flag-a": { type: "string", multiple: true, default: [] },
    "flag-b": { type: "string", multiple: true, default: [] },
  },
});

const median = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length
    ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2)
    : NaN;
};

becomeSubreaper();
await prepareCli();
if (opts.base) await prepareCli(opts.base);
const only = opts.only?.split(",");
const specs = workloads(opts.quick).filter((w) => !only || only.includes(w.name));
const work = await Deno.makeTempDir({ prefix: "cryo-ab-" });
const variants: { name: string; rt: CryoRuntime; flags: string[] }[] = [
  { name: "A", rt: { denoFlags: [], cliPath: opts.base }, flags: opts["flag-a"] ?? [] },
  { name: "B", rt: { denoFlags: [] }, flags: opts["flag-b"] ?? [] },
];
const rows: string[] = [];
try {
  for (const spec of specs) {
    const w = await startWorkload(spec, work);
    const got = new Map<string, { wall: number; cpu: number; rss: number; seen: number }[]>();
    try {
      for (let i = 0; i < Number(opts.rounds); i++) {
        const order = i % 2 ? [...variants].reverse() : variants;
        for (const v of order) {
          const dir = `${work}/${spec.name}-${v.name}-${i}`;
          await flushDirty();
          const d = await cryoDump(w, dir, `${dir}.log`, v.rt, v.flags);
          await Deno.remove(dir, { recursive: true }).catch(() => {});
          const r = {
            wall: d.process.wallSeconds,
            cpu: d.process.userSeconds + d.process.systemSeconds,
            rss: d.process.maxRssBytes / 2 ** 20,
            seen: d.observedFreezeSeconds ?? 0,
          };
          console.error(`${spec.name} ${v.name} #${i + 1}: ${JSON.stringify(r)}`);
          got.set(v.name, [...(got.get(v.name) ?? []), r]);
        }
      }
    } finally {
      await killWorkload(w);
    }
    for (const v of variants) {
      const l = got.get(v.name) ?? [];
      const f = (k: "wall" | "cpu" | "rss" | "seen", d = 3) =>
        median(l.map((x) => x[k])).toFixed(d);
      rows.push(
        `| ${spec.name} | ${v.name} | ${f("wall")} | ${f("cpu")} | ${f("seen")} | ${f("rss", 0)} |`,
      );
    }
  }
} finally {
  await Deno.remove(work, { recursive: true }).catch(() => {});
}
console.log("| workload | variant | dump wall s | dump CPU s | seen freeze s | peak RSS MiB |");
console.log("| --- | --- | --- | --- | --- | --- |");
for (const r of rows) console.log(r);
