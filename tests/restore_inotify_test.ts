/**
 * Round trip of inotify instances (engine/fds/inotify.ts):
 * tests/targets/rt_inotify.c watches a directory and a file with a gap in
 * its watch numbers (two watches removed before the dump) and holds a
 * second, blocking instance; after restore it checks its watch lines in
 * fdinfo read the same, nothing is queued, the flags came back, and new
 * events carry the original watch numbers and names (the program reached
 * watch 4 by taking and giving back 2 and 3; another run has a gap of 502
 * numbers). The same checks pass in a
 * process a dump left running (the dump queued nothing), and a restore
 * whose watched file is gone fails in the pre-flight.
 */

import assert from "node:assert/strict";
import { readImage } from "../engine/inspect.ts";
import { planInotify, wdFillers } from "../engine/fds/inotify.ts";
import type { FdInfo } from "../engine/model.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { RestoreError } from "../engine/errors.ts";
import { withTargets } from "./helpers/targets.ts";
import { isAlive } from "./helpers/proc.ts";

const READY = /^ready pid=(\d+) fd=(\d+)$/m;

/** What rt_inotify checks after the trigger. */
const CHECKS = [
  "watch-lines",
  "blocking-watch-lines",
  "nothing-queued",
  "flags",
  "blocking-flags",
  "dir-event",
  "file-event",
  "next-wd",
  "blocking-event",
];

Deno.test("inotify: numbers to take and give back before each watch", () => {
  assert.equal(wdFillers([]), 0);
  assert.equal(wdFillers([1, 2, 3]), 0);
  assert.equal(wdFillers([4, 1]), 2);
  assert.equal(wdFillers([3, 7]), 5);
});

Deno.test("inotify: a watch list an image cannot have is refused by the planner", () => {
  const fd = (inotify: unknown) =>
    ({ fd: 3, kind: "inotify", flags: 0, extra: {}, inotify }) as unknown as FdInfo;
  const w = (wd: number, path = "/tmp") => ({ wd, mask: 0x100, path, dev: 1, ino: 2 });
  assert.equal(typeof planInotify(fd([w(1), w(4)])), "object");
  assert.match(String(planInotify(fd(undefined))), /not recorded/);
  assert.match(String(planInotify(fd([w(4), w(1)]))), /out of order/);
  assert.match(String(planInotify(fd([w(2), w(2)]))), /out of order/);
  assert.match(String(planInotify(fd([w(0)]))), /out of range/);
  assert.match(String(planInotify(fd([w(1, "relative")]))), /bad path/);
  assert.match(String(planInotify(fd([{ ...w(1), mask: -1 }]))), /bad mask/);
  assert.match(String(planInotify(fd([w(1), w(3000)]))), /more than 2048 numbers/);
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
    assertChecksPassed(t, CHECKS, await t.wait());
  }),
);

Deno.test(
  "inotify: a watch 500 numbers past the one below it keeps its number",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_inotify", READY, {
      passWork: true,
      extra: ["500"],
    });
    const { dir } = await dumpKillRestore(t);
    const image = await readImage(dir);
    const f = image.processes[0].fds.find((x) => x.fd === Number(ready[2]));
    assert.deepEqual(f?.inotify?.map((w) => w.wd), [1, 504]);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, CHECKS, await t.wait());
  }),
);

Deno.test(
  "inotify: a dump that leaves the process running queues nothing in its instances",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_inotify", READY, { passWork: true });
    await checkpoint(t.pid, { dir: await tempImageDir(), leaveRunning: true });
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, CHECKS, await t.wait());
  }),
);

Deno.test(
  "inotify: a restore whose watched file is gone fails before creating anything",
  withTargets(async () => {
    const { t, work } = await startTriggered("rt_inotify", READY, { passWork: true });
    const dir = await tempImageDir();
    await checkpoint(t.pid, { dir });
    await t.wait();
    await Deno.remove(`${work}/file.txt`);
    await assert.rejects(
      () => restore(dir),
      (e: unknown) =>
        e instanceof RestoreError &&
        /fd \d+ of process \d+ watched .*file\.txt \(inotify watch 4\), which is missing/.test(
          e.message,
        ),
    );
    assert.equal(isAlive(t.pid), false, "a process was created");
  }),
);
