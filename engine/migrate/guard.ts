/**
 * The guard of a live migration's source: a small process `cryo migrate`
 * starts (engine/migrate/send.ts) before the first round, so that a sender
 * that dies at any moment (even SIGKILL) leaves the source running and
 * untraced. It reads fd 3, a pipe whose only writer is the sender:
 *
 * - "S", a u32 count and that many u32 pids: the sender stopped these
 *   processes (SIGSTOP, after the final dump); the guard takes a pidfd of
 *   each at once, so a later pid reuse cannot mislead it;
 * - "D": the switch is done (the source is killed): it exits;
 * - end of file without "D" (the sender failed or died): it continues the
 *   processes it was told were stopped, then, once no tracer holds the
 *   tree any more (a dead tracer's detach may lag its closed fds), freezes
 *   the tree, closes in each process every userfaultfd at or above the
 *   tracking fd base (engine/dump/tracking.ts) that was not there when the
 *   migration began (cryo's pre-copy tracking: the kernel then lifts every
 *   registration and protection), thaws it, and forgets the chain
 *   (engine/dump/tracking_state.ts). Nothing is done if the root is gone
 *   or its pid was reused.
 *
 * argv: the root pid, its start time (clock ticks), and the userfaultfds
 * present at the start, as "pid:fd" words joined by commas ("-" for none).
 *
 * @module
 */

import { readdirSync } from "node:fs";
import { rawSyscall, readFully } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { readStat } from "../proc/stat.ts";
import { readChildren } from "../proc/tasks.ts";
import { freezeTree, thawTree } from "../dump/freeze.ts";
import { closeInTarget, isUffd, trackingFdBase } from "../dump/tracking.ts";
import { readTrackingState, removeTrackingState } from "../dump/tracking_state.ts";

const SIGCONT = 18;

/** The pids of the tree of `root` (root first), from /proc; gone processes are skipped. */
export function treePids(root: number): number[] {
  const out: number[] = [];
  const todo = [root];
  for (let pid = todo.shift(); pid !== undefined; pid = todo.shift()) {
    out.push(pid);
    try {
      todo.push(...readChildren(pid));
    } catch { /* gone */ }
  }
  return out;
}

/** The userfaultfds of `pid` as "pid:fd" words. */
export function uffdsOf(pid: number): string[] {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  return fds.filter((fd) => isUffd(pid, Number(fd))).map((fd) => `${pid}:${fd}`);
}

function starttimeOf(pid: number): number | undefined {
  try {
    return readStat(pid).starttime;
  } catch {
    return undefined;
  }
}

/** Closes cryo's tracking fds in the tree of `root` (those not in `before`). */
function untrack(root: number, before: Set<string>): void {
  const tree = freezeTree(root);
  try {
    for (const p of tree.processes) {
      const base = trackingFdBase(p.pid);
      for (const word of uffdsOf(p.pid)) {
        const fd = Number(word.split(":")[1]);
        if (fd >= base && !before.has(word)) closeInTarget(p.pid, fd);
      }
    }
  } finally {
    thawTree(tree);
  }
  if (readTrackingState(root)) removeTrackingState(root);
}

async function main(): Promise<never> {
  rawSyscall(SYS.setsid);
  const root = Number(Deno.args[0]), starttime = Number(Deno.args[1]);
  const before = new Set(Deno.args[2] === "-" ? [] : Deno.args[2].split(","));
  const stopped: number[] = [];
  const kind = new Uint8Array(1);
  for (;;) {
    if (!readFully(3, kind)) break;
    if (kind[0] === 0x44 /* "D" */) rawSyscall(SYS.exit_group, 0);
    const n = new Uint32Array(1);
    if (kind[0] !== 0x53 /* "S" */ || !readFully(3, new Uint8Array(n.buffer))) break;
    const pids = new Uint32Array(n[0]);
    if (!readFully(3, new Uint8Array(pids.buffer))) break;
    for (const pid of pids) {
      const fd = Number(rawSyscall(SYS.pidfd_open, pid, 0));
      if (fd >= 0) stopped.push(fd);
    }
  }
  for (const fd of stopped) rawSyscall(SYS.pidfd_send_signal, fd, SIGCONT, 0, 0);
  const deadline = Date.now() + 60_000;
  while (starttimeOf(root) === starttime && Date.now() < deadline) {
    try {
      untrack(root, before);
      break;
    } catch {
      // Still traced by the dying sender, or a process came or went: again.
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  rawSyscall(SYS.exit_group, 0);
  Deno.exit(0);
}

if (import.meta.main) await main();
