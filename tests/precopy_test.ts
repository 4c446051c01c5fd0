/**
 * `dump --leave-running` copies the pages while the tree runs, tracking
 * writes (engine/dump/precopy.ts): tests/targets/rt_precopy.c rewrites
 * random pages of half its memory all the time, so the pre-copy holds stale
 * pages the dump must take again, and untouched ones it may keep.
 *
 * - the restored process finds every page matching its generation table
 *   (the image is its memory at the last freeze, not a mix of two times);
 * - the original keeps running with no trace of the tracking: the same fds,
 *   no userfaultfd flag on any mapping, no write-protected page, the same
 *   mappings; and it goes on writing and checks itself;
 * - the dump reports what it kept of the pre-copy (the untouched half);
 * - the same while the process also unmaps and maps again, or drops with
 *   MADV_DONTNEED, blocks of the other half (the layout changes between
 *   the two freezes);
 * - a process with a seccomp filter is left alone by the pre-copy;
 * - `cryo dump --leave-running` SIGKILLed in the middle of the pre-copy's
 *   page copy leaves no image and the process untouched (its tracking goes
 *   with cryo's copy of the userfaultfd).
 */

import assert from "node:assert/strict";
import { CopyLanes } from "../engine/dump/copy_lanes.ts";
import { besideStats } from "../engine/dump/precopy_lanes.ts";
import { NativeCopy, nativeLaneAvailable } from "../engine/dump/native_lane.ts";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";
import {
  assertNoTracking,
  assertOriginalThenRestored,
  RT_PRECOPY_CHECKS,
  RT_PRECOPY_READY,
  trackingTraces,
} from "./helpers/tracking.ts";
import { pathExists, tempDir } from "./helpers/fs.ts";
import { startPaused } from "./helpers/kill_anywhere.ts";
import { blocksOf } from "./helpers/copy_jobs.ts";
import { decodeBlockCrcs } from "../engine/image/page_blocks.ts";
import { checksumFile } from "../engine/image/writer.ts";

const PAGE = 4096;

// Also on two copy lanes: the tracking is then released on the lane's thread
// (engine/dump/precopy_lanes.ts releasePrecopy), on a copy of cryo's userfaultfd.
// And with the lane's worker dying when asked to release (CRYO_TEST_LANE_DIE=release):
// cryo's thread releases, and closes the worker's copy of the fd.
// And with a syscall table as the second lane (CRYO_COPY_LANES=native, engine/dump/native_lane.ts).
for (const [lanes, die] of [["", ""], ["2", ""], ["2", "release"], ["native", ""]]) {
  Deno.test(
    `dump --leave-running of a process writing its memory: pre-copied, exact at the last freeze, no trace left${
      lanes === "native" ? " (a syscall table's lane)" : lanes ? " (two copy lanes)" : ""
    }${die ? ", the lane's worker dying at the release" : ""}`,
    withTargets(async () => {
      const { t, trigger, ready } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
        extra: ["64"],
      });
      const region = BigInt(`0x${ready[2]}`), pages = Number(ready[3]);
      const before = trackingTraces(t.pid, region, pages);
      const dir = await tempImageDir();
      const uffds = () =>
        [...Deno.readDirSync("/proc/self/fd")].filter((e) => {
          try {
            return Deno.readLinkSync(`/proc/self/fd/${e.name}`) === "anon_inode:[userfaultfd]";
          } catch {
            return false;
          }
        }).length;
      const ownUffds = uffds();
      if (lanes) Deno.env.set("CRYO_COPY_LANES", lanes);
      if (die) Deno.env.set("CRYO_TEST_LANE_DIE", die);
      const lost = CopyLanes.lost;
      const tables = NativeCopy.started;
      const dump = await checkpoint(t.pid, { dir, leaveRunning: true, precopy: true }).finally(
        () => {
          Deno.env.delete("CRYO_COPY_LANES");
          Deno.env.delete("CRYO_TEST_LANE_DIE");
        },
      );
      assert.equal(CopyLanes.lost, lost + (die ? 1 : 0), "the worker died as told, or lived");
      if (lanes === "native" && nativeLaneAvailable()) {
        // One table, and a second one for the segments cryo's thread claimed (native_lane.ts).
        const started = NativeCopy.started - tables;
        assert.ok(started === 1 || started === 2, `${started} syscall tables copied the pages`);
      }
      assert.equal(uffds(), ownUffds, "cryo's copies of the userfaultfd closed");
      const pre = dump.stats.precopy;
      assert.ok(pre, "the dump pre-copied");
      assert.ok(pre.bytes >= pages * PAGE, `pre-copied ${pre.bytes} bytes`);
      // The cold half is kept from the pre-copy; the hot half was written meanwhile.
      assert.ok(pre.reusedBytes >= (pages / 2) * PAGE, `kept ${pre.reusedBytes} bytes`);
      assert.ok(pre.reusedBytes < pre.bytes, "some pre-copied pages were written and taken again");
      // The block CRCs (the pre-copy's, the blocks written over read back on a table's thread)
      // and the checksum are those of the file.
      for (const e of dump.manifest.processes) {
        const pb = e.pageBlocks;
        assert.ok(pb, `pageBlocks of ${e.pid}`);
        const crcs = [...(decodeBlockCrcs(pb.crcs) as Uint32Array)];
        assert.deepEqual(crcs, blocksOf(`${dir}/${e.file}`, pb.offset, pb.offset + pb.length));
        assert.equal(await checksumFile(`${dir}/${e.file}`), e.checksum, "the image's checksum");
      }

      const after = trackingTraces(t.pid, region, pages);
      assert.deepEqual(after.fds, before.fds, "the same fds after the dump");
      assert.equal(after.maps, before.maps, "the same mappings after the dump");
      assertNoTracking(after);

      await assertOriginalThenRestored(t, trigger, dir);
    }),
  );
}

