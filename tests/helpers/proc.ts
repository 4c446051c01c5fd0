/**
 * Test helpers reading /proc directly (independently of engine/proc, so
 * that tests compare the engine with their own view).
 *
 * @module
 */

import { pathExists } from "./fs.ts";

/** The thread ids of `pid`, ascending. */
export function tasksOf(pid: number): number[] {
  return [...Deno.readDirSync(`/proc/${pid}/task`)].map((e) => Number(e.name))
    .sort((a, b) => a - b);
}

/** Field `name` of /proc/<pid>/task/<tid>/status (`tid` defaults to `pid`); throws if absent. */
export function statusField(pid: number, name: string, tid = pid): string {
  const text = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/status`);
  const m = text.match(new RegExp(`^${name}:\\s*(.*)$`, "m"));
  if (!m) throw new Error(`no ${name} in the status of ${tid}`);
  return m[1];
}

/** The parent pid of `pid`. */
export function ppidOf(pid: number): number {
  return Number(statusField(pid, "PPid"));
}

/** Whether `pid` exists and is neither a zombie nor dead. */
export function isAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) [ZX] /.test(stat);
  } catch {
    return false;
  }
}

/** A pid that no process has right now, searched downward from pid_max. */
export function freePid(): number {
  const max = Number(Deno.readTextFileSync("/proc/sys/kernel/pid_max").trim());
  for (let pid = max - 1; pid > 300; pid--) {
    if (!pathExists(`/proc/${pid}`)) return pid;
  }
  throw new Error("no free pid");
}

/** The pids of the children of `pid` (its main thread's); none once it is gone. */
export function childrenOf(pid: number): number[] {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim().split(/\s+/)
      .filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** The command names of `pids` (those that still exist). */
export function commsOf(pids: number[]): string[] {
  return pids.flatMap((p) => {
    try {
      return [Deno.readTextFileSync(`/proc/${p}/comm`).trim()];
    } catch {
      return [];
    }
  });
}
