/**
 * pidfds (`anon_inode:[pidfd]`, fdinfo `Pid: N`): re-opened with
 * pidfd_open(N) in the holder's restore program, with the same flags
 * (PIDFD_NONBLOCK, PIDFD_THREAD).
 *
 * pidfd_open needs the process to exist when the holder's fds are made.
 * That is certain for the holder itself, for its children (forked at the
 * very start of its program) and for its ancestors (which forked it); the
 * creation of any other process of the tree (a sibling, a grandchild, a
 * thread other than a leader: threads are made after the fds) is not
 * ordered before it, so those are refused by name. So is a pidfd of a
 * process outside the tree — the pid may name another process, or none,
 * at restore time, so re-opening it by number would be silently wrong.
 *
 * A pidfd of a process that has exited and was reaped (`Pid: -1`) names no
 * pid any more, only the exit status the kernel keeps for PIDFD_GET_INFO.
 * It comes back from a child that the holder clones with CLONE_PIDFD and
 * CLONE_UNTRACED (the restore session, which traces every fork, never sees
 * it) and exit_signal 0 (no SIGCHLD), that ends at once the same way
 * (exit_group with the code, or its signal with default action, unblocked,
 * and no core dump), and that the holder reaps at once (wait4 __WALL).
 * One that dumped core, of a thread (PIDFD_THREAD), or with no exit status
 * to read is refused. Two descriptions of one reaped process (pidfd_open
 * twice: the same pidfs inode) held by one process come back as one such
 * child's pidfd, each description reopened from it through /proc/self/fd
 * (which gives a new description of the same inode); held by two processes
 * of the tree they are refused by name, since each process's program would
 * make a process of its own.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { pidfdExit, withTargetFd } from "../../ffi/pidfd.ts";
import type { FdInfo, ProcessImage } from "../model.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";
import { type Refusals, type SupportId, supportOf } from "../support.ts";
import { type FdSource, O_NONBLOCK } from "./types.ts";
import { zombiePids } from "../task/zombies.ts";

/** PIDFD_THREAD (O_EXCL): the pidfd names a thread. */
const PIDFD_THREAD = 0o200;

/** The pid a pidfd refers to (-1 once it has exited), or undefined if unreadable. */
export function pidfdTarget(f: FdInfo): number | undefined {
  const v = f.extra["Pid"]?.trim();
  return v !== undefined && /^-?\d+$/.test(v) ? Number(v) : undefined;
}

/**
 * Dump: the fdinfo extras of pidfd `fd` of process `pid` naming a reaped
 * process: its exit status (`pidfd-exit`) and core-dump bits
 * (`pidfd-coredump`), when the kernel gives them.
 */
export function collectDeadPidfd(pid: number, fd: number): Record<string, string> {
  const exit = withTargetFd(pid, fd, pidfdExit);
  if (!exit) return {};
  return { "pidfd-exit": String(exit.exitCode), "pidfd-coredump": String(exit.coredumpMask) };
}

/** The dump's pidfs inode of a pidfd of a reaped process, or undefined. */
function deadInode(f: FdInfo): number | undefined {
  const ino = f.extra["pidfd-ino"];
  return f.kind === "pidfd" && pidfdTarget(f) === -1 && ino !== undefined && /^\d+$/.test(ino)
    ? Number(ino)
    : undefined;
}

/**
 * Restore plan of a pidfd (where its process stands in the tree is checked
 * by {@link checkPidfds}); `fds` are the holder's fds, to find other
 * descriptions of the same reaped process.
 */
export function planPidfd(f: FdInfo, fds: readonly FdInfo[] = [f]): FdSource | string {
  const pid = pidfdTarget(f);
  if (pid === undefined) return "pidfd without a readable pid";
  if (pid <= 0) {
    const why = deadRefusal(f);
    if (why) {
      const row = supportOf("fd.pidfd-dead-other");
      return `${row.what} (${why}): ${row.note}`;
    }
    const ino = deadInode(f);
    const others = ino === undefined
      ? []
      : fds.filter((o) =>
        o !== f && o.fd !== f.fd && o.sameAs === undefined && !o.excluded && deadInode(o) === ino
      );
    return {
      kind: "pidfd",
      pid: -1,
      flags: f.flags & O_NONBLOCK,
      exit: Number(f.extra["pidfd-exit"]),
      ...(others.length > 0 ? { sameAs: ino } : {}),
    };
  }
  return { kind: "pidfd", pid, flags: f.flags & (O_NONBLOCK | PIDFD_THREAD) };
}

/** Why the pidfd `f` of a reaped process cannot come back, or null. */
function deadRefusal(f: FdInfo): string | null {
  const exit = f.extra["pidfd-exit"];
  if (exit === undefined || !/^-?\d+$/.test(exit)) return "no exit status recorded";
  if (f.flags & PIDFD_THREAD) return "a thread's pidfd";
  const code = Number(exit);
  if (code & 0x80 || Number(f.extra["pidfd-coredump"] ?? 0) !== 0) return "it dumped core";
  if (code & 0x7f && !TERMINATING.has(code & 0x7f)) return `signal ${code & 0x7f}`;
  if (code & ~0xff7f) return `exit status 0x${code.toString(16)}`;
  return null;
}

/** Signals whose default action ends a process (with or without a core). */
const TERMINATING = new Set([
  1,
  2,
  3,
  4,
  5,
  6,
  7,
  8,
  9,
  10,
  11,
  12,
  13,
  14,
  15,
  16,
  24,
  25,
  26,
  27,
  29,
  30,
  31,
  ...Array.from({ length: 31 }, (_, i) => 34 + i),
]);