Deno.test(
  "dump --leave-running while the process remaps and drops parts of its memory: exact at the last freeze",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["64", "churn"],
    });
    const region = BigInt(`0x${ready[2]}`), pages = Number(ready[3]);
    const dir = await tempImageDir();
    const dump = await checkpoint(t.pid, { dir, leaveRunning: true, precopy: true });
    assert.ok(dump.stats.precopy, "the dump pre-copied");
    const after = trackingTraces(t.pid, region, pages);
    assertNoTracking(after);
    await assertOriginalThenRestored(t, trigger, dir);
  }),
);

Deno.test(
  "a process with a seccomp filter is not pre-copied (the injected userfaultfd could kill it)",
  withTargets(async () => {
    const { t } = await startTriggered("rt_attrs", /^ready pid=(\d+)$/m);
    const dir = await tempImageDir();
    const dump = await checkpoint(t.pid, { dir, leaveRunning: true, precopy: true });
    assert.equal(dump.stats.precopy?.bytes, 0, "nothing pre-copied");
    assert.equal(t.poll(), undefined, "the target runs on");
    await t.kill();
  }),
);

/** The first half of rt_precopy's region (the pages it rewrites), read through /proc/<pid>/mem. */
function hotHalf(pid: number, region: bigint, pages: number): Uint8Array {
  using f = Deno.openSync(`/proc/${pid}/mem`, { read: true });
  f.seekSync(Number(region), Deno.SeekMode.Start);
  const buf = new Uint8Array((pages / 2) * PAGE);
  for (let at = 0; at < buf.length;) {
    const n = f.readSync(buf.subarray(at));
    if (n === null) throw new Error("short read of /proc/<pid>/mem");
    at += n;
  }
  return buf;
}

/** How many pages differ between two reads of {@link hotHalf}. */
function changedPages(a: Uint8Array, b: Uint8Array): number {
  let n = 0;
  for (let p = 0; p < a.length; p += PAGE) {
    for (let i = p; i < p + PAGE; i += 8) {
      if (a[i] !== b[i] || a[i + 1] !== b[i + 1]) {
        n++;
        break;
      }
    }
  }
  return n;
}

