/**
 * Round trips of a process with thousands of small mappings of six kinds
 * (tests/targets/rt_maps.c: private anonymous read-write and read-only,
 * shared anonymous, private file-backed with copy-on-write pages,
 * untouched, MADV_WIPEONFORK): after the restore every mapping has the
 * same maps line, the same VmFlags and the same content. Its smaps text
 * (~2 MB) is read in many chunks by the dump. Once with a plain dump, once
 * with `--leave-running` (whose restorability check runs after the thaw):
 * the image of the still running target is restored after it is killed.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) base=0x([0-9a-f]+) count=(\d+)$/m;
const CHECKS = ["lines", "vmflags", "content", "file-untouched"];
const COUNT = 3000;

Deno.test(
  "many mappings: every line, VmFlags and content comes back (dump, kill, restore)",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_maps", READY, {
      passWork: true,
      extra: [String(COUNT)],
    });
    const { dump } = await dumpKillRestore(t);
    assert.ok(dump.stats.mappings > COUNT, `${dump.stats.mappings} mappings`);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, CHECKS, await t.wait(30000), { what: "rt_maps" });
  }),
);

Deno.test(
  "many mappings: an image taken with --leave-running restores every mapping",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_maps", READY, {
      passWork: true,
      extra: [String(COUNT)],
    });
    const dir = await tempImageDir();
    const dump = await checkpoint(t.pid, { dir, leaveRunning: true, precopy: false });
    assert.ok(dump.stats.mappings > COUNT, `${dump.stats.mappings} mappings`);
    assert.ok(t.poll() === undefined, "the target still runs");
    await t.kill();
    const tree = await restore(dir);
    t.resetAfterRestore();
    assert.equal(tree.rootPid, t.pid);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, CHECKS, await t.wait(30000), { what: "rt_maps" });
  }),
);
