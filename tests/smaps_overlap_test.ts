/**
 * The collect reads VmFlags from smaps on another thread, after its
 * injected calls (engine/dump/vm_flags.ts). These tests prove that an area
 * of the injection never reaches the recorded mappings: an smaps read while
 * an injected page is mapped (kernel-chosen, anonymous, read-write: it may
 * be a new area or merged into a neighbour) does not match the areas read
 * at the freeze and is refused; the one read once the session is over
 * matches them exactly; and the collect of a frozen target records exactly
 * the areas and VmFlags the target had before it was frozen.
 */

import assert from "node:assert/strict";
import {
  flagsOfMaps,
  readSmapsFlags,
  readSmapsFlagsOffThread,
  type SmapsArea,
} from "../engine/proc/smaps_flags.ts";
import { ProcFormatError } from "../engine/proc/errors.ts";
import { freezeTree, thawTree } from "../engine/dump/freeze.ts";
import { withInjection } from "../engine/dump/injected.ts";
import { mapsWithoutFlags, smapsOverlap } from "../engine/dump/vm_flags.ts";
import { collectProcess, pipeTopology, readFds } from "../engine/dump/process.ts";
import { awaitVmFlags, vmFlagsPaths } from "../engine/dump/vm_flags.ts";
import { Refusals } from "../engine/support.ts";
import { SYS } from "../ffi/sysno.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { withTargets } from "./helpers/targets.ts";

const heads = (areas: SmapsArea[]) => areas.map(({ vmFlags: _f, ...rest }) => rest);

Deno.test("smaps overlap: an area more, one less, or one grown is refused", () => {
  const area = (start: bigint, end: bigint, flags = ["rd", "wr"]): SmapsArea => ({
    start,
    end,
    perms: "rw-p",
    offset: 0n,
    dev: "00:00",
    inode: 0,
    path: "",
    deleted: false,
    vmFlags: flags,
  });
  const maps = [area(0x1000n, 0x3000n), area(0x5000n, 0x6000n)];
  assert.deepEqual(flagsOfMaps(1, maps, [area(0x1000n, 0x3000n, ["rd"]), area(0x5000n, 0x6000n)]), [
    ["rd"],
    ["rd", "wr"],
  ]);
  for (
    const smaps of [
      [area(0x1000n, 0x3000n), area(0x3000n, 0x4000n), area(0x5000n, 0x6000n)], // a page of its own
      [area(0x1000n, 0x4000n), area(0x5000n, 0x6000n)], // merged into the area below it
      [area(0x1000n, 0x3000n)], // an area gone
      [area(0x1000n, 0x3000n), { ...area(0x5000n, 0x6000n), path: "[anon:x]" }],
    ]
  ) {
    assert.throws(() => flagsOfMaps(1, maps, smaps), ProcFormatError);
  }
});

Deno.test(
  "smaps overlap: the injection's page is refused while mapped, and absent once the session ends",
  withTargets(async () => {
    const { t } = await startTriggered("rt_memflags", /^ready pid=(\d+)/m, { extra: [] });
    const before = readSmapsFlags(t.pid);
    const tree = freezeTree(t.pid);
    try {
      const maps = mapsWithoutFlags(t.pid);
      assert.deepEqual(heads(maps), heads(before), "maps at the freeze");
      let during: SmapsArea[] = [];
      let page = 0n;
      withInjection(
        t.pid,
        (s) => {
          // As the scratch's fallback and the mlockall probe map theirs.
          page = s.check(t.pid, "mmap", SYS.mmap, 0, 4096, 3, 0x22, -1, 0);
          during = readSmapsFlags(t.pid);
          s.call(t.pid, SYS.munmap, page, 4096);
        },
        undefined,
        maps,
      );
      // The page shows in smaps while mapped: in an area the target did not have.
      const holder = during.find((a) => a.start <= page && page < a.end);
      assert.ok(holder, "the injected page shows in smaps while mapped");
      assert.ok(
        !before.some((a) => a.start === holder.start && a.end === holder.end),
        "in an area of its own or a grown one",
      );
      assert.throws(() => flagsOfMaps(t.pid, maps, during), /changed while frozen/);
      const after = await readSmapsFlagsOffThread(t.pid);
      assert.deepEqual(flagsOfMaps(t.pid, maps, after), before.map((a) => a.vmFlags));
    } finally {
      thawTree(tree);
    }
    await t.kill();
  }),
);

Deno.test(
  "smaps overlap: the collect records exactly the target's areas and VmFlags",
  withTargets(async () => {
    const min = smapsOverlap.minRssBytes;
    smapsOverlap.minRssBytes = 0; // the overlapped path, with a small target
    try {
      await collectBoth();
    } finally {
      smapsOverlap.minRssBytes = min;
    }
  }),
);

/** Collects rt_memflags (two variants) frozen and compares with its smaps before the freeze. */
async function collectBoth(): Promise<void> {
  for (const extra of [[], ["future-onfault"]]) {
    const { t } = await startTriggered("rt_memflags", /^ready pid=(\d+)/m, { extra });
    const before = readSmapsFlags(t.pid);
    const tree = freezeTree(t.pid);
    try {
      const p = tree.processes[0];
      const fds = readFds(p.pid);
      const collected = collectProcess(
        p.pid,
        p.threads,
        p.children,
        fds,
        pipeTopology([{ pid: p.pid, fds }]),
        new Refusals(),
      );
      assert.ok(collected.vmFlags, "flags read on another thread");
      const image = { ...collected.image };
      await awaitVmFlags([{ collected, image }]);
      assert.deepEqual(heads(collected.vmas as SmapsArea[]), heads(before));
      // The dump drops its own tracking's "uw" only; nothing here is tracked.
      assert.deepEqual(collected.vmas.map((v) => v.vmFlags), before.map((a) => a.vmFlags));
      assert.deepEqual(
        image.mappings.map((m) => [BigInt(m.start), BigInt(m.end), m.vmFlags]),
        before.map((a) => [a.start, a.end, a.vmFlags]),
      );
      assert.deepEqual(readSmapsFlags(t.pid), before, "the target's areas after the collect");
    } finally {
      thawTree(tree);
    }
    await t.kill();
  }
}

Deno.test(
  "smaps overlap: rt_memflags dumped on the overlapped path comes back with every flag",
  withTargets(async () => {
    const min = smapsOverlap.minRssBytes;
    smapsOverlap.minRssBytes = 0;
    Deno.env.set("CRYO_VMFLAGS", "smaps"); // not the BPF iterator (tests/vma_flags_bpf_test.ts)
    try {
      const { t, trigger } = await startTriggered("rt_memflags", /^ready pid=(\d+)$/m, {
        extra: [],
      });
      const { dump } = await dumpKillRestore(t);
      assert.equal(dump.stats.processes, 1);
      assert.equal(vmFlagsPaths.get(t.pid), "smaps: not checked");
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(
        t,
        ["maps-and-flags", "vmlck", "contents", "guard-pages"],
        await t.wait(15000),
        {
          what: "rt_memflags",
        },
      );
    } finally {
      smapsOverlap.minRssBytes = min;
      Deno.env.delete("CRYO_VMFLAGS");
    }
  }),
);
