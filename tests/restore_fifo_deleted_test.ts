/**
 * Round trip of a FIFO whose path was removed while open
 * (engine/fds/fifo.ts, tests/targets/rt_fifo_deleted.c): it is made again
 * under its old name and unlinked; its three descriptions (one shared with
 * a child, or held by one process only) are one FIFO again, shown "(deleted)", with its mode, flags and
 * buffered bytes. A restore fails by name when the old path is taken.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { RestoreError } from "../engine/errors.ts";
import { restore } from "../engine/restore/mod.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) child=(\d+)$/m;

Deno.test(
  "a FIFO whose path was removed comes back unlinked, with its bytes, mode and flags",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_fifo_deleted", READY, { passWork: true });
    const { tree } = await dumpKillRestore(t);
    assert.equal(tree.pids.length, 2, "the child is restored too");
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(
      t,
      ["same-fifo", "mode", "deleted", "path-free", "flags", "child", "bytes", "works"],
      await t.wait(),
    );
  }),
);

Deno.test(
  "a removed FIFO held by one process only comes back from its own fd phase",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_fifo_deleted", READY, {
      passWork: true,
      extra: ["alone"],
    });
    const { tree } = await dumpKillRestore(t);
    assert.deepEqual([...tree.pids], [t.pid]);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(
      t,
      ["same-fifo", "mode", "deleted", "path-free", "flags", "child", "bytes", "works"],
      await t.wait(),
    );
  }),
);

Deno.test(
  "a removed FIFO whose old path is taken again at restore fails by name",
  withTargets(async () => {
    const { t, work } = await startTriggered("rt_fifo_deleted", READY, { passWork: true });
    const dir = await tempImageDir();
    await checkpoint(t.pid, { dir });
    await t.wait();
    await Deno.writeTextFile(`${work}/f`, "someone else's file");
    await assert.rejects(
      () => restore(dir),
      (e: unknown) =>
        e instanceof RestoreError &&
        /f exists again, so the FIFO removed from there/.test(e.message),
    );
  }),
);
