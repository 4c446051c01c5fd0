/**
 * `deno run -A scripts/bench/restore_phases.ts <dir> [--no-verify]`: one
 * `restore(dir)` in process, with the time of loading the restore engine
 * and of each session event (launched, exec and program-done per process,
 * running), then kills the restored tree. Prints JSON: milliseconds since
 * the start of this module's evaluation, and the process's CPU time (user
 * + system, all threads) at each mark.
 *
 * @module
 */

const t0 = performance.now();
const marks: { at: number; cpu: number; what: string }[] = [];

/** CPU time of this process so far (all threads), in ms. */
function cpuMs(): number {
  let ns = 0;
  for (const e of Deno.readDirSync("/proc/self/task")) {
    try {
      ns += Number(Deno.readTextFileSync(`/proc/self/task/${e.name}/schedstat`).split(" ")[0]);
    } catch { /* the thread ended */ }
  }
  return ns / 1e6;
}

function mark(what: string): void {
  marks.push({
    at: Math.round((performance.now() - t0) * 10) / 10,
    cpu: Math.round(cpuMs()),
    what,
  });
}

mark("start");
const RESTORE_MODULE: string = "../../engine/restore/mod.ts";
const { restore }: typeof import("../../engine/restore/mod.ts") = await import(RESTORE_MODULE);
mark("engine loaded");
const [dir, ...rest] = Deno.args;
const tree = await restore(dir, {
  verifyChecksums: !rest.includes("--no-verify"),
  onEvent: (e) =>
    mark(e.type === "exec" || e.type === "program-done" ? `${e.type} ${e.pid}` : e.type),
});
mark("restored");
tree.kill(9);
await tree.exited;
console.log(JSON.stringify({ seconds: tree.seconds, marks }, null, 1));
