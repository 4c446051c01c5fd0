/**
 * Native AIO contexts (tests/targets/rt_aio.c): two contexts, one with
 * completed events not reaped, and a gap in the kernel's ids, come back at
 * the same addresses with the same ids, ring sizes, head, tail and events,
 * and take new requests; a `leaveRunning` dump leaves the rings as they
 * were; a context with a request in flight, and a ring mapping inherited
 * across fork, are refused at dump, naming them, with the tree left
 * running.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) a=([0-9a-f]+) b=([0-9a-f]+)$/m;

const RING_CHECKS = [
  "a-ring",
  "b-ring",
  "ring-ids",
  "ring-sizes",
  "a-pending",
  "a-pending-event-0",
  "a-pending-event-1",
  "a-pending-bytes-1",
  "b-pending",
  "b-pending-event-3",
  "b-pending-bytes-3",
  "a-ring-reaped",
  "b-ring-reaped",
  "a-new",
  "b-new-event-0",
  "destroy-a",
  "destroy-b",
  "destroyed",
];

/** The AIO ring lines of a process's maps, without the device and inode columns. */
function aioMaps(pid: number): string[] {
  return Deno.readTextFileSync(`/proc/${pid}/maps`).split("\n")
    .filter((l) => l.includes("[aio]"))
    .map((l) => l.split(/\s+/).filter((_, i) => i !== 3 && i !== 4).join(" "));
}

Deno.test(
  "AIO: contexts, ids, ring sizes and unreaped events survive a round trip",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_aio", READY, {
      passWork: true,
      extra: ["rings"],
    });
    const before = aioMaps(t.pid);
    assert.equal(before.length, 2, before.join("\n"));
    const { dir } = await dumpKillRestore(t);
    const image = (await readImageFile(`${dir}/${t.pid}.elf`)).process;
    const rings = image.mappings.filter((m) => m.aio).map((m) => ({
      start: BigInt(m.start),
      id: m.aio!.id,
      head: m.aio!.head,
      tail: m.aio!.tail,
      kind: m.kind,
    })).sort((x, y) => x.id - y.id);
    assert.deepEqual(rings, [
      { start: BigInt(`0x${ready[2]}`), id: 1, head: 6, tail: 8, kind: "aio" },
      { start: BigInt(`0x${ready[3]}`), id: 2, head: 0, tail: 4, kind: "aio" },
    ]);
    assert.deepEqual(aioMaps(t.pid), before);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, RING_CHECKS, await t.wait(20000));
  }),
);

Deno.test(
  "AIO: a leaveRunning dump leaves the rings as they were",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_aio", READY, {
      passWork: true,
      extra: ["rings"],
    });
    await checkpoint(t.pid, { dir: await tempImageDir(), leaveRunning: true });
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, RING_CHECKS, await t.wait(20000));
  }),
);

Deno.test(
  "AIO: a request in flight is refused at dump, and the context is left untouched",
  withTargets(async () => {
    const { t, trigger } = await startTriggered(
      "rt_aio",
      /^ready pid=(\d+) a=([0-9a-f]+)$/m,
      { passWork: true, extra: ["inflight"] },
    );
    await assert.rejects(
      async () => await checkpoint(t.pid, { dir: await tempImageDir() }),
      (e: unknown) =>
        e instanceof UnsupportedError &&
        /AIO context 0x[0-9a-f]+ .*AIO requests submitted and not completed.*: 1 request\(s\)/
          .test(e.message),
    );
    assert.equal(t.poll(), undefined, "still running");
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, ["ring-untouched", "poll-event", "ring-after"], await t.wait(20000));
  }),
);

Deno.test(
  "AIO: a ring mapping inherited across fork is refused at dump",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered(
      "rt_aio",
      /^ready pid=(\d+) child=(\d+) a=([0-9a-f]+)$/m,
      { passWork: true, extra: ["fork"] },
    );
    const child = Number(ready[2]);
    adoptPid(child);
    await assert.rejects(
      async () => await checkpoint(t.pid, { dir: await tempImageDir() }),
      (e: unknown) =>
        e instanceof UnsupportedError &&
        new RegExp(`process ${child} AIO context 0x${ready[3]} .*without their context`)
          .test(e.message),
    );
    assert.equal(t.poll(), undefined, "still running");
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, ["submit", "reap", "child"], await t.wait(20000));
  }),
);
