/**
 * A cwd deleted while in use (a shell left in a directory another process
 * removed): /proc/<pid>/cwd reads "<path> (deleted)". The process can
 * still stat it, and read it (empty), but create nothing in it. Restore
 * makes the directory again at its path (and its missing parents, mode
 * 0700) before the restore programs run, lets each process chdir into it,
 * and removes what it made before the tree runs: the restored process is
 * left in a deleted, empty directory, as it was. The directory is a new
 * inode; it gets back the mode, owner and access and modification times
 * recorded at dump (`ProcessImage.cwdAttrs`; an image without them leaves
 * it the restorer's, mode 0700), set just before it is removed, once every
 * process has entered it. The path must be free: a directory made
 * there since the dump is refused before anything is created (the process
 * would come back in a live directory).
 *
 * @module
 */

import { makeMissingDirs } from "../fds/ghost.ts";
import type { DirAttrs, ProcessImage } from "../model.ts";
import { setPathTimes } from "../../ffi/statx.ts";
import { RestoreError } from "../errors.ts";

const DELETED = " (deleted)";

/** True when the recorded cwd `cwd` was deleted at the dump. */
export function isDeletedCwd(cwd: string): boolean {
  return cwd.endsWith(DELETED);
}

/** The path a process with the recorded cwd `cwd` enters at restore. */
export function cwdPath(cwd: string): string {
  return isDeletedCwd(cwd) ? cwd.slice(0, -DELETED.length) : cwd;
}

/** The directories made for the deleted cwds of a restore, removed by {@link finish}. */
export class DeletedCwds {
  #made: string[];
  #attrs: Map<string, DirAttrs>;
  /**
   * Each deleted cwd made, by path: "<dev>:<ino>" of the directory at dump
   * (an fd of the same removed directory opens the one made: engine/fds/ghost.ts).
   */
  readonly made: ReadonlyMap<string, string>;

  private constructor(made: string[], attrs: Map<string, DirAttrs>, ids: Map<string, string>) {
    this.#made = made;
    this.#attrs = attrs;
    this.made = ids;
  }

  /**
   * Makes the deleted cwd of each process of `processes` (and its missing
   * parents); throws a RestoreError, making nothing, when one's path is
   * taken.
   */
  static create(processes: readonly ProcessImage[]): DeletedCwds {
    const paths = [...new Set(processes.filter((p) => isDeletedCwd(p.cwd)).map((p) => p.cwd))];
    for (const cwd of paths) {
      const path = cwdPath(cwd);
      let taken = true;
      try {
        Deno.lstatSync(path);
      } catch {
        taken = false;
      }
      if (taken) {
        const pid = processes.find((p) => p.cwd === cwd)!.pid;
        throw new RestoreError(
          `cannot restore: the cwd of process ${pid}, ${path}, was deleted before the dump and its path is taken now`,
        );
      }
    }
    const made: string[] = [];
    const attrs = new Map<string, DirAttrs>();
    const ids = new Map<string, string>();
    for (const cwd of paths) {
      made.push(...makeMissingDirs(cwdPath(cwd)));
      const recorded = processes.find((p) => p.cwd === cwd && p.cwdAttrs)?.cwdAttrs;
      if (recorded) attrs.set(cwdPath(cwd), recorded);
      const id = processes.find((p) => p.cwd === cwd && p.dirIds)?.dirIds?.cwd;
      if (id) ids.set(cwdPath(cwd), `${id.dev}:${id.ino}`);
    }
    return new DeletedCwds(made, attrs, ids);
  }

  /**
   * Gives each deleted cwd made its recorded mode, owner and times, then
   * removes the directories made, deepest first (once the processes are in
   * them; idempotent).
   */
  finish(): void {
    for (const [path, a] of this.#attrs) giveBack(path, a);
    this.#attrs.clear();
    for (const d of this.#made.reverse()) {
      try {
        Deno.removeSync(d); // only while empty
      } catch { /* something was put there meanwhile: left */ }
    }
    this.#made = [];
  }
}

/**
 * Sets the recorded owner, mode and times on the directory at `path`
 * (owner first: chown clears set-id bits). Best effort: a restorer without
 * the right to chown leaves its own.
 */
function giveBack(path: string, a: DirAttrs): void {
  try {
    Deno.chownSync(path, a.uid, a.gid);
  } catch { /* not permitted: the restorer's */ }
  try {
    Deno.chmodSync(path, a.mode);
  } catch { /* gone meanwhile */ }
  if (a.atime && a.mtime) setPathTimes(path, a.atime, a.mtime);
}
