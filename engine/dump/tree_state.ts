/**
 * Dump-time checks of state that processes of the tree share with each
 * other or that has no path any more: fd tables, fs info or memory shared
 * by processes (not threads), a deleted cwd or root, and file leases.
 * Each is refused by name through the restorability table.
 *
 * @module
 */

import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import type { ProcessImage } from "../model.ts";
import type { Refusals, SupportId } from "../support.ts";
import { locksOf } from "../fds/locks.ts";

const KCMP_VM = 1;
const KCMP_FILES = 2;
const KCMP_FS = 3;

const SHARED: [number, SupportId, string][] = [
  [KCMP_FILES, "task.shared-files", "share one fd table"],
  [KCMP_FS, "task.shared-fs", "share cwd, root and umask"],
  [KCMP_VM, "task.shared-vm", "share one address space"],
];

/** Refuses processes of the tree that share an fd table, fs info or memory (kcmp). */
export function checkSharedTables(pids: readonly number[], refusals: Refusals): void {
  for (let i = 0; i < pids.length; i++) {
    for (let j = 0; j < i; j++) {
      for (const [type, id, what] of SHARED) {
        if (rawSyscall(SYS.kcmp, pids[j], pids[i], type, 0, 0) === 0n) {
          refusals.use(id, `processes ${pids[j]} and ${pids[i]} ${what}`);
        }
      }
    }
  }
}

/** Refuses a deleted cwd or root, and fds holding leases. */
export function checkProcessPaths(image: ProcessImage, refusals: Refusals): void {
  for (const [what, path] of [["cwd", image.cwd], ["root", image.root]]) {
    if (path.endsWith(" (deleted)")) {
      refusals.use("task.cwd-deleted", `process ${image.pid} ${what} (${path})`);
    }
  }
  for (const f of image.fds) {
    if (f.excluded) continue;
    for (const l of locksOf(f)) {
      if (l.class === "other") {
        refusals.use("fd.lease", `process ${image.pid} fd ${f.fd} (${f.target})`, l.text);
      }
    }
  }
}
