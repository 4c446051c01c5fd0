/**
 * Test helpers for process-tree targets dumped and restored with the CLI
 * (`cryo dump`, `cryo restore --detach`): the restored root comes back to
 * the test process, a child subreaper.
 *
 * @module
 */

import assert from "node:assert/strict";
import { waitPid, WNOHANG } from "../../ffi/wait.ts";
import { assertCliOk, assertOneLineError, runCli } from "./commands.ts";
import { pathExists } from "./fs.ts";
import { statusField } from "./proc.ts";
import { tempImageDir, type TriggeredTarget } from "./roundtrip.ts";
import { adoptPid } from "./targets.ts";
import { waitUntil } from "./wait.ts";

/** Waits until `pid` is gone, reaping it if it came back to this process (a subreaper). */
export async function awaitGone(pid: number): Promise<void> {
  await waitUntil(`process ${pid} gone`, () => {
    try {
      waitPid(pid, WNOHANG);
    } catch { /* not our child (yet) */ }
    return !pathExists(`/proc/${pid}`);
  });
}

/**
 * Dumps the tree of `a` (its root, and `others`, already adopted) with the
 * CLI, killing it. Where `expect` is "restored": waits until every process
 * is gone, restores with `--detach` and points the targets at the restored
 * processes. Otherwise asserts that the dump failed with one line matching
 * `expect`, left no image, and left no process of the tree traced by
 * anything outside it. Returns the image directory.
 */
export async function cliDumpRestoreOrRefused(
  a: TriggeredTarget,
  others: readonly number[],
  mode: string,
  expect: "restored" | RegExp,
): Promise<string> {
  const dir = await tempImageDir();
  const dump = await runCli(["dump", String(a.t.pid), "--dir", dir]);
  if (expect === "restored") {
    assertCliOk(dump, `dump of ${mode}`);
    await a.t.wait();
    for (const pid of others) await awaitGone(pid);
    const r = await runCli(["restore", dir, "--detach"]);
    assertCliOk(r, `restore of ${mode}`);
    a.t.resetAfterRestore();
    for (const pid of others) adoptPid(pid);
    return dir;
  }
  assertOneLineError(dump, 1, expect, `dump of ${mode}`);
  assert.equal(pathExists(dir), false, "the refused dump left an image");
  // Untraced, or traced by the tree itself as before (a tracer in the tree).
  const tree = [a.t.pid, ...others];
  for (const pid of tree) {
    const tracer = Number(statusField(pid, "TracerPid"));
    assert.ok(tracer === 0 || tree.includes(tracer), `process ${pid} left traced by ${tracer}`);
  }
  return dir;
}
