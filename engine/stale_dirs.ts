/**
 * Directories a killed cryo leaves behind (a dump's partial directory, a
 * migration sender's work directory), each named by the pid of the cryo
 * that made it: removed by a later cryo once that pid is gone, if the
 * directory is the user's own.
 *
 * @module
 */

/**
 * Removes the directories in `parent` for which `pidOf` gives a pid (other
 * than cryo's own) that no longer exists, owned by the user cryo runs as;
 * returns the paths removed.
 */
export function removeStaleDirs(
  parent: string,
  pidOf: (name: string) => number | undefined,
): string[] {
  const removed: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(parent)];
  } catch {
    return removed;
  }
  const uid = Deno.uid();
  for (const e of entries) {
    const pid = e.isDirectory ? pidOf(e.name) : undefined;
    if (pid === undefined || pid === Deno.pid) continue;
    const path = `${parent}/${e.name}`;
    try {
      Deno.statSync(`/proc/${pid}`);
      continue; // that cryo may still be running
    } catch { /* gone */ }
    try {
      if (Deno.lstatSync(path).uid !== uid) continue; // not ours
      Deno.removeSync(path, { recursive: true });
      removed.push(path);
    } catch { /* removed meanwhile */ }
  }
  return removed;
}
