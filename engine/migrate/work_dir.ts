/**
 * The sender's work directory: `cryo-migrate-<pid>-<random>` in the
 * temporary directory, holding the rounds' images until the receiver has
 * them; removed when the migration ends, whatever its outcome. A sender
 * killed half-way (SIGKILL) leaves one behind, as large as the tree's
 * memory: the next migration removes those whose cryo process is gone and
 * that belong to the user cryo runs as.
 *
 * @module
 */

import { dirname } from "../path.ts";
import { removeStaleDirs } from "../stale_dirs.ts";

/** Matches a work directory's name; group 1 is its sender's pid. */
export const WORK_DIR_RE = /^cryo-migrate-(\d+)-/;

/**
 * Creates this sender's work directory (0700, as `Deno.makeTempDir` makes
 * it) and removes the ones left beside it by senders that no longer run;
 * returns its path.
 */
export async function makeWorkDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: `cryo-migrate-${Deno.pid}-` });
  removeStaleWorkDirs(dirname(dir));
  return dir;
}

/**
 * Removes from `parent` the work directories of senders whose process no
 * longer exists, owned by the user cryo runs as; returns the paths removed.
 */
export function removeStaleWorkDirs(parent: string): string[] {
  return removeStaleDirs(parent, (name) => {
    const m = name.match(WORK_DIR_RE);
    return m ? Number(m[1]) : undefined;
  });
}
