/**
 * Threads and children: /proc/<pid>/task, /proc/<pid>/task/<tid>/children
 * and the process tree below a pid.
 *
 * @module
 */

import { ProcEntryNotFoundError, ProcessGoneError } from "./errors.ts";
import { readProcNumericDir, readProcText } from "./io.ts";

/** Thread ids of a process, ascending (the main thread's tid is the pid). */
export function listTids(pid: number): number[] {
  return readProcNumericDir(pid, "task");
}

/** The ids of a whitespace-separated list (a children file's text). */
export function parseIds(text: string): number[] {
  return text.split(/\s+/).filter((s) => s !== "").map(Number);
}

/**
 * Children created by thread `tid` of `pid` (/proc/<pid>/task/<tid>/children).
 * Throws ProcEntryNotFoundError when the thread is gone or the kernel lacks
 * CONFIG_PROC_CHILDREN.
 */
export function readTaskChildren(pid: number, tid: number): number[] {
  return parseIds(readProcText(pid, "children", tid));
}

let childrenFile: boolean | undefined;

/** True when this kernel provides /proc/<pid>/task/<tid>/children. */
export function childrenFileSupported(): boolean {
  if (childrenFile === undefined) {
    try {
      Deno.statSync("/proc/self/task/" + Deno.pid + "/children");
      childrenFile = true;
    } catch {
      // /proc/self's main thread always exists; absence means no CONFIG_PROC_CHILDREN.
      childrenFile = false;
    }
  }
  return childrenFile;
}

/** Children of `pid` found by scanning every /proc/<n>/stat for ppid (fallback). */
function scanChildren(pid: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    const n = Number(e.name);
    if (!Number.isInteger(n) || n <= 0) continue;
    let text: string;
    try {
      text = Deno.readTextFileSync(`/proc/${n}/stat`);
    } catch {
      continue;
    }
    const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
    if (Number(rest[1]) === pid) out.push(n);
  }
  return out.sort((a, b) => a - b);
}

/**
 * All children of a process: the union over its threads, ascending.
 * Threads exiting meanwhile are skipped; ProcessGoneError if `pid` is gone.
 */
export function readChildren(pid: number): number[] {
  return readChildrenOfThreads(pid, listTids(pid));
}

/**
 * Children of a process whose threads are `tids` (listed by the caller):
 * the union of their children files, ascending (one read per thread, no
 * listing). Threads gone meanwhile are skipped.
 */
export function readChildrenOfThreads(pid: number, tids: readonly number[]): number[] {
  if (!childrenFileSupported()) return scanChildren(pid);
  const all = new Set<number>();
  for (const tid of tids) {
    try {
      for (const c of readTaskChildren(pid, tid)) all.add(c);
    } catch (err) {
      if (err instanceof ProcEntryNotFoundError) continue;
      throw err;
    }
  }
  return [...all].sort((a, b) => a - b);
}

/**
 * The pids of the tree below `root`, `root` first; just `[root]` when the
 * walk fails (the root gone or unreadable). Never throws.
 */
export function treePidsOrRoot(
  root: number,
  /** How a process's children are read ({@link readChildren} unless given). */
  readKids: (pid: number) => number[] = readChildren,
): number[] {
  try {
    return [...listDescendants(root, readKids).keys()];
  } catch {
    return [root];
  }
}

/**
 * The process tree below `pid` (included): a map pid -> children for every
 * process of the tree, parents before children. Descendants that vanish
 * while walking are left out; ProcessGoneError if `pid` itself is gone.
 */
export function listDescendants(
  pid: number,
  /** How a process's children are read ({@link readChildren} unless given). */
  readKids: (pid: number) => number[] = readChildren,
): Map<number, number[]> {
  const tree = new Map<number, number[]>();
  tree.set(pid, readKids(pid));
  const queue = [pid];
  while (queue.length > 0) {
    const parent = queue.shift()!;
    const kept: number[] = [];
    for (const child of tree.get(parent)!) {
      if (tree.has(child)) continue;
      try {
        tree.set(child, readKids(child));
      } catch (err) {
        if (err instanceof ProcessGoneError) continue;
        throw err;
      }
      kept.push(child);
      queue.push(child);
    }
    tree.set(parent, kept);
  }
  return tree;
}
