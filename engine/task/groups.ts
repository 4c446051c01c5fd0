/**
 * Process groups and sessions across the tree, checked before a restore is
 * attempted (at dump, by the restorability check, and at restore), and the
 * groups whose leader is gone, which the restore makes again.
 *
 * A restored process is born into its parent's session and group (clone
 * inherits them), then makes its own session (setsid) or group
 * (setpgid(0, 0)) when it led one, and at finalize joins a group led by
 * another process of the tree (engine/restore/session.ts), by a zombie of
 * the tree that leads its own group (re-created before the finalize,
 * reaped later by its parent), or by a placeholder. The root's session and
 * group, when not its own, are the restorer's.
 *
 * A group whose leader exited and was reaped (a pipeline of a job-control
 * shell whose first command ended) is made again by a placeholder: the
 * parent of its first member forks, with `set_tid`, a process with the
 * leader's pid that makes the group (setpgid(0, 0)) and waits in pause();
 * the members join it at finalize, then the session kills it and the
 * parent reaps it (and has the SIGCHLD taken) before the tree runs. A
 * session whose leader exited (a daemon's double fork) is made the same
 * way, by a placeholder that calls setsid and then clones the session's
 * members that are children of its own parent with CLONE_PARENT (a session
 * cannot be joined: its members must be born into it); it is forked once
 * that parent's memory is in, so that members restored by inheritance get
 * it. The root's outside session and group get no placeholder.
 *
 * A process whose recorded session or group is not what those steps give
 * would come back silently in another one: a parent that called setsid
 * after forking it, members of one gone session with different parents, a
 * leader alive outside the tree (seen at dump). Those are refused by name.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { findSyscallInstruction, injectSyscall } from "../../ffi/inject.ts";
import { takeSigchld } from "./stopped.ts";
import { __WALL, P_PID, waitPid, WEXITED, WNOHANG } from "../../ffi/wait.ts";
import { RestoreError } from "../errors.ts";
import { readStat } from "../proc/stat.ts";
import { sleepSync } from "../sleep_sync.ts";
import { CLONE, cloneArgs } from "../../ffi/structs.ts";
import type { ProcessImage } from "../model.ts";
import type { Refusals } from "../support.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import { cloneWithTid } from "../program/clone.ts";

const SIGCHLD = 17n;
const SIGKILL = 9;
const ESRCH = 3;

/**
 * A placeholder: a process with the pid of a group's or session's leader
 * that is gone, forked by the restore program of one process of the tree.
 */
export interface Placeholder {
  /** Its pid: the group's (and session's) id. */
  pid: number;
  /** A session (setsid) rather than a group (setpgid(0, 0)). */
  session: boolean;
  /** A session's members it clones for its parent (CLONE_PARENT): children of that parent. */
  members: number[];
}

/** What the restore makes of the tree's sessions and groups. */
interface GroupPlan {
  /** Each process's restored session and group (the root's outside ids stand for the restorer's). */
  sid: Map<number, number>;
  pgid: Map<number, number>;
  /** Placeholders, by the pid of the process that forks them. */
  placeholders: Map<number, Placeholder[]>;
}

