/**
 * Memory shared across fork survives as shared memory:
 *
 * - tests/targets/rt_cow.c: pages a parent and its (not exec'ed) child
 *   still share copy-on-write are stored once, in the parent's image, and
 *   after the restore are again one page frame for both (pagemap from the
 *   outside, and the Pss of the two), while each keeps its own changes;
 * - tests/targets/rt_shmem.c: MAP_SHARED|MAP_ANONYMOUS memory created
 *   before the forks stays one object for parent, child and grandchild:
 *   each sees the others' writes after the restore. Moved to another
 *   address in the child, it is refused at dump (the tree runs on), as is
 *   a child sharing the whole address space (CLONE_VM);
 * - a python3 process and the child it forked come back the same way and
 *   count on, their data intact.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { readPagemap } from "../engine/proc/pagemap.ts";
import { assertChecksPassed, RT_COW_CHECKS, RT_COW_READY } from "./helpers/checks.ts";
import { pathExists } from "./helpers/fs.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";
import { waitUntil } from "./helpers/wait.ts";

const MiB = 1 << 20;
const PAGE = 4096;

/** Pages of [start, start + pages) that are the same present frame in both processes. */
function sameFrames(a: number, b: number, start: bigint, pages: number): number {
  const ea = readPagemap(a, start, start + BigInt(pages * PAGE));
  const eb = readPagemap(b, start, start + BigInt(pages * PAGE));
  let n = 0;
  for (let i = 0; i < pages; i++) {
    if (ea.present(i) && eb.present(i) && ea.pfn(i) !== 0 && ea.pfn(i) === eb.pfn(i)) n++;
  }
  return n;
}

