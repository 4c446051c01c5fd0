/**
 * Pre-copies and pre-dump chains of a tree that changes while they run
 * (tests/targets/rt_forkloop.c: the root forks children all the time, each
 * lives a while, rewrites pages of its own copy and exits, the root reaps
 * them and rewrites its own pages):
 *
 * - a process that exits during the pre-copy's copy is dropped from it
 *   (engine/dump/precopy.ts `dropGone`), not a failed dump ("process N is
 *   gone"), on cryo's lane and on a syscall table's (native_lane.ts);
 * - a child forked during a pre-dump's copy inherits cryo's tracking fd
 *   (made certain by stopping cryo in its copy, `CRYO_TEST_PAUSE_AT`):
 *   the collect recognises the copy (kcmp KCMP_FILE,
 *   engine/dump/tracking.ts `markInheritedTracking`) and leaves it out,
 *   without recording that child as tracked; the final dump closes it;
 * - the chain's final dump and the restore come back exact (the root's
 *   pages and every child's, checked by the processes themselves);
 * - a plain dump's pre-copy (leave-running) and a kill dump of the same
 *   tree: the original runs on, the image restores.
 */

import assert from "node:assert/strict";
import { checkpoint, type CheckpointResult } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { readImage } from "../engine/inspect.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, type Target, withTargets } from "./helpers/targets.ts";
import { repoRoot } from "./helpers/commands.ts";
import { waitUntil } from "./helpers/wait.ts";
import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";

const READY = /^ready pid=(\d+)$/m;
const CHECKS = ["memory", "children", "forked"];

/** No fd of the image is a userfaultfd. */
async function assertNoUffdInImage(dir: string): Promise<void> {
  const model = await readImage(dir);
  for (const p of model.processes) {
    for (const f of p.fds) {
      assert.ok(!/userfaultfd/.test(f.target), `process ${p.pid} fd ${f.fd} ${f.target} in ${dir}`);
    }
  }
}

/**
 * Every process a pre-dump recorded as tracked has mappings registered with
 * a userfaultfd (a child that only inherited the fd has none: it is not).
 */
function assertTrackedAreRegistered(r: CheckpointResult): void {
  for (const { pid } of r.manifest.tracking?.fds ?? []) {
    let smaps: string;
    try {
      smaps = Deno.readTextFileSync(`/proc/${pid}/smaps`);
    } catch {
      continue; // exited since
    }
    if (smaps === "") continue; // a zombie
    assert.match(
      smaps,
      /^VmFlags:.*\buw\b/m,
      `process ${pid} is recorded as tracked, nothing of it is`,
    );
  }
}

/** Restores `dir` as `t`, adopts the rest of the tree, triggers it and asserts its checks. */
async function restoreAndCheck(t: Target, trigger: string, dir: string, run = 1): Promise<void> {
  const tree = await restore(dir);
  t.resetAfterRestore();
  for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
  await Deno.writeTextFile(trigger, "");
  assertChecksPassed(t, CHECKS, await t.wait(30000), { run, what: `restored from ${dir}` });
}

for (
  const { mib, childMs, what } of [
    { mib: "1", childMs: "0", what: "children exiting at once, cryo's lane" },
    { mib: "16", childMs: "30", what: "children living 30 ms, a syscall table's lane" },
  ]
) {
  Deno.test(
    `a pre-dump chain of a tree forking and reaping all the time (${what}): no process gone, no inherited fd, exact`,
    withTargets(async () => {
      const { t, trigger } = await startTriggered("rt_forkloop", READY, { extra: [mib, childMs] });
      const d1 = await tempImageDir(), d2 = await tempImageDir(), d3 = await tempImageDir();
      // Several rounds: each pre-dump's copy races with the children's exits and forks.
      const r1 = await checkpoint(t.pid, { dir: d1, preDump: true });
      assertTrackedAreRegistered(r1);
      await assertNoUffdInImage(d1);
      const r2 = await checkpoint(t.pid, { dir: d2, parent: d1, preDump: true });
      assertTrackedAreRegistered(r2);
      await assertNoUffdInImage(d2);
      await checkpoint(t.pid, { dir: d3, parent: d2 });
      await assertNoUffdInImage(d3);
      await t.wait(30000);
      await restoreAndCheck(t, trigger, d3);
    }),
  );
}

