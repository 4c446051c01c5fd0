/**
 * Round trip of one long run of private anonymous mappings
 * (tests/targets/rt_maps_run.c: 2,000 one-page areas side by side, the odd
 * ones read-only, as the bench's maps workload, with locked members, members
 * with madvise flags and a guard page among them): the restore maps them as
 * one run (engine/restore/anon_runs.ts: the read-only members' `mprotect`s
 * written as blocks, the guards and locks found from the run's list of
 * members to look at), and after it every area has the maps line and VmFlags
 * it had at the dump, the same content and guard page, and VmLck is the
 * same. Once with a plain dump, once with `--leave-running` (the dump's
 * restorability compile, run after the thaw, on the dump's shared lists).
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { anonRunLength } from "../engine/restore/anon_runs.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) start=0x([0-9a-f]+) count=(\d+)$/m;
const CHECKS = ["lines", "vmflags", "content", "guard", "vmlck"];
const COUNT = 2000;

Deno.test(
  "a run of 2,000 mappings: every line, VmFlags, content, guard and lock comes back",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_maps_run", READY, { extra: [String(COUNT)] });
    const { dump } = await dumpKillRestore(t);
    assert.ok(dump.stats.mappings >= COUNT, `${dump.stats.mappings} mappings`);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, CHECKS, await t.wait(30000), { what: "rt_maps_run" });
  }),
);

Deno.test(
  "a run of 2,000 mappings: an image taken with --leave-running restores as one run",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_maps_run", READY, {
      extra: [String(COUNT)],
    });
    const dir = await tempImageDir();
    await checkpoint(t.pid, { dir, leaveRunning: true, precopy: false });
    assert.ok(t.poll() === undefined, "the target still runs");
    // The members up to the locked-on-fault one and past it are long runs (a member whose
    // neighbour is alike in every way is kept apart, none here).
    const mappings = (await readImageFile(`${dir}/${t.pid}.elf`)).process.mappings;
    const first = mappings.findIndex((m) => m.start === `0x${ready[2]}`);
    assert.ok(first >= 0, "the run's first area is in the image");
    assert.equal(anonRunLength(mappings, first), COUNT, "the areas make one run");
    // The reader shares one frozen list per distinct VmFlags (engine/image/flag_lists.ts).
    const byText = new Map<string, readonly string[]>();
    for (const m of mappings) {
      assert.ok(Object.isFrozen(m.vmFlags), `${m.start}: frozen flags`);
      const text = JSON.stringify(m.vmFlags);
      assert.equal(m.vmFlags, byText.get(text) ?? m.vmFlags, `${m.start}: shared flags`);
      byText.set(text, m.vmFlags);
    }
    await t.kill();
    await restore(dir);
    t.resetAfterRestore();
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, CHECKS, await t.wait(30000), { what: "rt_maps_run" });
  }),
);
