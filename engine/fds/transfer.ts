/**
 * Tree helpers for objects created by the lowest common ancestor of their
 * holders before it forks, at "transfer" fd numbers above every fd of the
 * tree that the holders then take like inherited fds (unix.ts; shared.ts
 * does the same for shared descriptions): the tree's parent links, the
 * creator of a set of holders, and where transfer numbers may start.
 *
 * @module
 */

import type { ProcessImage } from "../model.ts";

/** Child pid -> parent pid, for the processes of a tree. */
export function treeParents(processes: readonly ProcessImage[]): Map<number, number> {
  const parent = new Map<number, number>();
  for (const p of processes) for (const c of p.children) parent.set(c, p.pid);
  return parent;
}

function ancestors(pid: number, parent: Map<number, number>): number[] {
  const out = [pid];
  for (let p = parent.get(pid); p !== undefined; p = parent.get(p)) out.push(p);
  return out;
}

/** The lowest common ancestor of `pids` (a pid is its own ancestor). */
export function creatorOf(pids: Iterable<number>, parent: Map<number, number>): number {
  const chains = [...pids].map((pid) => ancestors(pid, parent));
  return chains[0].find((a) => chains.every((c) => c.includes(a)))!;
}

/**
 * The first transfer fd number: above every fd of the tree and above the
 * `reserved` lowest free numbers a creator may hold while creating.
 */
export function transferBase(processes: readonly ProcessImage[], reserved: number): number {
  let maxFd = 2;
  for (const p of processes) for (const f of p.fds) maxFd = Math.max(maxFd, f.fd);
  return Math.max(maxFd + 1, 3 + reserved + 1);
}
