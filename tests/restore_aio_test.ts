/**
 * Native AIO contexts (tests/targets/rt_aio.c): three contexts with
 * completed events not reaped (one with 100 of them, submitted from two
 * CPUs), and a gap in the kernel's ids, come back at the same addresses
 * with the same ids, ring sizes, head, tail and events, and take new
 * requests; a process waiting in io_getevents gets its event after the
 * restore (the freeze interrupts the wait once, with EINTR, as a signal
 * would); a `leaveRunning` dump leaves the rings byte for byte as they
 * were; a context with a request in flight, and a ring mapping inherited
 * across fork, are refused at dump, naming them, with the tree left
 * running and the ring untouched. The io_setup count chosen for a ring
 * size is checked against the kernel.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";
import { processVmReadFully } from "../ffi/process_vm.ts";
import { decodeAioRingHeader } from "../ffi/aio.ts";
import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";
import { nrEventsFor, ringPagesFor, ringSlots } from "../engine/memory/aio.ts";

const READY = /^ready pid=(\d+) a=([0-9a-f]+) b=([0-9a-f]+) c=([0-9a-f]+)$/m;

const RING_CHECKS = [
  "a-ring",
  "b-ring",
  "c-ring",
  "c-pending",
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
  "destroy-c",
  "destroyed",
];

/** Every byte of the AIO rings of a process, by address. */
function ringBytes(pid: number): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const l of Deno.readTextFileSync(`/proc/${pid}/maps`).split("\n")) {
    if (!l.includes("[aio]")) continue;
    const [start, end] = l.split(" ")[0].split("-").map((x) => BigInt(`0x${x}`));
    const buf = new Uint8Array(Number(end - start));
    processVmReadFully(pid, start, buf);
    out.set(start.toString(16), buf);
  }
  return out;
}

/**
 * The AIO ring lines of a process's smaps, without the device and inode
 * columns, each with its VmFlags.
 */
function aioMaps(pid: number): string[] {
  const out: string[] = [];
  let ring: string | undefined;
  for (const l of Deno.readTextFileSync(`/proc/${pid}/smaps`).split("\n")) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(l)) {
      ring = l.includes("[aio]")
        ? l.split(/\s+/).filter((_, i) => i !== 3 && i !== 4).join(" ")
        : undefined;
    } else if (ring && l.startsWith("VmFlags:")) out.push(`${ring} ${l}`);
  }
  return out;
}

Deno.test(
  "AIO: contexts, ids, ring sizes and unreaped events survive a round trip",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_aio", READY, {
      passWork: true,
      extra: ["rings"],
    });
    const before = aioMaps(t.pid);
    assert.equal(before.length, 3, before.join("\n"));
    assert.equal(before.filter((l) => /VmFlags:.* dd\b/.test(l)).length, 1, "ring a has dd");
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
      { start: BigInt(`0x${ready[4]}`), id: 3, head: 10, tail: 110, kind: "aio" },
    ]);
    assert.deepEqual(aioMaps(t.pid), before);
    // The restored contexts dump again (no request counts as in flight), untouched.
    const restored = ringBytes(t.pid);
    await checkpoint(t.pid, { dir: await tempImageDir(), leaveRunning: true });
    assert.deepEqual(ringBytes(t.pid), restored);
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
    const rings = ringBytes(t.pid);
    assert.equal(rings.size, 3);
    await checkpoint(t.pid, { dir: await tempImageDir(), leaveRunning: true });
    assert.deepEqual(ringBytes(t.pid), rings);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, RING_CHECKS, await t.wait(20000));
  }),
);

Deno.test(
  "AIO: a context whose process waits in io_getevents comes back, and the wait completes",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_aio", /^ready pid=(\d+) a=([0-9a-f]+)$/m, {
      passWork: true,
      extra: ["wait"],
    });
    await dumpKillRestore(t);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, ["waited-event", "waited-ring"], await t.wait(20000));
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
    const rings = ringBytes(t.pid);
    await assert.rejects(
      async () => await checkpoint(t.pid, { dir: await tempImageDir() }),
      (e: unknown) =>
        e instanceof UnsupportedError &&
        /AIO context 0x[0-9a-f]+ .*AIO requests submitted and not completed.*: 1 request\(s\)/
          .test(e.message),
    );
    assert.equal(t.poll(), undefined, "still running");
    assert.deepEqual(ringBytes(t.pid), rings);
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

Deno.test("AIO: the io_setup count chosen for a ring size makes that size (formula and kernel)", () => {
  for (let cpus = 1; cpus <= 256; cpus *= 2) {
    for (let pages = ringPagesFor(1, cpus); pages < 80; pages++) {
      assert.equal(
        ringPagesFor(nrEventsFor(pages, cpus), cpus),
        pages,
        `${pages} pages, ${cpus} CPUs`,
      );
      if (nrEventsFor(pages, cpus) > 1) {
        assert.ok(ringPagesFor(nrEventsFor(pages, cpus) - 1, cpus) < pages, "the smallest count");
      }
    }
  }
  // This host's kernel, in this process: the ring's size and header.
  const cpus = Deno.readTextFileSync("/sys/devices/system/cpu/possible").trim();
  const possible = cpus.split(",").reduce((n, part) => {
    const [a, b] = part.split("-").map(Number);
    return n + (b ?? a) - a + 1;
  }, 0);
  for (const pages of [ringPagesFor(1, possible), 2, 3, 5, 9]) {
    if (pages < ringPagesFor(1, possible)) continue;
    const ctx = new BigUint64Array(1);
    assert.equal(rawSyscall(SYS.io_setup, nrEventsFor(pages, possible), ctx), 0n);
    try {
      const header = new Uint8Array(32);
      processVmReadFully(Deno.pid, ctx[0], header);
      assert.equal(decodeAioRingHeader(header).nr, ringSlots(pages));
      const line = Deno.readTextFileSync("/proc/self/maps").split("\n")
        .find((l) => l.startsWith(`${ctx[0].toString(16)}-`))!;
      const [start, end] = line.split(" ")[0].split("-").map((x) => BigInt(`0x${x}`));
      assert.equal(Number(end - start), pages * 4096);
    } finally {
      assert.equal(rawSyscall(SYS.io_destroy, ctx[0]), 0n);
    }
  }
});
