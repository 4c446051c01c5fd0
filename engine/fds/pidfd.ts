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
 * at restore time, so re-opening it by number would be silently wrong —
 * and one of a process that has exited (`Pid: -1`).
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import type { FdInfo, ProcessImage } from "../model.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import { type Refusals, type SupportId, supportOf } from "../support.ts";
import { type FdSource, O_NONBLOCK } from "./types.ts";

/** PIDFD_THREAD (O_EXCL): the pidfd names a thread. */
const PIDFD_THREAD = 0o200;

/** The pid a pidfd refers to (-1 once it has exited), or undefined if unreadable. */
export function pidfdTarget(f: FdInfo): number | undefined {
  const v = f.extra["Pid"]?.trim();
  return v !== undefined && /^-?\d+$/.test(v) ? Number(v) : undefined;
}

/** Restore plan of a pidfd (where its process stands in the tree is checked by {@link checkPidfds}). */
export function planPidfd(f: FdInfo): FdSource | string {
  const pid = pidfdTarget(f);
  if (pid === undefined) return "pidfd without a readable pid";
  if (pid <= 0) {
    const row = supportOf("fd.pidfd-dead");
    return `${row.what}: ${row.note}`;
  }
  return { kind: "pidfd", pid, flags: f.flags & (O_NONBLOCK | PIDFD_THREAD) };
}

/** Emits pidfd_open of `s` into `scratchSlot`. */
export function emitPidfd(
  p: ProgramBuilder,
  s: Extract<FdSource, { kind: "pidfd" }>,
  scratchSlot: number,
): void {
  p.op(SYS.pidfd_open, [s.pid, s.flags], {
    store: scratchSlot,
    comment: `pidfd of ${s.flags & PIDFD_THREAD ? "thread" : "process"} ${s.pid}`,
  });
}

/**
 * Checks, for the whole tree, that every pidfd names a process whose
 * creation comes before its holder's fds (itself, a child, an ancestor);
 * reports the others to `refusals`. Pidfds of exited processes are left
 * to {@link planPidfd}.
 */
export function checkPidfds(images: readonly ProcessImage[], refusals: Refusals): void {
  const byPid = new Map(images.map((i) => [i.pid, i]));
  const ownerOf = new Map<number, number>();
  for (const i of images) for (const t of i.threads) ownerOf.set(t.tid, i.pid);
  const isAncestor = (pid: number, of: ProcessImage): boolean => {
    for (let p = byPid.get(of.ppid); p; p = byPid.get(p.ppid)) if (p.pid === pid) return true;
    return false;
  };
  const refuse = (id: SupportId, where: string, detail: string) =>
    refusals.use(id, where, `${detail}; ${supportOf(id).note}`);
  for (const image of images) {
    for (const f of image.fds) {
      if (f.kind !== "pidfd" || f.excluded || f.sameAs !== undefined) continue;
      const pid = pidfdTarget(f);
      if (pid === undefined || pid <= 0) continue;
      const where = `process ${image.pid} fd ${f.fd} (${f.target})`;
      const owner = ownerOf.get(pid);
      if (owner === undefined) refuse("fd.pidfd-outside", where, `pid ${pid} is not in the tree`);
      else if (owner !== pid) {
        refuse("fd.pidfd-unordered", where, `thread ${pid} of process ${owner}`);
      } else if (pid !== image.pid && !image.children.includes(pid) && !isAncestor(pid, image)) {
        refuse("fd.pidfd-unordered", where, `process ${pid} is neither a child nor an ancestor`);
      } else refusals.use("fd.pidfd", where);
    }
  }
}
