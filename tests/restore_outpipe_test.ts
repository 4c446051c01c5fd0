/**
 * A pipe leading out of the tree held above fd 2 (engine/fds/pipe.ts
 * `outsidePipeStdio`, tests/targets/rt_outpipe.c): nothing of the
 * restorer's stands for it, so a restore of the root's asks for
 * `--inherit-fd` (it took the restorer's stdin before), another process's
 * is refused at dump, and one the tree also holds at fd 0 takes the
 * restorer's stdin like that fd.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { restore } from "../engine/restore/mod.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { pathExists, tempDir } from "./helpers/fs.ts";
import { assertDumpRefused, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, startTarget, type Target, withTargets } from "./helpers/targets.ts";

const READY = /^ready outer=(\d+) root=(\d+)(?: child=(\d+))?$/m;

async function start(mode: string) {
  const work = await tempDir("cryo-outpipe-");
  const outer = await startTarget("rt_outpipe", [`${work}/go`, mode]);
  const m = await outer.waitFor(READY);
  assert.equal(Number(m[1]), outer.pid);
  const root = Number(m[2]);
  const child = m[3] ? Number(m[3]) : undefined;
  // Killed by pid after the test, whatever happened to them (not our children).
  adoptPid(root);
  if (child !== undefined) adoptPid(child);
  return { work, outer, root, child };
}

/** Waits until `pid` is gone (it was the outer target's child: the outer one does not reap it). */
async function gone(pid: number): Promise<void> {
  for (let i = 0; i < 250; i++) {
    const stat = pathExists(`/proc/${pid}/stat`) ? Deno.readTextFileSync(`/proc/${pid}/stat`) : "";
    if (stat === "" || / Z /.test(stat.slice(stat.lastIndexOf(")")))) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${pid} did not die`);
}

Deno.test(
  "the root's pipe to a process outside the tree above fd 2: restore asks for --inherit-fd, then takes it",
  withTargets(async () => {
    const { work, outer, root } = await start("root");
    const dir = await tempImageDir();
    const dump = await checkpoint(root, { dir });
    assert.deepEqual(dump.inheritFdsNeeded, [3], "the dump says what the restore needs");
    await gone(root);
    await assert.rejects(() => restore(dir), (e: Error) => {
      assert.ok(e instanceof UnsupportedError, String(e));
      assert.match(
        e.items.join("\n"),
        /fd 3 \(pipe:\[\d+\]\): the read end of a pipe to a process outside the tree: .* \(use --inherit-fd 3=PATH or 3=fd:N\)/,
      );
      return true;
    });
    assert.equal(pathExists(`/proc/${root}`) && !isZombie(root), false, "nothing restored");
    await Deno.writeTextFile(`${work}/given`, "given\n");
    const tree = await restore(dir, { inheritFds: new Map([[3, `${work}/given`]]) });
    // Its stdout is the outer target's output file, reopened.
    const t: Target = adoptPid(tree.rootPid, outer.outputPath);
    assert.equal(tree.rootPid, root);
    await Deno.writeTextFile(`${work}/go`, "");
    assertChecksPassed(t, ["fd3"], await t.wait());
  }),
);

Deno.test(
  "the root's terminal outside the tree above fd 2 (not on 0-2): a --shell-job restore asks for --inherit-fd",
  withTargets(async () => {
    const { work, outer, root } = await start("tty");
    const dir = await tempImageDir();
    const dump = await checkpoint(root, { dir, optIns: ["shell-job"] });
    assert.deepEqual(dump.inheritFdsNeeded, [3]);
    await gone(root);
    await assert.rejects(() => restore(dir, { optIns: ["shell-job"] }), (e: Error) => {
      assert.ok(e instanceof UnsupportedError, String(e));
      assert.match(
        e.items.join("\n"),
        /fd 3 \(\/dev\/pts\/\d+\): a terminal outside the tree \(\/dev\/pts\/\d+\): .* \(use --inherit-fd 3=PATH or 3=fd:N\)/,
      );
      return true;
    });
    await Deno.writeTextFile(`${work}/given`, "given\n");
    const tree = await restore(dir, {
      optIns: ["shell-job"],
      inheritFds: new Map([[3, `${work}/given`]]),
    });
    const t: Target = adoptPid(tree.rootPid, outer.outputPath);
    await Deno.writeTextFile(`${work}/go`, "");
    assertChecksPassed(t, ["fd3"], await t.wait());
  }),
);

function isZombie(pid: number): boolean {
  try {
    const s = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return / Z /.test(s.slice(s.lastIndexOf(")")));
  } catch {
    return false;
  }
}

Deno.test(
  "a pipe to a process outside the tree above fd 2 of a process other than the root is refused at dump",
  withTargets(async () => {
    const { root, child } = await start("nested");
    await assertDumpRefused(root, (items) => {
      assert.match(
        items.join("\n"),
        new RegExp(
          `process ${child} .*fd 3 \\(pipe:\\[\\d+\\]\\): the read end of a pipe to a process outside the tree, not held by the tree.s root`,
        ),
      );
    });
    assert.ok(pathExists(`/proc/${root}`) && !isZombie(root), "left running");
  }),
);

Deno.test(
  "a pipe to a process outside the tree at fd 0 of the root and fd 3 of its child: both take the restorer's stdin",
  withTargets(async () => {
    const { root, child } = await start("stdin");
    const dir = await tempImageDir();
    assert.equal((await checkpoint(root, { dir })).inheritFdsNeeded, undefined);
    await gone(root);
    const tree = await restore(dir);
    for (const pid of tree.pids) adoptPid(pid, "");
    assert.deepEqual([...tree.pids].sort(), [root, child!].sort());
    const ours = Deno.statSync("/proc/self/fd/0");
    for (const [pid, fd] of [[root, 0], [child, 3]]) {
      const st = Deno.statSync(`/proc/${pid}/fd/${fd}`);
      assert.deepEqual([st.dev, st.ino], [ours.dev, ours.ino], `fd ${fd} of ${pid} is our stdin`);
    }
  }),
);

Deno.test(
  "what --inherit-fd gives the root's fd 0, its child's fd 3 holding the same pipe end takes too",
  withTargets(async () => {
    const { work, root, child } = await start("stdin");
    const dir = await tempImageDir();
    await checkpoint(root, { dir });
    await gone(root);
    await Deno.writeTextFile(`${work}/given`, "given\n");
    const tree = await restore(dir, { inheritFds: new Map([[0, `${work}/given`]]) });
    for (const pid of tree.pids) adoptPid(pid, "");
    for (const [pid, fd] of [[root, 0], [child, 3]]) {
      assert.equal(
        Deno.readLinkSync(`/proc/${pid}/fd/${fd}`),
        `${work}/given`,
        `fd ${fd} of ${pid}`,
      );
    }
  }),
);