Deno.test(
  "pages written between the first freeze and their write protection (armed with the tree running) are exact in the image",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["64"],
    });
    const region = BigInt(`0x${ready[2]}`), pages = Number(ready[3]);
    const dir = `${await tempDir("cryo-precopy-arm-")}/image`;
    // cryo stops after the first freeze, its userfaultfd made, nothing registered yet.
    const paused = await startPaused(
      ["dump", String(t.pid), "--dir", dir, "--leave-running", "--precopy", "--no-sync", "--json"],
      "precopy-arm",
    );
    assert.equal(trackingTraces(t.pid, region, pages).uffdFlags, 0, "nothing registered yet");
    // The target writes pages now, before any protection: wait until it visibly did.
    const first = hotHalf(t.pid, region, pages);
    const deadline = Date.now() + 60_000;
    while (changedPages(first, hotHalf(t.pid, region, pages)) < 64) {
      assert.ok(Date.now() < deadline, "the target wrote no page");
      await new Promise((r) => setTimeout(r, 10));
    }
    paused.child.kill("SIGCONT");
    const out = await paused.output;
    assert.equal(out.code, 0, out.stderr);
    const after = trackingTraces(t.pid, region, pages);
    assertNoTracking(after);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, RT_PRECOPY_CHECKS, await t.wait(30000), { what: "original" });
    const tree = await restore(dir);
    t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
    assertChecksPassed(t, RT_PRECOPY_CHECKS, await t.wait(30000), { run: 2, what: "restored" });
  }),
);

