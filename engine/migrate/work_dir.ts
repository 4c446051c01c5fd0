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
  const removed: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(parent)];
  } catch {
    return removed;
  }
  const uid = Deno.uid();
  for (const e of entries) {
    const m = e.name.match(WORK_DIR_RE);
    if (!m || !e.isDirectory) continue;
    const pid = Number(m[1]);
    if (pid === Deno.pid) continue;
    const path = `${parent}/${e.name}`;
    try {
      Deno.statSync(`/proc/${pid}`);
      continue; // that sender may still be running
    } catch { /* gone */ }
    try {
      if (Deno.lstatSync(path).uid !== uid) continue; // not ours
      Deno.removeSync(path, { recursive: true });
      removed.push(path);
    } catch { /* removed meanwhile */ }
  }
  return removed;
}
