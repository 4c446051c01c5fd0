/**
 * Pre-copy of a tree (engine/dump/precopy.ts, precopy_copy.ts): with two
 * or more processes of 32 MiB or more, the processes are copied two at a
 * time, one of them in a worker thread. A tree of 3 processes of 40 MiB
 * each (tests/targets/load_tree.c) is dumped with `leaveRunning`; the
 * original tree checks itself and exits, then the image is restored and
 * every restored process checks its tid and its whole memory pattern.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { assertLoadReports, startLoadTree } from "./helpers/load.ts";
import { tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";

const MIB_PER_PROCESS = 40;

Deno.test(
  "dump --leave-running of a tree of 3 x 40 MiB: copied two processes at a time, every page restored",
  withTargets(async () => {
    const tree = await startLoadTree(3, 1, MIB_PER_PROCESS * 1024);
    const { t, trigger } = tree;
    const dir = await tempImageDir();
    const dump = await checkpoint(t.pid, { dir, leaveRunning: true });
    const pre = dump.stats.precopy;
    assert.ok(pre, "the dump pre-copied");
    assert.ok(
      pre.bytes >= 3 * MIB_PER_PROCESS * (1 << 20),
      `pre-copied ${pre.bytes} bytes of the 3 processes`,
    );
    assert.ok(pre.reusedBytes >= 3 * MIB_PER_PROCESS * (1 << 20), `kept ${pre.reusedBytes} bytes`);
    // The original tree runs on untouched and checks itself.
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, ["children", "root"], await t.wait(60000), { what: "original" });
    assertLoadReports(tree);
    // The restored tree finds the trigger at once and checks itself again.
    const restored = await restore(dir);
    t.resetAfterRestore();
    for (const pid of restored.pids) if (pid !== t.pid) adoptPid(pid);
    assertChecksPassed(t, ["children", "root"], await t.wait(60000), {
      run: 2,
      what: "restored",
    });
    assertLoadReports(tree);
  }),
);