Deno.test(
  "pre-dumps of a tree forking all the time, one after the other: every one succeeds",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_forkloop", READY, { extra: ["4", "5"] });
    let parent: string | undefined;
    for (let i = 0; i < 4; i++) {
      const dir = await tempImageDir();
      const r = await checkpoint(t.pid, { dir, preDump: true, ...(parent ? { parent } : {}) });
      assertTrackedAreRegistered(r);
      await assertNoUffdInImage(dir);
      parent = dir;
    }
    const last = await tempImageDir();
    await checkpoint(t.pid, { dir: last, parent, leaveRunning: true });
    await assertNoUffdInImage(last);
    // The original ends the chain without a userfaultfd in any process, and checks itself.
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, CHECKS, await t.wait(30000), { what: "original after the chain" });
  }),
);

Deno.test(
  "a plain dump's pre-copy of a tree forking all the time (leave-running), then a kill dump: the original and both images pass",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_forkloop", READY, { extra: ["16", "0"] });
    const left = await tempImageDir(), killed = await tempImageDir();
    const r = await checkpoint(t.pid, { dir: left, leaveRunning: true, precopy: true });
    assert.ok(r.stats.precopy, "the dump pre-copied");
    await assertNoUffdInImage(left);
    // A kill dump of the same tree (no pre-copy: frozen once).
    await checkpoint(t.pid, { dir: killed });
    await t.wait(30000);
    await restoreAndCheck(t, trigger, killed);
    // The leave-running image restores as well (its pids are free again).
    await Deno.remove(trigger);
    await restoreAndCheck(t, trigger, left, 2);
  }),
);

/** The userfaultfds of `pid`, by fd number. */
function uffdsOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      if (Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`) === "anon_inode:[userfaultfd]") {
        out.push(Number(e.name));
      }
    } catch { /* closed meanwhile */ }
  }
  return out;
}

Deno.test(
  "a child forked while a pre-dump copies inherits the tracking fd: left out of the image, not tracked, closed by the final dump; exact",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_forkloop", READY, { extra: ["1", "0"] });
    const d1 = await tempImageDir(), d2 = await tempImageDir();
    // The pre-dump stops itself in its copy (the tracking armed, the tree running).
    const dump = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${repoRoot}cli.ts`, "dump", String(t.pid), "--dir", d1, "--pre-dump"],
      cwd: repoRoot,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1", CRYO_TEST_PAUSE_AT: "precopy-pages" },
    }).spawn();
    let child = 0;
    try {
      await waitUntil("the pre-dump stopped in its copy", () => {
        try {
          return Deno.readTextFileSync(`/proc/${dump.pid}/stat`).replace(/^.*\) /s, "")[0] === "T";
        } catch {
          return true; // ended: the status below tells
        }
      }, 60000);
      t.signal(10 /* SIGUSR1 */);
      child = Number((await t.waitFor(/^lingering child=(\d+)$/m))[1]);
      adoptPid(child);
    } finally {
      rawSyscall(SYS.kill, dump.pid, 18 /* SIGCONT */);
    }
    const out = await dump.output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const root = uffdsOf(t.pid), inherited = uffdsOf(child);
    assert.equal(root.length, 1, "the root keeps the tracking");
    assert.deepEqual(inherited, root, "the child forked during the copy holds a copy of it");
    const manifest = JSON.parse(await Deno.readTextFile(`${d1}/manifest.json`));
    assert.ok(
      manifest.processes.some((p: { pid: number }) => p.pid === child),
      "the child is in the image",
    );
    const tracked = (manifest.tracking?.fds ?? []).map((f: { pid: number }) => f.pid);
    assert.ok(tracked.includes(t.pid), "the root is tracked");
    assert.ok(!tracked.includes(child), "the child is not recorded as tracked");
    await assertNoUffdInImage(d1);

    await checkpoint(t.pid, { dir: d2, parent: d1, leaveRunning: true });
    await assertNoUffdInImage(d2);
    assert.deepEqual(uffdsOf(t.pid), [], "no tracking left in the root");
    assert.deepEqual(uffdsOf(child), [], "the copy closed in the child");
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, CHECKS, await t.wait(30000), { what: "original after the chain" });
    // The final image restores (the child's memory read whole at each dump).
    await Deno.remove(trigger);
    await restoreAndCheck(t, trigger, d2, 2);
  }),
);