/** Plans the sessions and groups of `images` (parents first). */
function planGroups(images: readonly ProcessImage[]): GroupPlan {
  const byPid = new Map(images.map((i) => [i.pid, i]));
  const joinable = new Set(images.map((i) => i.pid));
  const zombies = new Set<number>();
  for (const i of images) {
    for (const z of i.zombies ?? []) {
      zombies.add(z.pid);
      if (z.pgid === z.pid) joinable.add(z.pid);
    }
  }
  const plan: GroupPlan = { sid: new Map(), pgid: new Map(), placeholders: new Map() };
  const add = (host: number, x: Placeholder) =>
    plan.placeholders.set(host, [...plan.placeholders.get(host) ?? [], x]);
  const sessionHost = new Map<number, number>();
  // The root's session and group, when not its own, are the restorer's: no placeholder for them.
  const outside = new Set<number>();
  for (const p of images) {
    if (!byPid.has(p.ppid)) outside.add(p.sid).add(p.pgid);
  }
  for (const p of images) {
    const parent = byPid.get(p.ppid);
    if (!parent) {
      plan.sid.set(p.pid, p.sid);
      plan.pgid.set(p.pid, p.pgid);
      continue;
    }
    let s = p.sid === p.pid ? p.pid : plan.sid.get(parent.pid) ?? parent.sid;
    if (
      s !== p.sid && !byPid.has(p.sid) && !zombies.has(p.sid) && !outside.has(p.sid) &&
      (sessionHost.get(p.sid) ?? parent.pid) === parent.pid
    ) {
      // Its session's leader is gone: a placeholder forked by this parent makes the session
      // again and clones it into it, as this parent's child (CLONE_PARENT).
      const mine = plan.placeholders.get(parent.pid)?.find((x) => x.pid === p.sid);
      if (mine) mine.members.push(p.pid);
      else add(parent.pid, { pid: p.sid, session: true, members: [p.pid] });
      sessionHost.set(p.sid, parent.pid);
      joinable.add(p.sid);
      s = p.sid;
    }
    let g = p.pgid === p.pid || joinable.has(p.pgid) ? p.pgid : plan.pgid.get(parent.pid)!;
    const parentSid = plan.sid.get(parent.pid) ?? parent.sid;
    if (
      g !== p.pgid && parentSid === p.sid && !byPid.has(p.pgid) && !zombies.has(p.pgid) &&
      !outside.has(p.pgid)
    ) {
      // Its leader is gone: a placeholder forked by this parent (in its session) makes the
      // group again.
      add(parent.pid, { pid: p.pgid, session: false, members: [] });
      joinable.add(p.pgid);
      g = p.pgid;
    }
    plan.sid.set(p.pid, s);
    plan.pgid.set(p.pid, g);
  }
  return plan;
}

/**
 * Refuses processes of `images` (parents first) whose session a restore
 * would change; reports the groups made again by a placeholder.
 */
export function checkGroupsAndSessions(
  images: readonly ProcessImage[],
  refusals: Refusals,
  /** At dump: a placeholder's pid must be free (its leader exited, not alive outside the tree). */
  atDump = false,
): void {
  const byPid = new Map(images.map((i) => [i.pid, i]));
  const plan = planGroups(images);
  for (const p of images) {
    const parent = byPid.get(p.ppid);
    if (!parent) continue;
    const s = plan.sid.get(p.pid)!;
    if (s !== p.sid) {
      refusals.use(
        "task.session-other",
        `process ${p.pid}`,
        `it is in session ${p.sid}, its parent ${parent.pid} in session ${s}` +
          (byPid.has(p.sid) ? "" : ` (the leader ${p.sid} is not in the tree)`),
      );
    } else if (plan.pgid.get(p.pid) !== p.pgid) {
      refusals.use(
        "task.group-leader-gone",
        `process ${p.pid}`,
        `it is in process group ${p.pgid}, which the restore cannot make again`,
      );
    }
  }
  for (const [host, list] of plan.placeholders) {
    for (const x of list) {
      if (atDump && rawSyscall(SYS.kill, x.pid, 0) !== -BigInt(ESRCH)) {
        refusals.use(
          x.session ? "task.session-other" : "task.group-leader-gone",
          `${x.session ? "session" : "process group"} ${x.pid}`,
          `its leader ${x.pid} is alive outside the tree`,
        );
        continue;
      }
      refusals.use(
        x.session ? "task.session-placeholder" : "task.group-placeholder",
        `${x.session ? "session" : "process group"} ${x.pid} (made again by process ${host})`,
      );
    }
  }
}

/** Plans by tree (the compile of each process asks). */
const plans = new WeakMap<ReadonlyMap<number, ProcessImage>, GroupPlan>();

/** The placeholders process `pid` of the tree forks. */
export function placeholdersOf(
  pid: number,
  images: ReadonlyMap<number, ProcessImage>,
): Placeholder[] {
  let plan = plans.get(images);
  if (!plan) plans.set(images, plan = planGroups([...images.values()]));
  return plan.placeholders.get(pid) ?? [];
}