const CLONE_PIDFD = 0x1000n;
const CLONE_UNTRACED = 0x00800000n;
const CLONE_ARGS_SIZE = 88;
const WALL = 0x40000000;
const SIG_UNBLOCK = 1;
const PR_SET_DUMPABLE = 4;

/**
 * Emits the creation of pidfd `s` into `scratchSlot` (at `scratchAddr`):
 * pidfd_open of a live process, or a child that ends at once for a reaped
 * one (see the module comment).
 */
export function emitPidfd(
  p: ProgramBuilder,
  s: Extract<FdSource, { kind: "pidfd" }>,
  scratchSlot: number,
  scratchAddr: bigint,
): void {
  if (s.exit === undefined) {
    p.op(SYS.pidfd_open, [s.pid, s.flags], {
      store: scratchSlot,
      comment: `pidfd of ${s.flags & PIDFD_THREAD ? "thread" : "process"} ${s.pid}`,
    });
    return;
  }
  const pidfd = p.reserve(8);
  const args = new Uint8Array(CLONE_ARGS_SIZE);
  const dv = new DataView(args.buffer);
  dv.setBigUint64(0, CLONE_PIDFD | CLONE_UNTRACED, true);
  dv.setBigUint64(8, pidfd, true); // exit_signal (32) stays 0: no SIGCHLD
  const child = `pidfd-dead-child-${p.opCount}`;
  const after = `pidfd-dead-reaped-${p.opCount}`;
  p.op(SYS.clone3, [p.data(args), CLONE_ARGS_SIZE], {
    store: scratchSlot,
    jumpIfZeroTo: child,
    comment: `a child that exits at once (status 0x${s.exit.toString(16)}), for its pidfd`,
  });
  p.op(SYS.wait4, [slot(scratchSlot), 0, WALL, 0], { comment: "reap it" });
  p.copy(scratchAddr, pidfd, 8);
  p.op(SYS.sched_yield, [], { jumpIfZeroTo: after, comment: "the pidfd is in the scratch slot" });
  p.label(child);
  const sig = s.exit & 0x7f;
  if (sig) {
    // Its signal with the default action, unblocked, without a core dump.
    p.op(SYS.rt_sigaction, [sig, p.reserve(32), 0, 8], { allowFail: true });
    p.op(SYS.rt_sigprocmask, [SIG_UNBLOCK, p.u64s([-1n]), 0, 8], { allowFail: true });
    p.op(SYS.prctl, [PR_SET_DUMPABLE, 0], { allowFail: true });
    p.op(SYS.getpid, [], { store: scratchSlot, allowFail: true });
    p.op(SYS.kill, [slot(scratchSlot), sig], { allowFail: true });
  }
  p.op(SYS.exit_group, [sig ? 127 : (s.exit >> 8) & 0xff], { comment: "the child ends" });
  p.label(after);
}

/**
 * Checks, for the whole tree, that every pidfd names a process whose
 * creation comes before its holder's fds (itself, a child, an ancestor);
 * reports the others to `refusals`. Whether a pidfd of an exited process
 * can come back is left to {@link planPidfd}.
 */
export function checkPidfds(images: readonly ProcessImage[], refusals: Refusals): void {
  const byPid = new Map(images.map((i) => [i.pid, i]));
  const ownerOf = new Map<number, number>();
  for (const i of images) for (const t of i.threads) ownerOf.set(t.tid, i.pid);
  const zombies = new Set(zombiePids(images));
  const isAncestor = (pid: number, of: ProcessImage): boolean => {
    for (let p = byPid.get(of.ppid); p; p = byPid.get(p.ppid)) if (p.pid === pid) return true;
    return false;
  };
  const refuse = (id: SupportId, where: string, detail: string) =>
    refusals.use(id, where, `${detail}; ${supportOf(id).note}`);
  const deadHolder = new Map<number, { pid: number; fd: number }>();
  for (const image of images) {
    for (const f of image.fds) {
      if (f.kind !== "pidfd" || f.excluded || f.sameAs !== undefined) continue;
      const pid = pidfdTarget(f);
      if (pid === undefined) continue;
      const where = `process ${image.pid} fd ${f.fd} (${f.target})`;
      if (pid <= 0) {
        const ino = deadInode(f);
        const first = ino === undefined ? undefined : deadHolder.get(ino);
        if (ino !== undefined && !first) deadHolder.set(ino, { pid: image.pid, fd: f.fd });
        if (first && first.pid !== image.pid) {
          refuse(
            "fd.pidfd-dead-shared",
            where,
            `process ${first.pid} fd ${first.fd} names the same reaped process`,
          );
        } else refusals.use("fd.pidfd-dead", where);
        continue;
      }
      const owner = ownerOf.get(pid);
      if (zombies.has(pid)) refuse("fd.pidfd-zombie", where, `process ${pid} is a zombie`);
      else if (owner === undefined) {
        refuse("fd.pidfd-outside", where, `pid ${pid} is not in the tree`);
      } else if (owner !== pid) {
        refuse("fd.pidfd-unordered", where, `thread ${pid} of process ${owner}`);
      } else if (pid !== image.pid && !image.children.includes(pid) && !isAncestor(pid, image)) {
        refuse("fd.pidfd-unordered", where, `process ${pid} is neither a child nor an ancestor`);
      } else refusals.use("fd.pidfd", where);
    }
  }
}
