/**
 * `deno run -A scripts/bench/restore_phases.ts <dir> [--no-verify]`: one
 * `restore(dir)` in process, with the time of loading the restore engine
 * and of each session event (launched, exec and program-done per process,
 * running), then kills the restored tree. Prints JSON: milliseconds since
 * the start of this module's evaluation, and the process's CPU time (user
 * + system, all threads) and the main thread's time on a CPU and time
 * runnable waiting for one (wall - both = time it slept) at each mark; then the scheduler figures (CPU time,
 * time runnable waiting for a CPU, timeslices) of each restored process and
 * of this one, read once the tree was released.
 *
 * @module
 */

const t0 = performance.now();
const marks: { at: number; cpu: number; mainRun: number; mainWait: number; what: string }[] = [];

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

/** The main thread's time on a CPU and time runnable waiting for one, in ms (its schedstat). */
function mainSched(): [number, number] {
  const [run, wait] = Deno.readTextFileSync(`/proc/self/task/${Deno.pid}/schedstat`).split(" ");
  return [Math.round(Number(run) / 1e5) / 10, Math.round(Number(wait) / 1e5) / 10];
}

function mark(what: string): void {
  const [mainRun, mainWait] = mainSched();
  marks.push({
    at: Math.round((performance.now() - t0) * 10) / 10,
    cpu: Math.round(cpuMs()),
    mainRun,
    mainWait,
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
const restoredSched = tree.pids.map(schedOf);
const cryoSched = schedOf(Deno.pid);
tree.kill(9);
await tree.exited;
console.log(JSON.stringify({ seconds: tree.seconds, marks, restoredSched, cryoSched }, null, 1));

/**
 * A process's scheduler figures summed over its threads (/proc/<pid>/task/<tid>/schedstat),
 * in ms: time on a CPU, time runnable but waiting for one, and timeslices.
 */
function schedOf(pid: number): { pid: number; runMs: number; waitMs: number; slices: number } {
  let run = 0, wait = 0, slices = 0;
  for (const e of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const [r, w, s] = Deno.readTextFileSync(`/proc/${pid}/task/${e.name}/schedstat`).split(" ");
      run += Number(r);
      wait += Number(w);
      slices += Number(s);
    } catch { /* the thread ended */ }
  }
  return { pid, runMs: Math.round(run / 1e5) / 10, waitMs: Math.round(wait / 1e5) / 10, slices };
}
