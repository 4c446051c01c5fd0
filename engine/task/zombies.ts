/**
 * Zombie children: processes of the tree that exited and that their parent
 * has not reaped yet.
 *
 * Dump: a zombie cannot be traced; it is found among its parent's children
 * (`splitZombies`) and recorded in the parent's image (`collectZombies`):
 * pid, process group, session and the raw wait status from
 * /proc/<pid>/stat field 52 (exit_code), read without reaping it.
 *
 * Restore: the parent's program forks each zombie again (clone3 with
 * `set_tid`, its exit signal) once the parent's group, session and signal
 * actions are back; the child takes its group or session and its uids,
 * gids and groups (not its capabilities: those of its new ids), then exits
 * with the recorded status (exit_group, or kill by the recorded signal with its
 * default action and no core dump). The parent waits (waitid WNOWAIT, so
 * nothing is reaped) until the zombie is there for it — the restore
 * session, which traces every task, only collects the tracer's copy of the
 * exit — and takes the exit signal this caused, which the image did not
 * have pending. Only the parent then reaps it, when its own code does.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { CLONE, cloneArgs, kernelSigaction } from "../../ffi/structs.ts";
import type { ProcessImage, ZombieChild } from "../model.ts";
import type { Refusals } from "../support.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import { listTids } from "../proc/tasks.ts";
import { readStat } from "../proc/stat.ts";
import { readStatus } from "../proc/status.ts";
import { cloneWithTid } from "../program/clone.ts";
import { __WALL, P_PID, waitPid, WEXITED, WNOHANG, WNOWAIT } from "../../ffi/wait.ts";

const SIGKILL = 9;
const SIGCHLD = 17;
const SIG_UNBLOCK = 1;
const PR_SET_DUMPABLE = 4;
const SA_NOCLDWAIT = 2n;

/** Whether `pid` is a zombie process (exited, not reaped; no thread of it left running). */
export function isZombie(pid: number): boolean {
  try {
    const state = readStat(pid).state;
    return (state === "Z" || state === "X") && listTids(pid).length <= 1;
  } catch {
    return false;
  }
}

/** Splits a process's children into live ones and zombies. */
export function splitZombies(children: number[]): { live: number[]; zombies: number[] } {
  const zombies = children.filter(isZombie);
  return { live: children.filter((c) => !zombies.includes(c)), zombies };
}

/**
 * Describes the zombie children `pids` of `parent`; reports each to
 * `refusals` (a zombie that cannot come back as it was is refused by name).
 * `joinsGroupLater`: the parent's group is led by another process of the
 * tree, which the parent joins only when the restore finalizes.
 */
export function collectZombies(
  parent: Omit<ProcessImage, "bootstrap">,
  pids: readonly number[],
  refusals: Refusals,
  joinsGroupLater = false,
): ZombieChild[] {
  const out: ZombieChild[] = [];
  for (const pid of pids) {
    let stat;
    try {
      stat = readStat(pid);
    } catch {
      continue; // reaped meanwhile by its (frozen) parent: impossible, or gone with it
    }
    const status = readStatus(pid);
    const z: ZombieChild = {
      pid,
      pgid: stat.pgrp,
      sid: stat.session,
      comm: stat.comm,
      waitStatus: stat.exitCode,
      exitSignal: stat.exitSignal,
      creds: { uid: [...status.uid], gid: [...status.gid], groups: [...status.groups] },
    };
    const where = `process ${parent.pid} zombie child ${pid} (${z.comm})`;
    const problem = joinsGroupLater && z.pgid === parent.pgid
      ? `it is in process group ${z.pgid}, which its parent joins only after it exits`
      : zombieProblem(parent, z);
    if (problem) refusals.use("task.zombie-unusual", where, problem);
    else refusals.use("task.zombie", where);
    out.push(z);
  }
  return out;
}

/** Why zombie `z` of `parent` cannot be re-created exactly, if it cannot. */
function zombieProblem(parent: Omit<ProcessImage, "bootstrap">, z: ZombieChild): string | null {
  if ((z.waitStatus & 0x80) !== 0) {
    return "its exit dumped core; the core flag cannot be re-created without writing a core file";
  }
  const ownGroup = z.pgid === z.pid && (z.sid === parent.sid || z.sid === z.pid);
  if (!ownGroup && (z.pgid !== parent.pgid || z.sid !== parent.sid)) {
    return `it is in process group ${z.pgid} of session ${z.sid}, which it cannot rejoin`;
  }
  const chld = parent.sigactions[SIGCHLD - 1];
  if (BigInt(chld.handler) === 1n || (BigInt(chld.flags) & SA_NOCLDWAIT) !== 0n) {
    return "its parent now ignores SIGCHLD, which would reap it at once";
  }
  return null;
}

