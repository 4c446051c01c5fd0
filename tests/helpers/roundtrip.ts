/**
 * Test helpers for checkpoint/restore round trips through the library API.
 *
 * @module
 */

import { checkpoint, type CheckpointResult } from "../../engine/dump/mod.ts";
import { restore, type RestoredTree, type RestoreOptions } from "../../engine/restore/mod.ts";
import { adoptPid, type Target } from "./targets.ts";

/** A fresh temporary path for an image directory (not created). */
export async function tempImageDir(): Promise<string> {
  const parent = await Deno.makeTempDir({ prefix: "cryo-test-" });
  return `${parent}/image`;
}

/** Removes an image directory made by {@link tempImageDir}. */
export async function removeImageDir(dir: string): Promise<void> {
  await Deno.remove(dir.replace(/\/image$/, ""), { recursive: true }).catch(() => {});
}

/**
 * Dumps `t` (killing it), waits until it is gone, restores it from the
 * image, and points `t` at the restored process (same pid).
 */
export async function dumpKillRestore(
  t: Target,
  opts: RestoreOptions = {},
): Promise<{ dir: string; dump: CheckpointResult; tree: RestoredTree }> {
  const dir = await tempImageDir();
  const dump = await checkpoint(t.pid, { dir });
  await t.wait();
  const tree = await restore(dir, opts);
  t.resetAfterRestore();
  for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
  return { dir, dump, tree };
}
