/**
 * The choice between a pre-copy and a fork snapshot for a one-process
 * `dump --leave-running` (engine/dump/snapshot_choice.ts): where page
 * table entry changes are costly (`CRYO_PTE_COST=costly`, else the
 * per-boot probe of ffi/pte_probe.ts) a tree whose pre-copy would pay is
 * frozen once and read from its snapshot, and its image is the memory as
 * of the freeze (tests/targets/rt_precopy.c checks itself after the dump
 * and after the restore); where they are cheap the pre-copy runs as
 * before; a tree the snapshot would be refused for (shared anonymous
 * memory, MADV_DONTFORK / MADV_WIPEONFORK areas) keeps its pre-copy.
 *
 * @module
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { forkSnapshotStats } from "../engine/dump/fork_snapshot.ts";
import {
  pteChangeCost,
  pteChangesCostly,
  snapshotChoiceStats,
  snapshotExpected,
} from "../engine/dump/snapshot_choice.ts";
import { pteChangeNs } from "../ffi/pte_probe.ts";
import { loadVmaIterator } from "../engine/proc/vma_flags_bpf.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";
import { assertOriginalThenRestored, RT_PRECOPY_READY } from "./helpers/tracking.ts";
import { MEMFLAGS_READY } from "./helpers/memflags.ts";

const MiB = 1024 * 1024;

/** Runs `fn` with CRYO_PTE_COST=`cost`. */
async function withPteCost<T>(cost: "costly" | "cheap", fn: () => Promise<T>): Promise<T> {
  Deno.env.set("CRYO_PTE_COST", cost);
  try {
    return await fn();
  } finally {
    Deno.env.delete("CRYO_PTE_COST");
  }
}

Deno.test("snapshot choice: the probe measures an entry change, once per boot", () => {
  const ns = pteChangeNs();
  assert.ok(ns !== undefined && Number.isFinite(ns) && ns > 0, `${ns} ns`);
  const first = pteChangeCost();
  assert.ok(first !== undefined && first > 0, `${first} ns`);
  const probes = snapshotChoiceStats.probes;
  assert.equal(pteChangeCost(), first, "remembered");
  assert.equal(snapshotChoiceStats.probes, probes, "not probed again");
  Deno.env.set("CRYO_PTE_COST", "cheap");
  try {
    assert.equal(pteChangesCostly(), false);
    Deno.env.set("CRYO_PTE_COST", "costly");
    assert.equal(pteChangesCostly(), true);
  } finally {
    Deno.env.delete("CRYO_PTE_COST");
  }
});

Deno.test(
  "snapshot choice: costly entry changes: a tree whose pre-copy pays is read from a snapshot, exactly",
  withTargets(async () => {
    // 48 MiB written all the time: a pre-copy pays (engine/dump/precopy_policy.ts).
    const { t, trigger } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["48"],
    });
    const cheapDir = await tempImageDir();
    const cheap = await withPteCost(
      "cheap",
      () => checkpoint(t.pid, { dir: cheapDir, leaveRunning: true, sync: false }),
    );
    assert.ok(cheap.stats.precopy, "cheap entry changes: pre-copied as before");
    const { made } = forkSnapshotStats;
    const { chosen } = snapshotChoiceStats;
    const dir = await tempImageDir();
    const dump = await withPteCost("costly", () => checkpoint(t.pid, { dir, leaveRunning: true }));
    assert.equal(dump.stats.precopy, undefined, "no pre-copy");
    assert.equal(snapshotChoiceStats.chosen, chosen + 1, "the snapshot chosen");
    assert.equal(forkSnapshotStats.made, made + 1, "the pages came from a snapshot");
    assert.ok(dump.stats.pagesBytes >= 48 * MiB, `${dump.stats.pagesBytes} bytes saved`);
    await assertOriginalThenRestored(t, trigger, dir);
  }),
);

Deno.test(
  "snapshot choice: no snapshot expected for shared anonymous memory or areas a fork does not copy",
  withTargets(async () => {
    const { t } = await startTriggered("rt_precopy", RT_PRECOPY_READY, { extra: ["16"] });
    assert.ok(snapshotExpected(t.pid, 64 * MiB, 10), "a private tree: expected");
    assert.ok(!snapshotExpected(t.pid, 64 * MiB, 64 * MiB), "too little per mapping");
    assert.ok(!snapshotExpected(t.pid, 2 ** 50, 1), "no room for its copies");
    const shared = await startTarget("rt_shanon", ["noview"]);
    await shared.waitFor(/^ready pid=/m);
    assert.ok(!snapshotExpected(shared.pid, 64 * MiB, 10), "shared anonymous memory");
    if (loadVmaIterator()) {
      const flags = await startTriggered("rt_memflags", MEMFLAGS_READY);
      assert.ok(!snapshotExpected(flags.t.pid, 64 * MiB, 10), "MADV_DONTFORK, MADV_WIPEONFORK");
    }
  }),
);