const label = (z: ZombieChild) => `zombie-${z.pid}`;

/**
 * Emits, in the parent's program, the forks of its zombies and the wait
 * until each is there to be reaped (not reaping it); the children's code is
 * emitted by {@link emitZombieBranches}.
 */
export function emitZombies(p: ProgramBuilder, proc: ProcessImage): void {
  const zombies = proc.zombies ?? [];
  if (zombies.length === 0) return;
  for (const z of zombies) {
    // CLONE_PTRACE: traced even when its exit signal is not SIGCHLD (no PTRACE_O_TRACECLONE).
    const args = cloneWithTid(p, z.pid, { flags: CLONE.PTRACE, exitSignal: BigInt(z.exitSignal) });
    p.op(SYS.clone3, [args, cloneArgs.size], {
      jumpIfZeroTo: label(z),
      comment: `zombie child ${z.pid}`,
    });
  }
  const info = p.reserve(128);
  const noWait = p.data(new Uint8Array(16)); // a zero timeout
  for (const z of zombies) {
    p.op(SYS.waitid, [P_PID, z.pid, info, WEXITED | WNOWAIT | __WALL, 0], {
      comment: `zombie ${z.pid} exited (not reaped)`,
    });
    if (z.exitSignal === 0) continue;
    const set = p.u64s([1n << BigInt(z.exitSignal - 1)]);
    p.op(SYS.rt_sigtimedwait, [set, 0, noWait, 8], {
      allowFail: true,
      comment: `take the signal ${z.exitSignal} its exit sent now`,
    });
  }
}

/** Emits the code each zombie child runs: take its group, then exit as recorded. */
export function emitZombieBranches(p: ProgramBuilder, proc: ProcessImage): void {
  for (const z of proc.zombies ?? []) {
    p.label(label(z));
    if (z.sid === z.pid) p.op(SYS.setsid, [], { comment: "session leader" });
    else if (z.pgid === z.pid) p.op(SYS.setpgid, [0, 0], { comment: "group leader" });
    if (z.creds) emitZombieCreds(p, z.creds);
    const sig = z.waitStatus & 0x7f;
    if (sig === 0) {
      p.op(SYS.exit_group, [(z.waitStatus >> 8) & 0xff], { comment: `zombie ${z.pid} exits` });
    } else {
      p.op(SYS.prctl, [PR_SET_DUMPABLE, 0, 0, 0, 0], { comment: "no core dump" });
      if (sig !== SIGKILL) {
        const dfl = kernelSigaction.encode({ handler: 0n, flags: 0n, restorer: 0n, mask: 0n });
        p.op(SYS.rt_sigaction, [sig, p.data(dfl), 0, 8], { comment: "default action" });
        p.op(SYS.rt_sigprocmask, [SIG_UNBLOCK, p.u64s([1n << BigInt(sig - 1)]), 0, 8]);
      }
      p.op(SYS.kill, [z.pid, sig], { comment: `zombie ${z.pid} is killed by signal ${sig}` });
    }
    p.end("a zombie child that did not die");
  }
}

/**
 * The zombie's ids, set while it is still root (the restore runs as root):
 * groups and gids first, then uids; fs ids last (setres* reset them).
 */
function emitZombieCreds(p: ProgramBuilder, c: NonNullable<ZombieChild["creds"]>): void {
  const groups = p.data(new Uint8Array(new Uint32Array(c.groups).buffer), 8);
  p.op(SYS.setgroups, [c.groups.length, groups], { comment: "its groups" });
  p.op(SYS.setresgid, [c.gid[0], c.gid[1], c.gid[2]]);
  p.op(SYS.setresuid, [c.uid[0], c.uid[1], c.uid[2]]);
  p.op(SYS.setfsgid, [c.gid[3]], { allowFail: true });
  p.op(SYS.setfsuid, [c.uid[3]], { allowFail: true });
}

/** Every zombie pid of a tree (the restore must find them free and expect their exits). */
export function zombiePids(images: readonly ProcessImage[]): number[] {
  return images.flatMap((i) => (i.zombies ?? []).map((z) => z.pid));
}

/**
 * After a dump killed their parent: reaps the dumped zombies that were
 * re-parented to cryo (a subreaper), so their pids are free for a restore.
 */
export function reapOrphanedZombies(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      waitPid(pid, __WALL | WNOHANG);
    } catch { /* not cryo's child: its new parent reaps it */ }
  }
}
