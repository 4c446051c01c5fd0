/**
 * `deno run -A scripts/bench/ab.ts --base <other tree>/cli.ts [--only a,b] [--rounds n]
 * [--flag-a <flag>] [--flag-b <flag>] [--env-a KEY=VAL] [--env-b KEY=VAL] [--quick] [--restore]`:
 * an interleaved A/B of `cryo dump --leave-running` between another cryo tree (A, e.g. `git
 * archive main` unpacked in /tmp) and this one (B), on the bench workloads. Every round dumps the
 * same running workload with A and B, in alternating order; it reports per variant the medians of
 * the command's wall time, CPU (user + system, from wait4), peak RSS, the freeze the workload saw
 * (its heartbeat's longest gap during the command) and cryo's own frozen time (`freezeSeconds`:
 * every freeze of the tree, a pre-copy's included; a seen freeze well above it is a stall outside
 * the freezes, e.g. while a pre-copy's tracking is armed or released). `--flag-b=--no-precopy`
 * (with `=`: a value that starts with a dash) passes a flag to one variant; `--env-b
 * CRYO_FORK_SNAPSHOT=1` sets an environment variable for every cryo command of one variant (both
 * repeatable; without `--base` both variants run this tree, so flags and variables make the
 * difference). With `--restore`: A and B each dump each workload once (each its own image: the two
 * trees may write formats the other does not read), then every round kills the workload and
 * restores them, each variant its own (`restore --detach --json`, alternating order), and the
 * table has the restore's wall, CPU, peak RSS and the time until the restored process's first
 * heartbeat; the workload checks its memory at the end.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { cryoDump, cryoRestore, type CryoRuntime, flushDirty, prepareCli } from "./measure.ts";
import { becomeSubreaper } from "./procs.ts";
import { killWorkload, startWorkload, verifyWorkload, workloads } from "./workloads.ts";

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    base: { type: "string" },
    only: { type: "string" },
    /** The quick set of workloads (python-128MiB instead of python-512MiB...). */
    quick: { type: "boolean", default: false },
    /** Measure `restore --detach` of one image instead of the dump. */
    restore: { type: "boolean", default: false },
    rounds: { type: "string", default: "5" },
    "flag-a": { type: "string", multiple: true, default: [] },
    "flag-b": { type: "string", multiple: true, default: [] },
    "env-a": { type: "string", multiple: true, default: [] },
    "env-b": { type: "string", multiple: true, default: [] },
  },
});

/** `KEY=VAL` options as an environment (the value may hold `=`). */
const envOf = (pairs: string[] | undefined): Record<string, string> =>
  Object.fromEntries((pairs ?? []).map((p) => {
    const at = p.indexOf("=");
    if (at <= 0) throw new Error(`--env-a/--env-b takes KEY=VAL, not ${JSON.stringify(p)}`);
    return [p.slice(0, at), p.slice(at + 1)];
  }));

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
  {
    name: "A",
    rt: { denoFlags: [], cliPath: opts.base, env: envOf(opts["env-a"]) },
    flags: opts["flag-a"] ?? [],
  },
  { name: "B", rt: { denoFlags: [], env: envOf(opts["env-b"]) }, flags: opts["flag-b"] ?? [] },
];
const rows: string[] = [];
try {
  for (const spec of specs) {
    const w = await startWorkload(spec, work);
    const got = new Map<
      string,
      { wall: number; cpu: number; rss: number; seen: number; frozen?: number; kids?: number }[]
    >();
    try {
      const imageOf = (v: { name: string }) => `${work}/${spec.name}-image-${v.name}`;
      if (opts.restore) {
        for (const v of variants) await cryoDump(w, imageOf(v), `${imageOf(v)}.log`, v.rt);
      }
      for (let i = 0; i < Number(opts.rounds); i++) {
        const order = i % 2 ? [...variants].reverse() : variants;
        for (const v of order) {
          if (opts.restore) {
            await killWorkload(w);
            await flushDirty();
            const d = await cryoRestore(w, imageOf(v), true, `${imageOf(v)}-${i}`, v.rt);
            const r = {
              wall: d.process.wallSeconds,
              cpu: d.process.userSeconds + d.process.systemSeconds,
              rss: d.process.maxRssBytes / 2 ** 20,
              seen: d.untilRunningSeconds,
            };
            console.error(`${spec.name} ${v.name} #${i + 1}: ${JSON.stringify(r)}`);
            got.set(v.name, [...(got.get(v.name) ?? []), r]);
            continue;
          }
          const dir = `${work}/${spec.name}-${v.name}-${i}`;
          await flushDirty();
          const kids0 = childrenCpu(w.child.pid);
          const d = await cryoDump(w, dir, `${dir}.log`, v.rt, v.flags);
          const kids = childrenCpu(w.child.pid) - kids0;
          await Deno.remove(dir, { recursive: true }).catch(() => {});
          const r = {
            wall: d.process.wallSeconds,
            cpu: d.process.userSeconds + d.process.systemSeconds,
            rss: d.process.maxRssBytes / 2 ** 20,
            seen: d.observedFreezeSeconds ?? 0,
            // cryo's own count: every freeze of the tree (a pre-copy's too), not the stalls
            // the process may see outside them (docs/PERFORMANCE.md, seventeenth pass, bigfreeze).
            frozen: d.stats.freezeSeconds,
            kids,
          };
          console.error(`${spec.name} ${v.name} #${i + 1}: ${JSON.stringify(r)}`);
          got.set(v.name, [...(got.get(v.name) ?? []), r]);
        }
      }
      if (opts.restore) await verifyWorkload(w);
    } finally {
      await killWorkload(w);
    }
    for (const v of variants) {
      const l = got.get(v.name) ?? [];
      const f = (k: "wall" | "cpu" | "rss" | "seen" | "frozen" | "kids", d = 3) =>
        median(l.map((x) => x[k] ?? NaN)).toFixed(d);
      rows.push(
        `| ${spec.name} | ${v.name} | ${f("wall")} | ${f("cpu")} | ${f("seen")} |${
          opts.restore ? "" : ` ${f("frozen")} |`
        } ${f("rss", 0)} |${opts.restore ? "" : ` ${f("kids", 2)} |`}`,
      );
    }
  }
} finally {
  await Deno.remove(work, { recursive: true }).catch(() => {});
}
console.log(
  opts.restore
    ? "| workload | variant | restore wall s | restore CPU s | until running s | peak RSS MiB |"
    : "| workload | variant | dump wall s | dump CPU s | seen freeze s | cryo's frozen s | peak RSS MiB | workload's children CPU s |",
);
console.log(`| --- | --- | --- | --- | --- | --- |${opts.restore ? "" : " --- | --- |"}`);
for (const r of rows) console.log(r);

/**
 * CPU seconds of the reaped children of `pid` (cutime + cstime, in ticks of 10 ms): a fork
 * snapshot's child is reaped in the workload, its CPU counted there, not in cryo's wait4.
 */
function childrenCpu(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[13]) + Number(f[14])) / 100;
  } catch {
    return NaN;
  }
}
