/**
 * engine/dump/copy_lanes.ts: a page copy cut into segments and taken by two
 * lanes (this thread and a worker) writes exactly the file and the block
 * CRCs of the same copy made by one lane from start to end
 * (engine/dump/precopy_copy.ts `copyPlanned`): the test copies runs of its
 * own memory (a pattern, runs of odd lengths crossing segment and block
 * boundaries, two files) both ways and compares the files byte for byte,
 * the block CRCs (also against a CRC of each block read back), the ends
 * and the runs copied; with the worker alone, and with both lanes taking
 * segments. A segment that fails in the worker (its file full) fails the
 * copy (and the lanes stay usable); one of a process gone copies nothing
 * and reports its bytes lost. A tree pre-copied on two lanes (`CRYO_COPY_LANES=2`)
 * records block CRCs that match its files and restores with every
 * process's memory; cryo killed during a two-lane pre-copy leaves no image
 * and no tracking.
 */

import assert from "node:assert/strict";
import { CopyLanes, lanesAvailable } from "../engine/dump/copy_lanes.ts";
import { claimSegment, stopClaims } from "../engine/dump/lane_claims.ts";
import { copyPlanned, segmentJobs } from "../engine/dump/precopy_copy.ts";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { decodeBlockCrcs, pageBlocksProblem } from "../engine/image/page_blocks.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { assertLoadReports, startLoadTree } from "./helpers/load.ts";
import { tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";
import {
  assertSameFiles,
  assertSameResult,
  blocksOf,
  jobOf,
  MiB,
  PAGE,
  patterned,
  RUNS,
} from "./helpers/copy_jobs.ts";

Deno.test("segments start at block boundaries and cover the job in file order", () => {
  const job = jobOf(1n << 32n, "/nonexistent", 12288, 0);
  const segs = segmentJobs([job, { ...job, pagesStart: 4096 }], MiB);
  const total = RUNS.reduce((n, [, c]) => n + c * PAGE, 0);
  for (const j of [0, 1]) {
    const mine = segs.filter((s) => s.job === j);
    const start = j === 0 ? 12288 : 4096;
    assert.equal(mine.reduce((n, s) => n + s.bytes, 0), total);
    mine.forEach((s, k) => {
      assert.equal(s.fileOffset, start + k * MiB);
      if (k < mine.length - 1) assert.equal(s.bytes, MiB);
      assert.equal(s.planned.flatMap((p) => p.runs).reduce((n, r) => n + r.length, 0), s.bytes);
    });
  }
  assert.throws(() => segmentJobs([job], 4096), /segment size/);
});

Deno.test("a second lane only with an idle CPU: two CPUs, CPU pressure and load low", () => {
  assert.equal(lanesAvailable({ cpus: 2, load1: 0.4, pressure10: 3 }), true);
  assert.equal(lanesAvailable({ cpus: 2, load1: 0.4 }), true);
  assert.equal(lanesAvailable({ cpus: 2, load1: 2.5 }), false);
  assert.equal(lanesAvailable({ cpus: 2, load1: 2.5, pressure10: 5 }), true);
  assert.equal(lanesAvailable({ cpus: 2, load1: 4.5, pressure10: 5 }), false);
  assert.equal(lanesAvailable({ cpus: 1, load1: 0.1, pressure10: 0 }), false);
  assert.equal(lanesAvailable({ cpus: 2, load1: 0.4, pressure10: 80 }), false);
  // The pressure since the command started, when known, rules over the 10-second average.
  assert.equal(lanesAvailable({ cpus: 2, load1: 1.5, pressure10: 60, pressureRecent: 5 }), true);
  assert.equal(lanesAvailable({ cpus: 2, load1: 0.4, pressure10: 5, pressureRecent: 70 }), false);
  assert.equal(lanesAvailable({ cpus: 2, load1: 4.5, pressure10: 5, pressureRecent: 5 }), false);
});

Deno.test("the lanes claim from opposite ends, each segment once; a stop says what is left", () => {
  const ctl = new Int32Array(new SharedArrayBuffer(8));
  ctl[0] = 5 << 16;
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((k) => claimSegment(ctl, k % 2 === 1)), [
    0,
    4,
    1,
    3,
    2,
    -1,
  ]);
  ctl[0] = 6 << 16;
  assert.equal(claimSegment(ctl, false), 0);
  assert.equal(claimSegment(ctl, true), 5);
  assert.deepEqual(stopClaims(ctl), [1, 5]);
  assert.equal(claimSegment(ctl, false), -1);
  assert.equal(claimSegment(ctl, true), -1);
});

