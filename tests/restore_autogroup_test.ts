/**
 * The scheduler autogroup's nice value (/proc/<pid>/autogroup, one per
 * session; tests/targets/rt_autogroup.c): a session leader that set it
 * gets it back after a dump, kill and restore (before, the restored
 * session's new autogroup had nice 0); a process whose session leader is
 * outside the tree is refused by name (setting it would change the
 * restorer's session), and goes on untouched.
 */

import assert from "node:assert/strict";
import { assertChecksPassed } from "./helpers/checks.ts";
import { assertDumpRefused, dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";
import { pathExists } from "./helpers/fs.ts";

const READY = /^ready pid=(\d+)(?: child=(\d+))?$/m;
const haveAutogroup = pathExists("/proc/self/autogroup");

Deno.test({
  name: "autogroup: a session leader's autogroup nice value comes back",
  ignore: !haveAutogroup,
  fn: withTargets(async () => {
    const rt = await startTriggered("rt_autogroup", READY, { extra: ["leader"] });
    const { dump } = await dumpKillRestore(rt.t);
    assert.equal(dump.manifest.processes.length, 1);
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(rt.t, ["leader", "autogroup-nice"], await rt.t.wait());
  }),
});

Deno.test({
  name: "autogroup: a nice value of a session led from outside the tree is refused by name",
  ignore: !haveAutogroup,
  fn: withTargets(async () => {
    const rt = await startTriggered("rt_autogroup", READY, { extra: ["member"] });
    const child = Number(rt.ready[2]);
    adoptPid(child);
    await assertDumpRefused(child, (items) =>
      assert.deepEqual(items, [
        `process ${child}: an autogroup nice value (/proc/<pid>/autogroup) of a session whose leader is outside the tree: its session ${rt.t.pid} (outside the tree) has autogroup nice 7`,
      ]));
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(rt.t, ["member-nice"], await rt.t.wait());
  }),
});
