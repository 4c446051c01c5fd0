/**
 * `deno run -A scripts/bench/finalfreeze.ts [mib] [runs] [--kill]`: the
 * freeze of the final dump of a pre-copy chain, phase by phase: one
 * 2 GiB writer (scripts/bench/dirtier.c at 16 MiB/s), then `runs` times a
 * plain dump (left running, no pre-copy), a pre-dump, a one second gap
 * and a final dump (`parent`; left running, or killing the writer with
 * `--kill`, the last run only), in process,
 * with the time of each progress event (ms from the freeze when the dump
 * thaws the tree, else from the call) and of each `globalThis.__cryoMark(name)`
 * call a profiling session adds to the engine (none is committed; a mark
 * named "freeze" sets the origin). Prints JSON lines.
 *
 * @module
 */

import { checkpoint, type DumpEvent } from "../../engine/dump/mod.ts";
import { dirtierSpec, killWorkload, startWorkload } from "./workloads.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const nums = Deno.args.filter((a) => !a.startsWith("--")).map(Number);
const mib = nums[0] || 2048, runs = nums[1] || 3;
const kill = Deno.args.includes("--kill");
const work = await Deno.makeTempDir({ prefix: "cryo-finalfreeze-" });
const w = await startWorkload(dirtierSpec(mib, 16), work);
try {
  await sleep(1000);
  for (let i = 0; i < runs; i++) {
    const last = kill && i === runs - 1;
    const pre = `${work}/pre-${i}`, fin = `${work}/fin-${i}`, plain = `${work}/plain-${i}`;
    // The plain dump of the same writer (no pre-copy): the ratio's denominator.
    const p = await checkpoint(w.child.pid, {
      dir: plain,
      leaveRunning: true,
      precopy: false,
      sync: false,
    });
    await Deno.remove(plain, { recursive: true });
    await sleep(1000);
    await checkpoint(w.child.pid, { dir: pre, preDump: true, sync: false });
    await sleep(1000);
    const marks: [string, number][] = [];
    let t0 = performance.now();
    const onEvent = (e: DumpEvent) => {
      if (e.type === "pages" && e.bytes !== e.totalBytes) return;
      marks.push([e.type, Math.round(performance.now() - t0)]);
    };
    (globalThis as { __cryoMark?: (s: string) => void }).__cryoMark = (s) => {
      if (s === "freeze") t0 = performance.now();
      marks.push([s, Math.round(performance.now() - t0)]);
    };
    const r = await checkpoint(w.child.pid, {
      dir: fin,
      parent: pre,
      leaveRunning: !last,
      sync: false,
      onEvent,
      beforeKill: () => marks.push(["beforeKill", Math.round(performance.now() - t0)]),
    });
    const thawed = marks.find(([m]) => m === "thawed");
    const origin = thawed && !marks.some(([m]) => m === "freeze")
      ? thawed[1] - Math.round(r.stats.freezeSeconds * 1000)
      : 0;
    for (const m of marks) m[1] -= origin;
    console.log(JSON.stringify({
      plainFrozenMs: Math.round(p.stats.freezeSeconds * 1000),
      frozenMs: Math.round(r.stats.freezeSeconds * 1000),
      pagesMiB: +(r.stats.pagesBytes / 2 ** 20).toFixed(1),
      marks,
    }));
    for (const d of [pre, fin]) await Deno.remove(d, { recursive: true });
    await sleep(1000);
  }
} finally {
  await killWorkload(w).catch(() => {});
  await Deno.remove(work, { recursive: true }).catch(() => {});
}
