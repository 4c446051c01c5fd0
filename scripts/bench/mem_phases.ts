/**
 * `deno run -A scripts/bench/mem_phases.ts <pid> <dir> [--no-precopy]`: one
 * `checkpoint(pid, { leaveRunning: true, sync: false })` in process, printing
 * cryo's RSS and V8 heap at each progress event and the peak RSS (VmHWM),
 * to see which phase makes the peak memory. With `CRYO_HEAP_SNAPSHOT_AT=<event
 * type>`, a V8 heap snapshot is written next to `dir` at that event.
 *
 * @module
 */

import { checkpoint, type DumpEvent } from "../../engine/dump/mod.ts";
import v8 from "node:v8";

const [pidArg, dir, ...rest] = Deno.args;
const MiB = 1 << 20;
const hwm = () =>
  Number(/VmHWM:\s+(\d+)/.exec(Deno.readTextFileSync("/proc/self/status"))![1]) / 1024;
const mark = (what: string) => {
  const m = Deno.memoryUsage();
  console.log(
    `${what.padEnd(24)} rss ${(m.rss / MiB).toFixed(0)} heap ${(m.heapUsed / MiB).toFixed(0)}/${
      (m.heapTotal / MiB).toFixed(0)
    } external ${(m.external / MiB).toFixed(0)} hwm ${hwm().toFixed(0)} MiB`,
  );
};
mark("start");
let pages = 0;
await checkpoint(Number(pidArg), {
  dir,
  leaveRunning: true,
  sync: false,
  precopy: rest.includes("--no-precopy") ? false : rest.includes("--precopy") ? true : undefined,
  onEvent: (e: DumpEvent) => {
    if (e.type === "pages") {
      if (pages++ % 20 === 0 || e.bytes === e.totalBytes) mark(`pages ${e.pid}`);
      return;
    }
    mark(e.type === "process" ? `collected ${e.pid}` : e.type);
    const snap = Deno.env.get("CRYO_HEAP_SNAPSHOT_AT");
    if (snap && e.type === snap) v8.writeHeapSnapshot(`${dir}.${snap}.heapsnapshot`);
  },
});
mark("end");
