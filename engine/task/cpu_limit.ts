/**
 * RLIMIT_CPU against the CPU time a process already used. The kernel
 * compares the limit with the CPU time of the whole process (every thread,
 * the dead ones too), which a restore cannot give back: the restored
 * process starts with none used (task.counters), so a finite soft or hard
 * limit would let it run the time it had used once more before SIGXCPU or
 * SIGKILL, and would read the same limit with getrlimit. Such a process is
 * refused at dump (task.rlimit-cpu-used) rather than restored with a larger
 * budget than it had.
 *
 * @module
 */

import type { Rlimit } from "../model.ts";
import type { Refusals } from "../support.ts";

const RLIMIT_CPU = 0;

/**
 * Refuses process `pid` when its RLIMIT_CPU (from `rlimits`) is finite and
 * it used CPU time (`ticks`: utime + stime of /proc/<pid>/stat, at `hz`
 * ticks a second).
 */
export function refuseCpuLimitUsed(
  pid: number,
  rlimits: readonly Rlimit[],
  ticks: number,
  refusals: Refusals,
  hz = 100,
): void {
  const cpu = rlimits.find((r) => r.resource === RLIMIT_CPU);
  if (!cpu || (cpu.soft === "inf" && cpu.hard === "inf") || ticks <= 0) return;
  const s = (v: number | "inf") => (v === "inf" ? "unlimited" : `${v} s`);
  refusals.use(
    "task.rlimit-cpu-used",
    `process ${pid}`,
    `RLIMIT_CPU soft ${s(cpu.soft)}, hard ${s(cpu.hard)}, with ${
      (ticks / hz).toFixed(2)
    } s of CPU time used, which a restored process would get again`,
  );
}
