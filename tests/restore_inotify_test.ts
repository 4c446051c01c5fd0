/**
 * Round trip of inotify instances (engine/fds/inotify.ts):
 * tests/targets/rt_inotify.c watches a directory and a file with a gap in
 * its watch numbers (two watches removed before the dump) and holds a
 * second, blocking instance; after restore it checks its watch lines in
 * fdinfo read the same, nothing is queued, the flags came back, and new
 * events carry the original watch numbers and names. The image keeps each
 * watch's path, and the compiled program reaches the numbers 2 and 3 by
 * taking and giving them back.
 */

import assert from "node:assert/strict";
import { readImage } from "../engine/inspect.ts";
import { wdFillers } from "../engine/fds/inotify.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) fd=(\d+)$/m;

Deno.test("inotify: numbers to take and give back before each watch", () => {
  assert.equal(wdFillers([]), 0);
  assert.equal(wdFillers([1, 2, 3]), 0);
  assert.equal(wdFillers([4, 1]), 2);
  assert.equal(wdFillers([3, 7]), 5);
});

Deno.test(
  "inotify: watches on a directory and a file keep their numbers (with a gap), masks and flags",
  withTargets(async () => {
    const { t, trigger, work, ready } = await startTriggered("rt_inotify", READY, {
      passWork: true,
    });
    const fd = Number(ready[2]);
    const { dir } = await dumpKillRestore(t);
    const image = await readImage(dir);
    const f = image.processes[0].fds.find((x) => x.fd === fd);
    assert.deepEqual(
      f?.inotify?.map((w) => [w.wd, w.path]),
      [[1, `${work}/watched`], [4, `${work}/file.txt`]],
    );
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(
      t,
      [
        "watch-lines",
        "blocking-watch-lines",
        "nothing-queued",
        "flags",
        "blocking-flags",
        "dir-event",
        "file-event",
        "next-wd",
        "blocking-event",
      ],
      await t.wait(),
    );
  }),
);
