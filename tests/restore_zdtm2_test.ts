/**
 * Cases found by running CRIU's zdtm tests (g..o) against cryo
 * (docs/COMPATIBILITY.md, "CRIU's zdtm tests as a probe, g to o"), each
 * with a target of cryo's own.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { assertDumpRefused, dumpKillRestore, tempImageDir } from "./helpers/roundtrip.ts";
import { tempDir } from "./helpers/fs.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";
import { signalThenPass } from "./helpers/checks.ts";

Deno.test(
  "memfd: a script in a memfd still runs by execveat after the restore; one reopened read-write still does not",
  withTargets(async () => {
    const t = await startTarget("rt_memfd_exec", []);
    await t.waitFor(/^ready pid=\d+$/m);
    await dumpKillRestore(t);
    await signalThenPass(t);
  }),
);

for (const lazy of [false, true]) {
  Deno.test(
    `droppable memory (MAP_DROPPABLE) comes back droppable and empty, as in a fork's child${
      lazy ? " (restore --lazy)" : ""
    }`,
    withTargets(async () => {
      const t = await startTarget("rt_droppable", []);
      await t.waitFor(/^ready pid=\d+ flags=.* dp\b/m);
      const { tree } = await dumpKillRestore(t, { lazy });
      if (lazy) {
        assert.ok(tree.lazy, "the restore is lazy");
        tree.lazy.serve();
      }
      await signalThenPass(t);
    }),
  );
}

for (const opts of [{ leaveRunning: true, precopy: true }, { leaveRunning: true }]) {
  Deno.test(
    `droppable memory is left as it was by a dump that leaves the process running (${
      opts.precopy ? "pre-copy" : "frozen copy"
    })`,
    withTargets(async () => {
      const t = await startTarget("rt_droppable", ["running"]);
      await t.waitFor(/^ready pid=\d+ flags=.* dp\b/m);
      await checkpoint(t.pid, { dir: await tempImageDir(), ...opts });
      await signalThenPass(t);
    }),
  );
}

Deno.test(
  "inotify: a watch on a deleted file the process holds open comes back on the re-created file",
  withTargets(async () => {
    const work = await tempDir("cryo-inotify-deleted-");
    const t = await startTarget("rt_inotify_deleted", [work]);
    await t.waitFor(/^ready pid=\d+$/m);
    await dumpKillRestore(t);
    await signalThenPass(t);
  }),
);

Deno.test(
  "inotify: a watch on a deleted file only a process outside the tree holds is refused by name; the target runs on",
  withTargets(async () => {
    const work = await tempDir("cryo-inotify-deleted-");
    // The test holds the file open: the inode outlives the target's close.
    using _held = await Deno.open(`${work}/watched.log`, { write: true, create: true });
    const t = await startTarget("rt_inotify_deleted", [work, "closed"]);
    await t.waitFor(/^ready pid=\d+$/m);
    await assertDumpRefused(t.pid, (_, message) => {
      assert.match(message, /watched\.log was deleted and no process of the tree holds it/);
    });
    assert.equal(t.poll(), undefined, "still running");
  }),
);