/** Pss of a whole process in bytes (smaps_rollup). */
function pss(pid: number): number {
  const m = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`).match(/^Pss:\s+(\d+) kB$/m);
  assert.ok(m, "no Pss in smaps_rollup");
  return Number(m[1]) * 1024;
}

async function savedBytes(path: string): Promise<number> {
  const image = await readImageFile(path);
  return image.process.mappings.reduce((n, m) => n + m.pages.reduce((k, r) => k + r.length, 0), 0);
}

Deno.test(
  "pages shared copy-on-write across fork are stored once and shared again after restore",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_cow", RT_COW_READY, { passWork: true });
    const child = Number(ready[2]);
    const region = BigInt(`0x${ready[3]}`);
    const pages = Number(ready[4]);
    // Pages 30.. are written by neither since the fork (the child locked and
    // write-protected the last 8: measured without them).
    const untouched = pages - 30 - 8;
    assert.equal(sameFrames(t.pid, child, region + 30n * 4096n, untouched), untouched);

    const { dir, tree, dump } = await dumpKillRestore(t);
    assert.deepEqual([...tree.pids].sort(), [t.pid, child].sort());
    const shared = dump.stats.sharedBytes ?? 0;
    assert.ok(shared >= untouched * PAGE, `the dump reports ${shared} bytes shared`);
    const parentBytes = await savedBytes(`${dir}/${t.pid}.elf`);
    const childBytes = await savedBytes(`${dir}/${child}.elf`);
    assert.ok(parentBytes >= pages * PAGE, `parent image holds only ${parentBytes} bytes`);
    assert.ok(childBytes < 2 * MiB, `child image holds ${childBytes} bytes: sharing not detected`);
    const childImage = (await readImageFile(`${dir}/${child}.elf`)).process;
    assert.equal(childImage.inheritsMemory, true);
    const inherited = childImage.mappings.find((m) => BigInt(m.start) === region);
    assert.ok(inherited?.inherited, "the region is not marked inherited");
    // Its read-only piece too (part of the parent's one mapping); not the locked
    // piece: mlock of writable private memory breaks copy-on-write, nothing is shared.
    const end = region + BigInt(pages * PAGE);
    const pieces = childImage.mappings.filter((m) =>
      BigInt(m.start) >= region && BigInt(m.end) <= end
    );
    assert.deepEqual(pieces.map((m) => [m.perms, m.vmFlags.includes("lo"), m.inherited]), [
      ["rw-p", false, true],
      ["rw-p", true, undefined],
      ["r--p", false, true],
    ]);
    // Stored for the child: the 10 pages it wrote and the 10 it kept while the parent wrote.
    assert.equal(inherited.pages.reduce((n, r) => n + r.length, 0), 20 * PAGE);
    assert.equal(inherited.discard?.reduce((n, r) => n + r.length, 0), 10 * PAGE);

    // One frame for both again, from the outside; the changed pages are not shared.
    assert.equal(sameFrames(t.pid, child, region + 30n * 4096n, untouched), untouched);
    assert.equal(sameFrames(t.pid, child, region, 30), 0);
    const both = pss(t.pid) + pss(child);
    assert.ok(both < pages * PAGE * 1.5, `Pss of both ${both} bytes: the region is not shared`);

    // Checkpointed again, the restored pair still shares: the child's image stays small.
    const again = await tempImageDir();
    await checkpoint(t.pid, { dir: again, leaveRunning: true, precopy: true });
    const childAgain = await savedBytes(`${again}/${child}.elf`);
    assert.ok(childAgain < 2 * MiB, `second dump: child image holds ${childAgain} bytes`);

    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, RT_COW_CHECKS, await t.wait(20000));
  }),
);

const SHMEM_READY = /^ready pid=(\d+) child=(\d+) grandchild=(\d+) shm=0x([0-9a-f]+)$/m;

Deno.test(
  "shared anonymous memory stays one object for parent, child and grandchild",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_shmem", SHMEM_READY);
    const { dir, tree } = await dumpKillRestore(t);
    const pids = [t.pid, Number(ready[2]), Number(ready[3])];
    assert.deepEqual([...tree.pids].sort(), [...pids].sort());
    // The shared pages are in the parent's image only.
    const shm = BigInt(`0x${ready[4]}`);
    for (const pid of pids.slice(1)) {
      const image = (await readImageFile(`${dir}/${pid}.elf`)).process;
      const m = image.mappings.find((x) => BigInt(x.start) === shm);
      assert.ok(m?.inherited && m.pages.length === 0, `process ${pid}: shm not inherited`);
    }
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, [
      "before",
      "child-sees-parent",
      "grandchild-sees-child",
      "parent-sees-grandchild",
      "child",
    ], await t.wait(20000));
  }),
);

Deno.test(
  "shared anonymous memory moved to another address in the child (its child inheriting it there) stays one object",
  withTargets(async () => {
    // Refused at dump before (shared other than by inheritance at the same address).
    const { t, trigger, ready } = await startTriggered("rt_shmem", SHMEM_READY, {
      extra: ["moved"],
    });
    const { dir, tree } = await dumpKillRestore(t);
    const pids = [t.pid, Number(ready[2]), Number(ready[3])];
    assert.deepEqual([...tree.pids].sort(), [...pids].sort());
    // The child maps the parent's object at its own address; the grandchild inherits it there.
    const child = (await readImageFile(`${dir}/${pids[1]}.elf`)).process;
    const moved = child.mappings.filter((x) => x.kind === "anon-shared");
    assert.equal(moved.length, 1);
    assert.ok(moved[0].shmemObject?.inParent, JSON.stringify(moved[0].shmemObject));
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, [
      "before",
      "child-sees-parent",
      "grandchild-sees-child",
      "parent-sees-grandchild",
      "child",
    ], await t.wait(20000));
  }),
);

Deno.test(
  "a child sharing its parent's whole address space (CLONE_VM) is refused at dump",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_cow", RT_COW_READY, {
      passWork: true,
      extra: ["clonevm"],
    });
    const dir = await tempImageDir();
    await assert.rejects(
      () => checkpoint(t.pid, { dir }),
      (e: unknown) => {
        assert.ok(e instanceof UnsupportedError, String(e));
        assert.deepEqual(e.items, [
          `processes ${t.pid} and ${
            ready[2]
          } share one address space: memory shared by processes (CLONE_VM without CLONE_THREAD, vfork): not restored yet`,
        ]);
        return true;
      },
    );
    assert.ok(!pathExists(dir), "a refused dump left its directory");
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, ["child"], await t.wait(20000));
  }),
);

/** A python3 parent that builds a list, forks, and both print "<who> <n> <sum>" lines. */
const PY_FORK = `
import os, sys, time
data = [i * i for i in range(200000)]
who = "c" if os.fork() == 0 else "p"
n = 0
while True:
    n += 1
    sys.stdout.write(f"{who} {n} {sum(data[::997])}\\n")
    sys.stdout.flush()
    time.sleep(0.05)
`;

/** The counters printed by `who` ("p" or "c"), checking each line's sum. */
function pyCounts(out: string, who: string): number[] {
  const lines = out.split("\n").filter((l) => l.startsWith(`${who} `));
  return lines.map((l) => {
    const [, n, sum] = l.split(" ");
    assert.equal(sum, "2670603980300", `bad sum in ${JSON.stringify(l)}`);
    return Number(n);
  });
}

Deno.test(
  "a python3 process and its forked child: the child is restored by inheritance and both count on",
  withTargets(async () => {
    const t = await startTarget("/usr/bin/python3", ["-c", PY_FORK]);
    await waitUntil(
      "both count",
      () => pyCounts(t.output(), "c").length >= 3 && pyCounts(t.output(), "p").length >= 3,
      30_000, // python's start-up on a loaded machine
    );
    const { dir, tree, dump } = await dumpKillRestore(t);
    assert.equal(tree.pids.length, 2);
    const child = tree.pids.find((p) => p !== t.pid)!;
    const childImage = (await readImageFile(`${dir}/${child}.elf`)).process;
    assert.equal(childImage.inheritsMemory, true);
    const parentBytes = await savedBytes(`${dir}/${t.pid}.elf`);
    const childBytes = await savedBytes(`${dir}/${child}.elf`);
    assert.ok(childBytes * 3 < parentBytes, `child ${childBytes} bytes, parent ${parentBytes}`);
    assert.ok((dump.stats.sharedBytes ?? 0) > 0);
    const at = { p: pyCounts(t.output(), "p").length, c: pyCounts(t.output(), "c").length };
    await waitUntil(
      "both count on",
      () =>
        pyCounts(t.output(), "p").length >= at.p + 3 &&
        pyCounts(t.output(), "c").length >= at.c + 3,
      30_000,
    );
    for (const who of ["p", "c"]) {
      const counts = pyCounts(t.output(), who);
      assert.deepEqual(counts, counts.map((_, i) => i + 1), `${who}: not consecutive`);
    }
  }),
);
