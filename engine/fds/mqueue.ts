/**
 * POSIX message queue descriptors (mq_open). /proc shows them as regular
 * files named after the queue ("/name"), so the fd classifier would take
 * them for files; the statfs magic of the fd tells them apart. They are
 * refused by name (a queue's messages, attributes and notification are
 * not saved yet).
 *
 * @module
 */

import { fsMagic } from "../../ffi/mounts.ts";
import type { ProcessImage } from "../model.ts";
import type { Refusals } from "../support.ts";

const MQUEUE_MAGIC = 0x19800202;

/** Whether fd `fd` of process `pid` is a POSIX message queue (the statfs magic of its file). */
export function isMqueueFd(pid: number, fd: number): boolean {
  return fsMagic(`/proc/${pid}/fd/${fd}`) === MQUEUE_MAGIC;
}

/** Dump (tree frozen): refuses every fd of the tree that is a POSIX message queue. */
export function refuseMqueueFds(images: readonly ProcessImage[], refusals: Refusals): void {
  for (const p of images) {
    for (const f of p.fds) {
      if (f.excluded || (f.kind !== "file" && f.kind !== "unknown")) continue;
      if (isMqueueFd(p.pid, f.fd)) {
        refusals.use("fd.mqueue", `process ${p.pid} fd ${f.fd} (${f.target})`);
      }
    }
  }
}
