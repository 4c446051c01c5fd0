/**
 * inotify instances and pidfds whose open file description is shared by
 * several processes of the tree (inherited across fork). Each process's
 * fds are re-created by its own program, so such a description would come
 * back as one per process: an inotify instance split in two delivers every
 * event to both instead of once, and a pidfd's status flags stop being
 * shared. Found with kcmp(KCMP_FILE) while the tree is frozen, and refused
 * by name.
 *
 * @module
 */

import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import type { FdInfo, ProcessImage } from "../model.ts";
import { type Refusals, type SupportId, supportOf } from "../support.ts";

const KCMP_FILE = 0;

const ROWS: Partial<Record<FdInfo["kind"], SupportId>> = {
  inotify: "fd.inotify-shared",
  pidfd: "fd.pidfd-shared",
};

/** Dump: reports every inotify or pidfd description shared by two processes of the tree. */
export function refuseSharedAcrossTree(images: readonly ProcessImage[], refusals: Refusals): void {
  const held = images.flatMap((image) =>
    image.fds.filter((f) => ROWS[f.kind] && f.sameAs === undefined && !f.excluded)
      .map((f) => ({ pid: image.pid, f }))
  );
  const reported = new Set<string>();
  for (const [i, b] of held.entries()) {
    for (const a of held.slice(0, i)) {
      if (a.pid === b.pid || a.f.kind !== b.f.kind || reported.has(`${b.pid}:${b.f.fd}`)) continue;
      if (rawSyscall(SYS.kcmp, a.pid, b.pid, KCMP_FILE, a.f.fd, b.f.fd) !== 0n) continue;
      const id = ROWS[b.f.kind]!;
      reported.add(`${b.pid}:${b.f.fd}`);
      refusals.use(
        id,
        `process ${b.pid} fd ${b.f.fd} (${b.f.target})`,
        `shared with process ${a.pid} fd ${a.f.fd}; ${supportOf(id).note}`,
      );
    }
  }
}
