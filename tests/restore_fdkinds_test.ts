/**
 * Round trip of the fd kinds re-created from their state (engine/fds/):
 * tests/targets/rt_fdkinds.c holds a pipe with buffered bytes, an eventfd
 * with a count, a periodic timerfd, a signalfd, an epoll watching two of
 * them and a pipe shared with its child; after restore it checks each one
 * works as before. A second test leaves a region and an fd out of the image
 * (checkpoint's `include` predicates, what policies use) and checks they
 * come back empty and closed.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { readImage } from "../engine/inspect.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) child=(\d+) region=0x([0-9a-f]+) dropfd=(\d+)$/m;
const COMMON = [
  "pipe-bytes",
  "pipe-nonblock",
  "eventfd-count",
  "timerfd-interval",
  "timerfd-fires",
  "signalfd",
  "epoll",
  "shared-pipe",
  "child",
];

Deno.test(
  "pipes (in-process with bytes, shared with a child), eventfd, timerfd, signalfd, epoll survive",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_fdkinds", READY);
    const { tree } = await dumpKillRestore(t);
    assert.equal(tree.pids.length, 2, "the child is restored too");
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, [...COMMON, "region", "fd"], await t.wait());
  }),
);

Deno.test(
  "a mapping and an fd left out by include predicates come back empty and closed",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_fdkinds", READY, {
      extra: ["excluded"],
    });
    const region = `0x${ready[3]}`;
    const dropfd = Number(ready[4]);
    const dir = await tempImageDir();
    const dump = await checkpoint(t.pid, {
      dir,
      include: {
        mapping: (m, p) =>
          p.pid !== t.pid ||
          !(BigInt(m.start) === BigInt(region) && BigInt(m.end) === BigInt(region) + (1n << 20n)),
        fd: (f, p) => p.pid !== t.pid || f.fd !== dropfd,
      },
    });
    assert.equal(dump.stats.processes, 2);
    const image = (await readImage(dir)).processes.find((p) => p.pid === t.pid)!;
    assert.deepEqual(image.excluded.map((e) => e.what.split(" ")[0]).sort(), ["fd", "mapping"]);
    assert.equal(image.mappings.find((m) => m.excluded)?.pages.length, 0, "no pages saved");
    await t.wait();
    const tree = await restore(dir);
    t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, [...COMMON, "excluded-region", "excluded-fd"], await t.wait());
  }),
);
