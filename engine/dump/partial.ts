/**
 * The partial directory of a dump in progress: `.<name>.cryo-partial-<pid>`
 * next to the image directory `<name>`, created private (0700) before
 * anything is written into it and renamed to `<name>` only when complete.
 * A dump killed half-way leaves one behind; the next dump into the same
 * directory removes those whose cryo process is gone and that are the
 * user's own (engine/stale_dirs.ts), and restore refuses to read one
 * (engine/restore/trust.ts).
 *
 * @module
 */

import { basename, dirname } from "../path.ts";
import { removeStaleDirs } from "../stale_dirs.ts";

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
 * whose cryo process no longer exists (the user's own); returns the paths
 * removed.
 */
export function removeStalePartials(abs: string): string[] {
  const name = basename(abs);
  return removeStaleDirs(dirname(abs), (entry) => {
    const m = entry.match(PARTIAL_RE);
    return m && m[1] === name ? Number(m[2]) : undefined;
  });
}
