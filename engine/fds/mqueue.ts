/**
 * POSIX message queue descriptors (mq_open). /proc shows them as regular
 * files named after the queue ("/name"), so the fd classifier takes them
 * for files; the statfs magic of the fd tells them apart.
 *
 * A named queue lives in the IPC namespace, not in the process: the killed
 * tree leaves it behind with its messages and attributes, and the restore
 * opens it again by name (`mq_open` in the process's restore program, with
 * the descriptor's access mode; its status flags such as O_NONBLOCK are set
 * as for every fd). Like a file's content, its messages are then the
 * host's: whatever was sent or received meanwhile. The restore requires the
 * same queue (device and inode), else refuses naming it. Refused by name: a
 * queue unlinked while open (its messages and attributes are not saved), and
 * a notification (mq_notify) registered by a process of the tree (the
 * registration ends with the process, and its sigevent value is shown
 * nowhere).
 *
 * @module
 */

import { fsMagic } from "../../ffi/mounts.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { RestoreError } from "../errors.ts";
import type { FdInfo, ProcessImage } from "../model.ts";
import type { Refusals } from "../support.ts";
import { type FdSource, O_CLOEXEC, O_NONBLOCK } from "./types.ts";

const MQUEUE_MAGIC = 0x19800202;
const O_ACCMODE = 3;
const DELETED = " (deleted)";

/** Whether fd `fd` of process `pid` is a POSIX message queue (the statfs magic of its file). */
export function isMqueueFd(pid: number, fd: number): boolean {
  return fsMagic(`/proc/${pid}/fd/${fd}`) === MQUEUE_MAGIC;
}

/** The pid registered for the queue's notification (its "NOTIFY_PID:" field), 0 for none. */
function notifyPid(pid: number, fd: number): number {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/fd/${fd}`);
    return Number(text.match(/NOTIFY_PID:(\d+)/)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/**
 * Dump (tree frozen): finds the POSIX message queue fds of the tree; a named
 * queue's fd becomes kind "mqueue" (name and inode recorded), the rest are
 * refused by name.
 */
export function collectMqueueFds(images: readonly ProcessImage[], refusals: Refusals): void {
  const pids = new Set(images.map((p) => p.pid));
  for (const p of images) {
    for (const f of p.fds) {
      if (f.excluded || (f.kind !== "file" && f.kind !== "unknown")) continue;
      if (!isMqueueFd(p.pid, f.fd)) continue;
      const where = `process ${p.pid} fd ${f.fd} (${f.target})`;
      if (f.target.endsWith(DELETED)) {
        refusals.use("fd.mqueue-unlinked", where);
        continue;
      }
      const notify = notifyPid(p.pid, f.fd);
      if (pids.has(notify)) {
        refusals.use("fd.mqueue-notify", where, `process ${notify} is registered for it`);
        continue;
      }
      const st = Deno.statSync(`/proc/${p.pid}/fd/${f.fd}`);
      f.kind = "mqueue";
      f.mqueue = { name: f.target, dev: st.dev, ino: st.ino ?? 0 };
      refusals.use("fd.mqueue", where);
    }
  }
}

/** Restore plan: a named queue opened again by name with the fd's access mode and O_NONBLOCK. */
export function planMqueue(f: FdInfo): FdSource | string {
  if (!f.mqueue) return "a POSIX message queue without its name in the image";
  return { kind: "mqueue", name: f.mqueue.name, flags: f.flags & (O_ACCMODE | O_NONBLOCK) };
}

/** The name mq_open takes: without the leading slash (as the C library passes it). */
export function mqSyscallName(name: string): string {
  return name.replace(/^\//, "");
}

/**
 * A queue descriptor only a queued message holds (engine/fds/unix_scm.ts),
 * cryo's copy `fd` (its /proc link `target`): its name and inode, to be
 * opened again by name like a tree fd's; or why not (unlinked, or a
 * notification a process of `pids` registered).
 */
export function mqueueInFlight(
  fd: number,
  target: string,
  pids: ReadonlySet<number>,
): FdInfo["mqueue"] | string {
  const what = `a POSIX message queue (${target}) no process of the tree holds`;
  if (target.endsWith(DELETED)) return `${what}, unlinked while open, cannot be saved in flight`;
  const notify = notifyPid(Deno.pid, fd);
  if (pids.has(notify)) {
    return `${what} cannot be saved in flight: process ${notify} is registered for its notification`;
  }
  const st = Deno.statSync(`/proc/${Deno.pid}/fd/${fd}`);
  return { name: target, dev: st.dev, ino: st.ino ?? 0 };
}

/**
 * Restore pre-flight: each named queue of the image (held by a process, or
 * in flight in a queued message) is there and is the same queue (device and
 * inode); else a RestoreError naming the fd.
 */
export function checkMqueues(processes: readonly ProcessImage[]): void {
  for (const p of processes) {
    const carried = p.fds.flatMap((f) =>
      (f.socket?.unix?.queue ?? []).flatMap((m) => m.fds ?? []).flatMap((c) => c.file ?? [])
    );
    for (const f of [...p.fds, ...carried]) {
      if (f.kind !== "mqueue" || !f.mqueue || f.excluded) continue;
      const what = f.fd < 0
        ? `a message queued on a socket of process ${p.pid}: POSIX message queue ${f.mqueue.name}`
        : `fd ${f.fd} of process ${p.pid}: POSIX message queue ${f.mqueue.name}`;
      const name = new TextEncoder().encode(`${mqSyscallName(f.mqueue.name)}\0`);
      const fd = Number(rawSyscall(SYS.mq_open, name, O_CLOEXEC, 0, 0));
      if (fd < 0) throw new RestoreError(`cannot restore: ${what} is gone (errno ${-fd})`);
      let st;
      try {
        st = Deno.statSync(`/proc/self/fd/${fd}`);
      } finally {
        rawSyscall(SYS.close, fd);
      }
      if (st.dev !== f.mqueue.dev || (st.ino ?? 0) !== f.mqueue.ino) {
        throw new RestoreError(
          `cannot restore: ${what} was replaced by another queue since the dump`,
        );
      }
    }
  }
}