for (
  const [phase, what, lanes] of [
    ["precopy-arm", "after the first freeze, before arming the tracking"],
    ["precopy-settle", "in the barrier freeze after arming the tracking"],
    // The collect's rehearsal in the barrier freeze (engine/dump/rehearsal.ts; one lane: with
    // a syscall table it runs on a helper beside the copy): the first freeze makes two
    // injected syscalls, so the third is the rehearsal's first.
    ["inject-mid:3", "in the collect's rehearsal, an injected syscall's registers set", "1"],
    ["batch-mid", "in the collect's rehearsal, inside its syscall batch", "1"],
    // (The mlockall probe page is mapped and unmapped by that batch's own steps, which a
    // thread let go runs to their end: engine/memory/flags.ts `mlockProbeSteps`.)
    // The second piece: the copy is under way, the tree runs, its pages are write-protected
    // (one lane: with a table's lane, which an idle machine picks, cryo's thread may copy no
    // second piece, the tables taking them all: below).
    ["precopy-pages:2", "during the pre-copy's page copy", "1"],
    // The same on two copy lanes (CRYO_COPY_LANES=2: engine/dump/copy_lanes.ts's worker copying too).
    ["precopy-pages:2", "during a two-lane pre-copy's page copy", "2"],
    // The same with a syscall table copying on another thread (engine/dump/native_lane.ts).
    // The table copies it all; cryo's thread rehearses the collect on a helper meanwhile.
    ["precopy-pages", "during a pre-copy's page copy by a syscall table's lane", "native"],
    // (A root of many threads: one of fewer gets a warm-up of cryo's own code there instead.)
    ["rehearsal-helper", "with the collect's rehearsal's helper frozen beside the copy", "native"],
    ["precopy-release", "after the dump's thaw, before releasing the tracking"],
    // engine/dump/uffd_release.ts: the first chunk lifted and unregistered, not the rest.
    ["precopy-release-chunk:2", "in the middle of releasing the tracking, chunk by chunk"],
    // The release by a syscall table on another thread (engine/dump/uffd_release.ts), started.
    ["precopy-release-table", "while a syscall table's thread releases the tracking"],
    // The same released on the copy lane's thread (engine/dump/precopy_lanes.ts releasePrecopy).
    ["precopy-release-chunk:2", "in the middle of a release on the copy lane's thread", "2"],
    // engine/dump/mod.ts: the tree thawed and released (one lane), the images being completed.
    ["notes", "while the images are completed after the thaw"],
  ]
) {
  Deno.test(
    `cryo dump --leave-running killed ${what}: no image, the process untouched`,
    withTargets(async () => {
      // Beside the copy only with a syscall table's lane (else the rehearsal is in the barrier).
      if (phase === "rehearsal-helper" && !nativeLaneAvailable()) return;
      const threads = phase === "rehearsal-helper";
      const { t, trigger, ready } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
        extra: threads ? ["64", "threads"] : ["64"],
      });
      const region = BigInt(`0x${ready[2]}`), pages = Number(ready[3]);
      const before = trackingTraces(t.pid, region, pages);
      const dir = `${await tempDir("cryo-precopy-kill-")}/image`;
      if (lanes) Deno.env.set("CRYO_COPY_LANES", lanes);
      const paused = await startPaused(
        ["dump", String(t.pid), "--dir", dir, "--leave-running", "--precopy"],
        phase,
      ).finally(() => Deno.env.delete("CRYO_COPY_LANES"));
      // At "notes" the tracking is released already (or being released on a table's thread,
      // as at "precopy-release-table", where that thread may have finished before the stop).
      if (phase !== "precopy-arm" && phase !== "notes" && phase !== "precopy-release-table") {
        const at = trackingTraces(t.pid, region, pages);
        // Some of it: which chunk holds the region's pages depends on where the kernel put the
        // other tracked mappings (a release at its second chunk may have lifted the region's).
        assert.ok(
          at.uffdFlags > 0 || at.protectedPages > 0,
          `the tracking was there: ${JSON.stringify(at)}`,
        );
      }
      if (!phase.startsWith("precopy-") && phase !== "notes" && phase !== "rehearsal-helper") {
        // Still in the barrier: nothing pre-copied yet.
        const base = dir.slice(0, dir.lastIndexOf("/"));
        const files = [...Deno.readDirSync(base)].flatMap((d) =>
          d.isDirectory ? [...Deno.readDirSync(`${base}/${d.name}`)].map((e) => e.name) : []
        );
        assert.deepEqual(files, [], "killed before the pre-copy's page copy");
      }
      paused.child.kill("SIGKILL");
      await paused.output;
      assert.equal(pathExists(dir), false, "no image");
      // A thread let go inside an injected syscall undoes it (the scratch or probe page
      // unmapped...) itself when it next runs: give it the time to.
      const deadline = Date.now() + 10_000;
      while (
        Deno.readTextFileSync(`/proc/${t.pid}/maps`) !== before.maps && Date.now() < deadline
      ) {
        await new Promise((r) => setTimeout(r, 10));
      }
      const after = trackingTraces(t.pid, region, pages);
      assert.deepEqual(after.fds, before.fds, "the same fds");
      assert.equal(after.maps, before.maps, "the same mappings");
      assertNoTracking(after);
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(
        t,
        threads ? [...RT_PRECOPY_CHECKS, "threads"] : RT_PRECOPY_CHECKS,
        await t.wait(30000),
        { what: "original after the killed dump" },
      );
    }),
  );
}

Deno.test(
  "a pre-copy of a one-thread root copied by a syscall table: no helper beside the copy, exact",
  withTargets(async () => {
    if (!nativeLaneAvailable()) return;
    const { t, trigger, ready } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["64"],
    });
    const dir = await tempImageDir();
    const before = { ...besideStats };
    Deno.env.set("CRYO_COPY_LANES", "native");
    try {
      await checkpoint(t.pid, { dir, leaveRunning: true, precopy: true, sync: false });
    } finally {
      Deno.env.delete("CRYO_COPY_LANES");
    }
    assert.deepEqual(besideStats, { light: before.light + 1, helper: before.helper });
    assertNoTracking(trackingTraces(t.pid, BigInt(`0x${ready[2]}`), Number(ready[3])));
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, RT_PRECOPY_CHECKS, await t.wait(30000), { what: "original" });
    const tree = await restore(dir);
    t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
    assertChecksPassed(t, RT_PRECOPY_CHECKS, await t.wait(30000), { run: 2, what: "restored" });
  }),
);