/** Emits the forks of `placeholders` (their code: {@link emitPlaceholderBranches}). */
export function emitPlaceholders(p: ProgramBuilder, placeholders: readonly Placeholder[]): void {
  for (const x of placeholders) {
    p.op(SYS.clone3, [cloneWithTid(p, x.pid, { exitSignal: SIGCHLD }), cloneArgs.size], {
      jumpIfZeroTo: `placeholder-${x.pid}`,
      comment: `placeholder of ${x.session ? "session" : "process group"} ${x.pid}`,
    });
  }
}

/**
 * Emits the code of each placeholder: make the session (and clone its
 * members for its parent: they go on where the parent's own fork of them
 * would have, exec'ing their image or inheriting its memory) or the group,
 * then wait (every signal blocked) until the restore session kills it. A
 * session's placeholder is forked once the parent's memory is in (with its
 * children that inherit it), a group's first.
 */
export function emitPlaceholderBranches(
  p: ProgramBuilder,
  placeholders: readonly Placeholder[],
  /** The label a member goes on at (`child-<pid>`, `inherit-<pid>`). */
  labelOf: (member: number) => string,
): void {
  for (const x of placeholders) {
    p.label(`placeholder-${x.pid}`);
    if (x.session) p.op(SYS.setsid, [], { comment: `session ${x.pid}` });
    else p.op(SYS.setpgid, [0, 0], { comment: `process group ${x.pid}` });
    for (const m of x.members) {
      // CLONE_PTRACE: traced from birth (its exit signal is its maker's: no fork event).
      const args = cloneWithTid(p, m, { flags: CLONE.PARENT | CLONE.PTRACE, exitSignal: 0n });
      p.op(SYS.clone3, [args, cloneArgs.size], {
        jumpIfZeroTo: labelOf(m),
        comment: `child ${m} of its parent, in session ${x.pid}`,
      });
    }
    p.label(`placeholder-${x.pid}-wait`);
    p.op(SYS.pause, [], { allowFail: true, comment: "until the session kills it" });
    p.op(SYS.sched_yield, [], { jumpIfZeroTo: `placeholder-${x.pid}-wait` });
    p.end("a placeholder that was not killed");
  }
}

/** Every placeholder of a tree, with the process that forks it. */
export function placeholderPids(images: readonly ProcessImage[]): { pid: number; host: number }[] {
  return [...planGroups(images).placeholders].flatMap(([host, list]) =>
    list.map((x) => ({ pid: x.pid, host }))
  );
}

/**
 * Ends placeholder `pid` once every member joined its group: kills it,
 * collects the tracer's copy of its exit, then in its held parent `host`
 * reaps it and takes the SIGCHLD it sent (unless one was pending at the
 * dump, which it merged with), by injection.
 */
export function endPlaceholder(pid: number, host: ProcessImage): void {
  rawSyscall(SYS.kill, pid, SIGKILL);
  for (;;) {
    const st = waitPid(pid, __WALL);
    if (st.kind === "exited" || st.kind === "signaled") break;
  }
  const tid = host.pid;
  const site = findSyscallInstruction(tid);
  const scratch = injectSyscall(tid, site, SYS.mmap, 0, 4096, 3, 0x22, -1, 0);
  if (scratch < 0n) throw new RestoreError(`process ${tid}: mmap(scratch) failed`);
  try {
    // ECHILD when its SIGCHLD action made the kernel reap it (SIG_IGN, SA_NOCLDWAIT).
    injectSyscall(tid, site, SYS.waitid, P_PID, pid, scratch, WEXITED | WNOHANG | __WALL, 0);
    if (!host.sharedPending.some((s) => s.signo === Number(SIGCHLD))) {
      takeSigchld(tid, site, scratch);
    }
  } finally {
    injectSyscall(tid, site, SYS.munmap, scratch, 4096);
  }
}

/** Waits (polling, with a deadline) until placeholder `pid` has made its group. */
export function awaitPlaceholder(pid: number): void {
  const deadline = performance.now() + 5000;
  while (readStat(pid).pgrp !== pid) {
    if (performance.now() > deadline) {
      throw new RestoreError(`the placeholder of process group ${pid} did not make its group`);
    }
    sleepSync(1);
  }
}
