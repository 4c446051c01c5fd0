/**
 * The partial directory of a dump in progress: `.<name>.cryo-partial-<pid>`
 * next to the image directory `<name>`, created private (0700) before
 * anything is written into it and renamed to `<name>` only when complete.
 * A dump killed half-way leaves one behind; the next dump into the same
 * directory removes those whose cryo process is gone, and restore refuses
 * to read one (engine/restore/trust.ts).
 *
 * @module
 */

import { basename, dirname } from "../path.ts";

/** Matches the name of a partial directory; group 1 is the image name, group 2 the pid. */
export const PARTIAL_RE = /^\.(.+)\.cryo-partial-(\d+)$/;

/**
 * Creates directory `path` with mode 0700 whatever the umask. Synchronous,
 * as the rest of a dump's directory set-up: each first async file op of a
 * fresh Deno costs more than the syscall (a thread hand-off).
 */
export function makePrivateDir(path: string): void {
  Deno.mkdirSync(path, { mode: 0o700 });
  Deno.chmodSync(path, 0o700);
}

/**
 * Removes the partial directories left for image directory `abs` by dumps
 * whose cryo process no longer exists; returns the paths removed.
 */
export function removeStalePartials(abs: string): string[] {
  const parent = dirname(abs);
  const removed: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(parent)];
  } catch {
    return removed;
  }
  for (const e of entries) {
    const m = e.name.match(PARTIAL_RE);
    if (!m || m[1] !== basename(abs) || !e.isDirectory) continue;
    const pid = Number(m[2]);
    if (pid === Deno.pid) continue;
    try {
      Deno.statSync(`/proc/${pid}`);
      continue; // that dump may still be running
    } catch { /* gone */ }
    try {
      Deno.removeSync(`${parent}/${e.name}`, { recursive: true });
    } catch { /* removed meanwhile, or not ours to remove */ }
    removed.push(`${parent}/${e.name}`);
  }
  return removed;
}
