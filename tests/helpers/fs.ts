/**
 * Test helpers for the file system: temporary directories that are
 * removed after the test, and an existence check.
 *
 * @module
 */

/** Directories made by {@link tempDir} and not yet removed. */
const made = new Set<string>();

/**
 * A fresh temporary directory named `<prefix>...`, removed by
 * {@link removeTempDirs} (which `withTargets` calls after every test,
 * once the test's processes are gone).
 */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix });
  made.add(dir);
  return dir;
}

/** Removes every directory made by {@link tempDir} so far, with its contents. */
export async function removeTempDirs(): Promise<void> {
  for (const dir of made) await Deno.remove(dir, { recursive: true }).catch(() => {});
  made.clear();
}

/** Runs `fn` with a fresh temporary directory named `<prefix>...`, removed afterwards. */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Whether `path` exists (a dangling symlink does not). */
export function pathExists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