Deno.test("two copy lanes write the same files and block CRCs as one", async () => {
  const { buf, addr } = patterned(16);
  const dir = await Deno.makeTempDir({ prefix: "cryo-lanes-" });
  const lanes = CopyLanes.start(true);
  assert.ok(lanes, "the worker lane started");
  try {
    const serial = [
      await copyPlanned(jobOf(addr, `${dir}/one-a`, 12288, 0)),
      await copyPlanned(jobOf(addr, `${dir}/one-b`, 8192, 7)),
    ];
    for (const mode of ["worker alone", "both lanes"] as const) {
      const jobs = [jobOf(addr, `${dir}/two-a`, 12288, 0), jobOf(addr, `${dir}/two-b`, 8192, 7)];
      const got = await lanes.copy(jobs, {
        minBytes: 0,
        segmentBytes: MiB,
        mainLane: mode === "both lanes",
      });
      assert.ok(lanes.last.segments > 4, "several segments");
      if (mode === "worker alone") assert.equal(lanes.last.byWorker, lanes.last.segments);
      for (const [k, name] of [[0, "a"], [1, "b"]] as const) {
        const what = `${mode}, file ${name}`;
        assertSameResult(got[k], serial[k], what);
        assertSameFiles(`${dir}/one-${name}`, `${dir}/two-${name}`, what);
        assert.deepEqual(
          got[k].blockCrcs,
          blocksOf(`${dir}/two-${name}`, jobs[k].pagesStart, got[k].pagesEnd),
          `${what}: block CRCs of the file`,
        );
      }
    }
    // The pattern really is in the file (not, say, zeros in both).
    const file = Deno.readFileSync(`${dir}/two-a`);
    assert.deepEqual(file.subarray(12288, 12288 + 3 * PAGE), buf.subarray(0, 3 * PAGE));
  } finally {
    lanes.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a segment that fails in the worker lane fails the copy, one of a process gone is lost; the lanes stay usable", async () => {
  const { addr } = patterned(4);
  const dir = await Deno.makeTempDir({ prefix: "cryo-lanes-" });
  const lanes = CopyLanes.start(true)!;
  try {
    const full = jobOf(addr, "/dev/full", 4096, 0); // its writes fail (ENOSPC)
    await assert.rejects(
      () => lanes.copy([full], { minBytes: 0, segmentBytes: MiB, mainLane: false }),
      /copy lane/,
    );
    await assert.rejects(() => lanes.copy([full], { minBytes: 0, segmentBytes: MiB }));
    // A process gone is no failure: nothing copied, every byte lost (the pre-copy drops it).
    const gone = { ...jobOf(addr, `${dir}/gone`, 4096, 0), pid: 0x3ffffff0 };
    const lost = await lanes.copy([gone], { minBytes: 0, segmentBytes: MiB, mainLane: false });
    assert.deepEqual(lost[0].copied, []);
    assert.equal(lost[0].lostBytes, gone.planned[0].runs.reduce((n, r) => n + r.length, 0));
    const ok = jobOf(addr, `${dir}/ok`, 4096, 0);
    ok.planned[0].runs = ok.planned[0].runs.slice(0, 3);
    const got = await lanes.copy([ok], { minBytes: 0, segmentBytes: MiB, mainLane: false });
    assert.equal(got[0].bytes, (3 + 300 + 1) * PAGE);
  } finally {
    lanes.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a worker lane that dies mid-segment: what it left is copied here, the same files and CRCs", async () => {
  const { addr } = patterned(16);
  const dir = await Deno.makeTempDir({ prefix: "cryo-lanes-" });
  const lost = CopyLanes.lost;
  Deno.env.set("CRYO_TEST_LANE_DIE", "2"); // read by the worker as it loads
  const lanes = CopyLanes.start(true)!;
  try {
    const serial = await copyPlanned(jobOf(addr, `${dir}/one`, 12288, 0));
    const job = jobOf(addr, `${dir}/two`, 12288, 0);
    // The worker alone: it copies one segment, writes part of the second and dies.
    const got = await lanes.copy([job], { minBytes: 0, segmentBytes: MiB, mainLane: false });
    assert.equal(CopyLanes.lost, lost + 1, "the worker died");
    assert.equal(lanes.last.byWorker, 1, "the worker answered one segment");
    assertSameResult(got[0], serial, "after the death");
    const one = Deno.readFileSync(`${dir}/one`);
    const two = Deno.readFileSync(`${dir}/two`);
    assert.equal(two.length, one.length, "size");
    assert.ok(one.every((b, i) => b === two[i]), "same bytes");
    assert.deepEqual(got[0].blockCrcs, blocksOf(`${dir}/two`, 12288, got[0].pagesEnd));
    // The lanes without their worker: this thread copies alone.
    const again = await lanes.copy([jobOf(addr, `${dir}/three`, 12288, 0)], {
      minBytes: 0,
      segmentBytes: MiB,
    });
    assert.equal(lanes.last.byWorker, 0);
    assertSameResult(again[0], serial, "without the worker");
  } finally {
    Deno.env.delete("CRYO_TEST_LANE_DIE");
    lanes.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Runs `body` with CRYO_COPY_LANES=2 (cryo's own dumps and the CLIs it starts). */
async function withTwoLanes(body: () => Promise<void>): Promise<void> {
  Deno.env.set("CRYO_COPY_LANES", "2");
  try {
    await body();
  } finally {
    Deno.env.delete("CRYO_COPY_LANES");
  }
}

for (const dies of [false, true]) {
  Deno.test(
    dies
      ? "a tree pre-copied on two lanes whose worker dies mid-copy: the dump completes and restores"
      : "a tree pre-copied on two lanes records block CRCs of its files and restores with its memory",
    withTargets(() =>
      withTwoLanes(async () => {
        // CRYO_TEST_LANE_DIE: the worker dies in its second segment, cryo's lane copies the rest.
        if (dies) Deno.env.set("CRYO_TEST_LANE_DIE", "2");
        const lost = CopyLanes.lost;
        const tree = await startLoadTree(3, 2, 6 * 1024);
        const { t, trigger } = tree;
        const dir = await tempImageDir();
        const dump = await checkpoint(t.pid, {
          dir,
          leaveRunning: true,
          precopy: true,
          sync: false,
        }).finally(() => Deno.env.delete("CRYO_TEST_LANE_DIE"));
        assert.ok((dump.stats.precopy?.bytes ?? 0) >= 3 * 12 * MiB, "the tree was pre-copied");
        assert.equal(CopyLanes.lost, lost + (dies ? 1 : 0), "the worker died or lived as told");
        assert.equal(t.poll(), undefined, "the tree still runs");
        for (const e of dump.manifest.processes) {
          const path = `${dir}/${e.file}`;
          const info = await readImageFile(path);
          const pb = e.pageBlocks;
          assert.ok(pb, `pageBlocks of ${e.pid}`);
          const size = (await Deno.stat(path)).size;
          assert.equal(pageBlocksProblem(pb, info.pagesSection, size), undefined);
          const crcs = decodeBlockCrcs(pb.crcs) as Uint32Array;
          assert.deepEqual([...crcs], blocksOf(path, pb.offset, pb.offset + pb.length));
        }
        // The original checks itself and exits; the image then restores the tree.
        await Deno.writeTextFile(trigger, "");
        assertChecksPassed(t, ["children", "root"], await t.wait(60000), { what: "original" });
        const restored = await restore(dir);
        t.resetAfterRestore();
        for (const pid of restored.pids) if (pid !== t.pid) adoptPid(pid);
        assertChecksPassed(t, ["children", "root"], await t.wait(60000), {
          run: 2,
          what: "restored",
        });
        assertLoadReports(tree);
      })
    ),
  );
}
