/**
 * `deno run -A scripts/bench/phases.ts <pid> <dir> [--no-sync] [--no-precopy]`: one
 * `checkpoint(pid, { leaveRunning: true })` in process, with the time of
 * each progress event, to see where the frozen time goes: freeze (until
 * "frozen"), collect (until each process's "process" event: /proc, ptrace,
 * injected syscalls, pagemap), page copy (until its last "pages" event),
 * finishing (the rest of the freeze: waiting for the writer), then the part
 * after the tree runs again (notes, fsync, checksum, manifest). Prints JSON.
 *
 * @module
 */

import { checkpoint, type DumpEvent } from "../../engine/dump/mod.ts";

const [pidArg, dir, ...rest] = Deno.args;
const t0 = performance.now();
const marks: { at: number; what: string }[] = [];
let lastPages: { at: number; pid: number } | undefined;
const onEvent = (e: DumpEvent) => {
  const at = (performance.now() - t0) / 1000;
  if (e.type === "pages") {
    if (e.bytes === e.totalBytes) marks.push({ at, what: `pages-done ${e.pid}` });
    lastPages = { at, pid: e.pid };
    return;
  }
  marks.push({ at, what: e.type === "process" ? `collected ${e.pid}` : e.type });
};
const r = await checkpoint(Number(pidArg), {
  dir,
  leaveRunning: true,
  onEvent,
  sync: !rest.includes("--no-sync"),
  precopy: rest.includes("--no-precopy") ? false : rest.includes("--precopy") ? true : undefined,
});
console.log(JSON.stringify({ stats: r.stats, marks, lastPages }, null, 1));
