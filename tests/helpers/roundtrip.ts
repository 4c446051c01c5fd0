/**
 * Test helpers for checkpoint/restore round trips through the library API.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  checkpoint,
  type CheckpointOptions,
  type CheckpointResult,
} from "../../engine/dump/mod.ts";
import { restore, type RestoredTree, type RestoreOptions } from "../../engine/restore/mod.ts";
import { UnsupportedError } from "../../engine/errors.ts";
import { assertChecksPassed } from "./checks.ts";
import { pathExists, tempDir } from "./fs.ts";
import { adoptPid, startTarget, type Target } from "./targets.ts";

/**
 * A fresh temporary path for an image directory (not created), inside a
 * directory made by `tempDir()`: `withTargets` removes it after the test.
 */
export async function tempImageDir(): Promise<string> {
  return `${await tempDir("cryo-test-")}/image`;
}

/**
 * Asserts that a dump of the tree of `pid` is refused (UnsupportedError)
 * and leaves no image; `check` asserts on the refusal's lines.
 */
export async function assertDumpRefused(
  pid: number,
  check: (items: readonly string[], message: string) => void,
): Promise<void> {
  const dir = await tempImageDir();
  await assert.rejects(() => checkpoint(pid, { dir }), (e: Error) => {
    assert.ok(e instanceof UnsupportedError, String(e));
    check(e.items, e.message);
    return true;
  });
  assert.equal(pathExists(dir) && [...Deno.readDirSync(dir)].length > 0, false, "no image left");
}

/**
 * Dumps `t` (killing it), waits until it is gone, restores it from the
 * image, asserts that it came back with the same pid, and points `t` at
 * the restored process. `dumpOpts` are more options of the dump (opt-ins).
 */
export async function dumpKillRestore(
  t: Target,
  opts: RestoreOptions = {},
  dumpOpts: Omit<CheckpointOptions, "dir"> = {},
): Promise<{ dir: string; dump: CheckpointResult; tree: RestoredTree }> {
  const dir = await tempImageDir();
  const dump = await checkpoint(t.pid, { ...dumpOpts, dir });
  await t.wait();
  const tree = await restore(dir, opts);
  t.resetAfterRestore();
  for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
  assert.equal(tree.rootPid, t.pid, "restored with another pid");
  return { dir, dump, tree };
}

/** A round-trip target started by {@link startTriggered}. */
export interface TriggeredTarget {
  /** The running target. */
  t: Target;
  /** Its work directory (made by `tempDir()`). */
  work: string;
  /** The trigger file (`<work>/go`, not created yet). */
  trigger: string;
  /** The match of its ready line. */
  ready: RegExpMatchArray;
}

/**
 * Starts tests/targets/<name>.c with the arguments `<work>/go` (the
 * trigger file it waits for), `<work>` if `passWork`, then `extra`; waits
 * for its ready line matching `ready`, whose first group must be its pid.
 */
export async function startTriggered(
  name: string,
  ready: RegExp,
  opts: { passWork?: boolean; extra?: string[]; timeoutMs?: number } = {},
): Promise<TriggeredTarget> {
  const work = await tempDir(`cryo-${name.replaceAll("_", "-")}-`);
  const trigger = `${work}/go`;
  const args = [trigger, ...(opts.passWork ? [work] : []), ...(opts.extra ?? [])];
  const t = await startTarget(name, args);
  const m = await t.waitFor(ready, opts.timeoutMs);
  assert.equal(Number(m[1]), t.pid, "the pid in the ready line");
  return { t, work, trigger, ready: m };
}

/**
 * Starts tests/targets/<name>.c in `mode` (see {@link startTriggered}, with
 * its work directory), asserts that a dump of it is refused by name
 * (`refusal` asserts on the UnsupportedError), that the target still runs
 * and no image directory is left; then triggers it and asserts that it
 * passes its own `checks`: the refused dump left it as it was.
 */
export async function assertRefusedLeavesRunning(
  name: string,
  ready: RegExp,
  mode: string,
  refusal: (e: UnsupportedError) => void,
  checks: readonly string[],
): Promise<void> {
  const rt = await startTriggered(name, ready, { passWork: true, extra: [mode] });
  const dir = await tempImageDir();
  await assert.rejects(() => checkpoint(rt.t.pid, { dir }), (e: Error) => {
    assert.ok(e instanceof UnsupportedError, String(e));
    refusal(e);
    return true;
  });
  assert.equal(rt.t.poll(), undefined, "the target died");
  assert.equal(pathExists(dir), false, "an image was left");
  await Deno.writeTextFile(rt.trigger, "");
  assertChecksPassed(rt.t, checks, await rt.t.wait(), { what: mode });
}

/**
 * Starts tests/targets/<name>.c (see {@link startTriggered}, with its work
 * directory unless `passWork` is false) with arguments `extra`, dumps it
 * (killed and restored: {@link dumpKillRestore}; with `leaveRunning` left
 * running, asserted still running), triggers it and asserts that it passes
 * its own `checks`. Returns the target for more assertions.
 */
export async function assertTriggeredRoundTrip(
  name: string,
  ready: RegExp,
  extra: readonly string[],
  checks: readonly string[],
  opts: { leaveRunning?: boolean; passWork?: boolean } = {},
): Promise<TriggeredTarget> {
  const rt = await startTriggered(name, ready, {
    passWork: opts.passWork ?? true,
    extra: [...extra],
  });
  if (opts.leaveRunning) {
    await checkpoint(rt.t.pid, { dir: await tempImageDir(), leaveRunning: true });
    assert.equal(rt.t.poll(), undefined, "the target died");
  } else await dumpKillRestore(rt.t);
  await Deno.writeTextFile(rt.trigger, "");
  assertChecksPassed(rt.t, checks, await rt.t.wait());
  return rt;
}

/**
 * A dump, tried again (at most `tries` times) when refused because bytes
 * reached a queue after it was read (loopback segments in flight at the
 * freeze: "try again", the tree left running); the partial image removed
 * before each new try. Any other refusal, or the last, is thrown.
 */
export async function checkpointRetrying(
  pid: number,
  opts: CheckpointOptions,
  tries = 4,
): Promise<CheckpointResult> {
  for (let i = 1;; i++) {
    try {
      return await checkpoint(pid, opts);
    } catch (e) {
      if (i >= tries || !/received data while the tree was being checkpointed/.test(String(e))) {
        throw e;
      }
      await Deno.remove(opts.dir, { recursive: true }).catch(() => {});
    }
  }
}

/**
 * Starts tests/targets/<name>.c (rt_tcpbuf, rt_tcpwin: a connection
 * between it and its child, `arg` its size argument), adopts the child it
 * prints, and checks that its queues are full: at least `minIn` bytes
 * received and `minOut` to send (the ready line's inq= and outq=).
 */
export async function startFullQueues(
  name: string,
  ready: RegExp,
  arg: string,
  minIn: number,
  minOut: number,
): Promise<TriggeredTarget> {
  const rt = await startTriggered(name, ready, { extra: [arg], timeoutMs: 30000 });
  adoptPid(Number((await rt.t.waitFor(/^child pid=(\d+)$/m))[1]));
  const inq = Number(rt.ready[2]), outq = Number(rt.ready[3]);
  if (inq < minIn || outq < minOut) {
    throw new Error(`queues not full: ${inq} received, ${outq} to send`);
  }
  return rt;
}
