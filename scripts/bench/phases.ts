/**
 * `deno run -A scripts/bench/phases.ts <pid> <dir> [--no-sync] [--no-precopy]`: one
 * `checkpoint(pid, { leaveRunning: true })` in process, with the time of
 * each progress event, to see where the frozen time goes: freeze (until
 * "frozen"), collect (until each process's "process" event: /proc, ptrace,
 * injected syscalls, pagemap), page copy (until its last "pages" event),
 * finishing (the rest of the freeze: waiting for the writer), then the part
 * after the tree runs again (notes, fsync, checksum, manifest), with the
 * CPU time (user + system, all threads) spent by then. Prints JSON.
 *
 * @module
 */

import process from "node:process";
import { checkpoint, type DumpEvent } from "../../engine/dump/mod.ts";

/** CPU seconds (user + system, every thread) of this process so far. */
function cpu(): number {
  const u = process.cpuUsage();
  return Math.round((u.user + u.system) / 1000) / 1000;
}

const [pidArg, dir, ...rest] = Deno.args;
const t0 = performance.now();
const cpu0 = cpu();
const marks: { at: number; cpu: number; what: string }[] = [];
let lastPages: { at: number; pid: number } | undefined;
const onEvent = (e: DumpEvent) => {
  const at = (performance.now() - t0) / 1000;
  if (e.type === "pages") {
    // The CPU is read only for the last one (a process of 10,000 mappings has one event per run).
    if (e.bytes === e.totalBytes) {
      marks.push({ at, cpu: cpu() - cpu0, what: `pages-done ${e.pid}` });
    }
    lastPages = { at, pid: e.pid };
    return;
  }
  marks.push({ at, cpu: cpu() - cpu0, what: e.type === "process" ? `collected ${e.pid}` : e.type });
};
const r = await checkpoint(Number(pidArg), {
  dir,
  leaveRunning: true,
  onEvent,
  sync: !rest.includes("--no-sync"),
  precopy: rest.includes("--no-precopy") ? false : rest.includes("--precopy") ? true : undefined,
});
marks.push({ at: (performance.now() - t0) / 1000, cpu: cpu() - cpu0, what: "returned" });
// t0: performance.now() at the start (ms since the process began, as `--v8-flags=--trace-gc` counts).
console.log(JSON.stringify({ stats: r.stats, cpuAtStart: cpu0, t0, marks, lastPages }, null, 1));
