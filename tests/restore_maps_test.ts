/**
 * Round trips of a process with thousands of small mappings of six kinds
 * (tests/targets/rt_maps.c: private anonymous read-write and read-only,
 * shared anonymous, private file-backed with copy-on-write pages,
 * untouched, MADV_WIPEONFORK; then 64 one-page private anonymous mappings
 * side by side, each unlike its neighbours, which the restore maps in runs,
 * engine/restore/anon_runs.ts): after the restore every mapping has the
 * same maps line, the same VmFlags and the same content. Its smaps text
 * (~2 MB) is read in many chunks by the dump. Once with a plain dump, once
 * with `--leave-running` (whose restorability check runs after the thaw):
 * the image of the still running target is restored after it is killed.
 * And a refusal that only the restorability compile finds (a pipe end
 * reopened through /proc, tests/targets/refused_fds.c) still fails a
 * `--leave-running` dump whose compile runs after the thaw: named, nothing
 * written, the target untraced and running on.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { restore } from "../engine/restore/mod.ts";
import { anonRunLength } from "../engine/restore/anon_runs.ts";
import { readImageFile } from "../engine/image/reader.ts";
import type { Mapping } from "../engine/model.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { pathExists, tempDir } from "./helpers/fs.ts";
import { statusField } from "./helpers/proc.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { SIGUSR1 } from "./helpers/signals.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) base=0x([0-9a-f]+) count=(\d+)$/m;
const CHECKS = ["lines", "vmflags", "content", "file-untouched"];
const COUNT = 3000;

/** Runs of adjacent mappings the restore maps together, and their members. */
function anonRuns(mappings: readonly Mapping[]): { runs: number; members: number } {
  let runs = 0, members = 0;
  for (let i = 0; i < mappings.length; i++) {
    const n = anonRunLength(mappings, i);
    if (n === 0) continue;
    runs++;
    members += n;
    i += n - 1;
  }
  return { runs, members };
}

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
    // The side-by-side mappings make runs of 5 to 6 (the others are one page apart).
    const runs = anonRuns((await readImageFile(`${dir}/${t.pid}.elf`)).process.mappings);
    assert.ok(runs.runs >= 8 && runs.members >= 40, `runs: ${JSON.stringify(runs)}`);
    await t.kill();
    const tree = await restore(dir);
    t.resetAfterRestore();
    assert.equal(tree.rootPid, t.pid);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, CHECKS, await t.wait(30000), { what: "rt_maps" });
  }),
);

Deno.test(
  "--leave-running: a refusal found by the compile after the thaw fails the dump, the target runs on",
  withTargets(async () => {
    const work = await tempDir("cryo-refused-lr-");
    const t = await startTarget("refused_fds", [work, "pipe-reopen"]);
    await t.waitFor(/^ready pid=\d+ fd=-?\d+$/m);
    const dir = await tempImageDir();
    const events: string[] = [];
    await assert.rejects(
      () =>
        checkpoint(t.pid, {
          dir,
          leaveRunning: true,
          precopy: false,
          onEvent: (e) => events.push(e.type),
        }),
      (e: unknown) =>
        e instanceof UnsupportedError &&
        /fd \d+ \(pipe:\[\d+\]\): a pipe end open through several descriptions/.test(e.message),
    );
    assert.ok(events.includes("thawed"), `found after the thaw: ${events.join(" ")}`);
    assert.equal(pathExists(dir), false, "an image directory was left behind");
    assert.equal(statusField(t.pid, "TracerPid"), "0");
    t.signal(SIGUSR1);
    assertChecksPassed(t, ["fd-open"], await t.wait());
  }),
);
