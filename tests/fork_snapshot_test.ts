/**
 * The fork snapshot of `dump --leave-running` frozen once
 * (engine/dump/fork_snapshot.ts, `CRYO_FORK_SNAPSHOT=1`): the pages read
 * from an injected clone after the thaw are the memory as of the freeze
 * (tests/targets/rt_precopy.c writes its pages all the time and checks
 * each against a generation count kept in other pages); the target is left
 * with no child or zombie; mappings a fork does not copy faithfully
 * (shared memory, MADV_DONTFORK, MADV_WIPEONFORK) make the dump copy frozen
 * as before; a cryo killed while the snapshot exists leaves the target
 * running and the snapshot dead (at worst a zombie of the target's); with
 * the writes deferred, a snapshot expected to be taken is taken rather
 * than the copy ahead (below its 32 MiB too), which stays the way where
 * the memory cgroup has no room for the snapshot's copies or shared
 * memory is resident.
 *
 * @module
 */

import assert from "node:assert/strict";
import { checkpoint, snapshotRehearsalStats } from "../engine/dump/mod.ts";
import { copyAheadHooks, copyAheadStats } from "../engine/dump/copy_ahead.ts";
import {
  forkSnapshotStats,
  forkSnapshotWanted,
  memoryRoom,
  SNAPSHOT_MIN_BYTES,
  SNAPSHOT_MIN_BYTES_PER_MAPPING,
  snapshotFits,
} from "../engine/dump/fork_snapshot.ts";
import type { Mapping } from "../engine/model.ts";
import { snapshotLaneStats } from "../engine/dump/snapshot_lanes.ts";
import { beforeInjection, sessionSites } from "../engine/dump/injected.ts";
import { restore } from "../engine/restore/mod.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { repoRoot } from "./helpers/commands.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";
import {
  assertOriginalThenRestored,
  RT_PRECOPY_CHECKS,
  RT_PRECOPY_READY,
} from "./helpers/tracking.ts";
import { sleep, waitUntil } from "./helpers/wait.ts";
import { pathExists } from "./helpers/fs.ts";
import { SIGKILL } from "./helpers/signals.ts";
import { MEMFLAGS_CHECKS, MEMFLAGS_READY } from "./helpers/memflags.ts";
import { cgroupDirOf } from "../engine/task/placement.ts";
import { withEnv } from "./helpers/env.ts";

/** The children of every thread of `pid` (/proc/<pid>/task/<tid>/children). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync(`/proc/${pid}/task`)) {
    const text = Deno.readTextFileSync(`/proc/${pid}/task/${e.name}/children`).trim();
    if (text) out.push(...text.split(" ").map(Number));
  }
  return out;
}

/** The state letter of `pid` ("" when gone). */
function stateOf(pid: number): string {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  } catch {
    return "";
  }
}

/** The exit status of zombie `pid` (the last field of its stat). */
function exitCodeOf(pid: number): string {
  return Deno.readTextFileSync(`/proc/${pid}/stat`).trim().split(" ").at(-1)!;
}

/**
 * Dumps `pid` left running with its writes deferred (the copy ahead's walk begun whatever the
 * load) and asserts that no snapshot was taken (`why`) and its pages were copied ahead instead.
 */
async function dumpCopiedAhead(pid: number, dir: string, why: string): Promise<void> {
  const { made } = forkSnapshotStats;
  const { started } = copyAheadStats;
  copyAheadHooks.waitWalk = true;
  try {
    await withDeferredWrites(() => checkpoint(pid, { dir, leaveRunning: true }));
  } finally {
    copyAheadHooks.waitWalk = false;
  }
  assert.equal(forkSnapshotStats.made, made, `no snapshot: ${why}`);
  assert.equal(copyAheadStats.started, started + 1, "the pages copied ahead instead");
}

/** Starts rt_precopy over `mib` MiB (waiting for its ready line) and makes an image directory. */
async function startPrecopyTarget(mib: number) {
  const { t, trigger } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
    extra: [String(mib)],
  });
  return { t, trigger, dir: await tempImageDir() };
}

/** Runs `fn` with CRYO_FORK_SNAPSHOT=1. */
function withSnapshots<T>(fn: () => Promise<T>): Promise<T> {
  return withEnv("CRYO_FORK_SNAPSHOT", "1", fn);
}

Deno.test(
  "fork snapshot: a process writing its memory is saved as of the freeze (copied by syscall tables on two threads), and left with no child",
  withTargets(async () => {
    const { t, trigger, dir } = await startPrecopyTarget(16);
    const { made, reapFailed } = forkSnapshotStats;
    const { copies } = snapshotLaneStats;
    // The syscall tables' copy (snapshot_lanes.ts) at this size too (by default from 256 MiB).
    Deno.env.set("CRYO_SNAPSHOT_LANES", "1");
    let dump;
    try {
      dump = await withSnapshots(() =>
        checkpoint(t.pid, { dir, leaveRunning: true, precopy: false })
      );
    } finally {
      Deno.env.delete("CRYO_SNAPSHOT_LANES");
    }
    assert.equal(forkSnapshotStats.made, made + 1, "the pages came from a snapshot");
    assert.equal(forkSnapshotStats.reapFailed, reapFailed, "reaped in the target");
    // Opened with no syscall of its own and no status read (the collect's taken): the clone alone.
    assert.deepEqual(forkSnapshotStats.lastTake, { calls: 1, statusReads: 0 });
    assert.ok(dump.stats.pagesBytes >= 16 << 20, `${dump.stats.pagesBytes} bytes saved`);
    assert.equal(snapshotLaneStats.copies, copies + 1, "copied by the syscall tables");
    assert.deepEqual(childrenOf(t.pid), [], "no child or zombie left in the target");
    const status = Deno.readTextFileSync(`/proc/${t.pid}/status`);
    assert.match(status, /^SigPnd:\s+0+$/m, "no signal left pending in the target");
    assert.match(status, /^ShdPnd:\s+0+$/m, "no signal left pending in the target");
    await assertOriginalThenRestored(t, trigger, dir);
  }),
);

Deno.test(
  "fork snapshot: with CRYO_SNAPSHOT_LANES=0 the pages are copied by cryo's thread, exactly",
  withTargets(async () => {
    const { t, trigger, dir } = await startPrecopyTarget(24);
    const { made } = forkSnapshotStats;
    const { copies } = snapshotLaneStats;
    Deno.env.set("CRYO_SNAPSHOT_LANES", "0");
    try {
      await withSnapshots(() => checkpoint(t.pid, { dir, leaveRunning: true, precopy: false }));
    } finally {
      Deno.env.delete("CRYO_SNAPSHOT_LANES");
    }
    assert.equal(forkSnapshotStats.made, made + 1, "the pages came from a snapshot");
    assert.equal(snapshotLaneStats.copies, copies, "not copied by the tables");
    await assertOriginalThenRestored(t, trigger, dir);
  }),
);

Deno.test(
  "fork snapshot: no turn of the microtask queue between the snapshot's take and the thaw",
  withTargets(async () => {
    const { t, trigger, dir } = await startPrecopyTarget(16);
    const { made } = forkSnapshotStats;
    // A microtask queued as each injection session into the target opens in the freeze: the
    // snapshot's (the last) runs only after the thaw when nothing awaits in between.
    let thawed = false;
    const sessions: { ranBeforeThaw?: boolean }[] = [];
    const before = beforeInjection.hook;
    beforeInjection.hook = (pid) => {
      before?.(pid);
      if (pid !== t.pid || thawed) return;
      const s: { ranBeforeThaw?: boolean } = {};
      sessions.push(s);
      queueMicrotask(() => s.ranBeforeThaw = !thawed);
    };
    try {
      await withSnapshots(() =>
        checkpoint(t.pid, {
          dir,
          leaveRunning: true,
          precopy: false,
          onEvent: (e) => {
            if (e.type === "thawed") thawed = true;
          },
        })
      );
    } finally {
      beforeInjection.hook = before;
    }
    assert.equal(forkSnapshotStats.made, made + 1, "the pages came from a snapshot");
    assert.ok(sessions.length >= 2, `${sessions.length} sessions in the freeze`);
    assert.equal(sessions[0].ranBeforeThaw, true, "the collect's: at its awaits");
    assert.equal(sessions.at(-1)!.ranBeforeThaw, false, "the snapshot's: after the thaw");
    await assertOriginalThenRestored(t, trigger, dir);
  }),
);

Deno.test(
  "fork snapshot: with threads, and twice in a row",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["8", "threads"],
    });
    const { made } = forkSnapshotStats;
    let dir = "";
    for (let i = 0; i < 2; i++) {
      dir = await tempImageDir();
      await withSnapshots(() => checkpoint(t.pid, { dir, leaveRunning: true, precopy: false }));
      assert.deepEqual(childrenOf(t.pid), [], "no child or zombie left in the target");
    }
    assert.equal(forkSnapshotStats.made, made + 2, "the pages came from snapshots");
    await assertOriginalThenRestored(t, trigger, dir, [...RT_PRECOPY_CHECKS, "threads"]);
  }),
);

Deno.test(
  "fork snapshot: MADV_DONTFORK and MADV_WIPEONFORK areas make the dump copy frozen, exactly",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_memflags", MEMFLAGS_READY);
    const dir = await tempImageDir();
    const { made } = forkSnapshotStats;
    await withSnapshots(() => checkpoint(t.pid, { dir, leaveRunning: true, precopy: false }));
    assert.equal(forkSnapshotStats.made, made, "no snapshot: the dump copied frozen");
    t.kill();
    await t.wait();
    const tree = await restore(dir);
    t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, MEMFLAGS_CHECKS, await t.wait(15000), { what: "restored" });
  }),
);

/** A mapping with these kind and flags. */
function mapping(kind: Mapping["kind"], vmFlags: string[]): Mapping {
  return {
    start: "0x1000",
    end: "0x2000",
    perms: "rw-p",
    offset: "0x0",
    kind,
    name: "",
    vmFlags,
    pages: [],
  };
}

Deno.test("fork snapshot: the room for copies is read from meminfo and the memory cgroup", () => {
  const room = memoryRoom(Deno.pid);
  assert.ok(room > 0 && room !== Infinity, `${room} bytes`);
  assert.equal(memoryRoom(2 ** 22 + 1), 0, "a process that is not there: no room");
});

Deno.test("fork snapshot: which mappings a snapshot holds faithfully", () => {
  const anon = mapping("anon", ["rd", "wr", "mr", "mw", "me", "ac"]);
  assert.ok(snapshotFits([anon], ["anon-present"]));
  assert.ok(snapshotFits([mapping("file-private", ["rd", "mr"])], ["anon-present"]));
  // Shared memory is written through by the target after the thaw.
  assert.ok(
    !snapshotFits([anon, mapping("anon-shared", ["rd", "sh"])], ["anon-present", "all-present"]),
  );
  // Not copied by fork (left out, or zero in the child), planned or not.
  for (const f of ["dc", "wf", "um", "uw"]) {
    assert.ok(!snapshotFits([mapping("anon", ["rd", f])], ["anon-present"]), f);
    assert.ok(!snapshotFits([mapping("anon", ["rd", f])], ["none"]), `${f}, not planned`);
  }
  assert.ok(!snapshotFits([mapping("anon", ["rd", "ht"])], ["anon-present"]), "hugetlb");
  // A shared file mapping holds no planned page: it does not matter.
  assert.ok(snapshotFits([anon, mapping("file-shared", ["rd", "sh"])], ["anon-present", "none"]));
});

/**
 * Starts `cryo dump --leave-running --no-precopy` of `pid` with the fork
 * snapshot and CRYO_TEST_PAUSE_AT=`phase`; returns it stopped there.
 */
async function pausedDump(pid: number, phase: string, dir: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${repoRoot}cli.ts`,
      "dump",
      String(pid),
      "--dir",
      dir,
      "--leave-running",
      "--no-precopy",
      "--no-sync",
    ],
    cwd: repoRoot,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1", CRYO_FORK_SNAPSHOT: "1", CRYO_TEST_PAUSE_AT: phase },
  }).spawn();
  let done = false;
  const output = child.output().then((o) => {
    done = true;
    return o;
  });
  await waitUntil(`cryo at ${phase}`, () => done || stateOf(child.pid) === "T", 30000);
  if (done) {
    throw new Error(
      `cryo exited before ${phase}: ${new TextDecoder().decode((await output).stderr)}`,
    );
  }
  return { child, output };
}

for (const phase of ["snapshot-born", "snapshot"]) {
  Deno.test(
    `fork snapshot: cryo killed at ${phase} leaves the target running and the snapshot dead`,
    withTargets(async () => {
      const { t, trigger } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
        extra: ["16"],
      });
      const dir = await tempImageDir();
      const cryo = await pausedDump(t.pid, phase, dir);
      const snaps = childrenOf(t.pid);
      assert.equal(snaps.length, 1, "one snapshot");
      // Traced from birth, it stops before user mode on its own (cryo waits for that stop only
      // after snapshot-born): on a busy machine it may not have been scheduled yet ("R").
      await waitUntil("the snapshot in its trace stop", () => stateOf(snaps[0]) === "t", 30000);
      cryo.child.kill("SIGKILL");
      await cryo.output;
      // The snapshot never runs the target's code: it dies (a zombie of the target) or is gone.
      await waitUntil("the snapshot's end", () => ["Z", ""].includes(stateOf(snaps[0])));
      await sleep(50);
      assert.ok(["Z", ""].includes(stateOf(snaps[0])), `the snapshot is ${stateOf(snaps[0])}`);
      if (stateOf(snaps[0]) === "Z") {
        // Let go before it was told to die with cryo: its own frame's exit(0); after: SIGKILL.
        const code = Number(exitCodeOf(snaps[0]));
        assert.equal(code, phase === "snapshot-born" ? 0 : 9, `the snapshot's exit status ${code}`);
      }
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, RT_PRECOPY_CHECKS, await t.wait(30000), {
        what: "the target after a killed dump",
      });
    }),
  );
}

Deno.test(
  "fork snapshot: by default from SNAPSHOT_MIN_BYTES of planned pages, never with CRYO_FORK_SNAPSHOT=0",
  withTargets(async () => {
    for (const [mib, env, taken] of [[4, "", 0], [16, "", 1], [16, "0", 0]] as const) {
      const { t, trigger } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
        extra: [String(mib)],
      });
      const dir = await tempImageDir();
      const { made, rehearsed } = forkSnapshotStats;
      const { skipped } = snapshotRehearsalStats;
      const aheadBefore = copyAheadStats.taken;
      if (env) Deno.env.set("CRYO_FORK_SNAPSHOT", env);
      try {
        // Below the pre-copy's threshold: frozen once, the collect rehearsed on a helper first.
        await checkpoint(t.pid, { dir, leaveRunning: true });
      } finally {
        Deno.env.delete("CRYO_FORK_SNAPSHOT");
      }
      // A copy made ahead in the freeze (a quiet machine: engine/dump/copy_ahead.ts) has read
      // the pages already: no snapshot then.
      const ahead = copyAheadStats.taken - aheadBefore;
      assert.equal(
        forkSnapshotStats.made - made + (taken ? ahead : 0),
        taken,
        `${mib} MiB, CRYO_FORK_SNAPSHOT=${env}, copy ahead taken ${ahead}`,
      );
      // The snapshot's code warmed on the helper before the freeze (engine/dump/rehearsal.ts),
      // unless the pages were expected to be copied ahead (engine/dump/mod.ts).
      assert.equal(
        forkSnapshotStats.rehearsed - rehearsed + snapshotRehearsalStats.skipped - skipped,
        taken,
        "rehearsed on the helper, or left out for the copy ahead",
      );
      assert.ok(16 * 2 ** 20 >= SNAPSHOT_MIN_BYTES && 4 * 2 ** 20 < SNAPSHOT_MIN_BYTES);
      assert.deepEqual(childrenOf(t.pid), [], "no child or zombie left in the target");
      await assertOriginalThenRestored(t, trigger, dir);
    }
  }),
);

/** Runs `fn` with `CRYO_COPY_LANES=native`: the page writes deferred, a copy ahead possible. */
function withDeferredWrites<T>(fn: () => Promise<T>): Promise<T> {
  return withEnv("CRYO_COPY_LANES", "native", fn);
}

Deno.test(
  "fork snapshot: taken rather than the copy ahead below its 32 MiB (16 MiB, the writes deferred); exact",
  withTargets(async () => {
    const { t, trigger, dir } = await startPrecopyTarget(16);
    const { made } = forkSnapshotStats;
    const { started } = copyAheadStats;
    // Frozen once (below the pre-copy's threshold), the collect rehearsed on a helper first.
    await withDeferredWrites(() => checkpoint(t.pid, { dir, leaveRunning: true }));
    assert.equal(forkSnapshotStats.made, made + 1, "the pages came from a snapshot");
    assert.equal(copyAheadStats.started, started, "no copy ahead in the freeze");
    assert.deepEqual(childrenOf(t.pid), [], "no child or zombie left in the target");
    await assertOriginalThenRestored(t, trigger, dir);
  }),
);

Deno.test(
  "fork snapshot: the target killed while its pages are read from the snapshot: the image is complete and exact",
  withTargets(async () => {
    const { t, trigger, dir } = await startPrecopyTarget(16);
    const { made, reapFailed } = forkSnapshotStats;
    let killed = false;
    await withSnapshots(() =>
      checkpoint(t.pid, {
        dir,
        leaveRunning: true,
        precopy: false,
        onEvent: (e) => {
          // The first pages event comes after the thaw: the copy reads the snapshot.
          if (e.type === "pages" && !killed) {
            killed = true;
            t.signal(SIGKILL);
          }
        },
      })
    );
    assert.ok(killed, "killed during the copy");
    assert.equal(forkSnapshotStats.made, made + 1, "the pages came from a snapshot");
    assert.equal(forkSnapshotStats.reapFailed, reapFailed + 1, "no target left to reap it in");
    await t.wait(5000);
    const tree = await restore(dir);
    t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, RT_PRECOPY_CHECKS, await t.wait(30000), { what: "restored" });
  }),
);

const PIDS_CGROUP = "/sys/fs/cgroup/pids";

Deno.test({
  name: "fork snapshot: a clone the pids cgroup refuses leaves the dump to copy frozen",
  ignore: !pathExists(`${PIDS_CGROUP}/cgroup.procs`),
  fn: withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["16"],
    });
    const group = `${PIDS_CGROUP}/cryo-forksnap-${t.pid}`;
    Deno.mkdirSync(group);
    try {
      Deno.writeTextFileSync(`${group}/pids.max`, "1");
      Deno.writeTextFileSync(`${group}/cgroup.procs`, String(t.pid));
      const dir = await tempImageDir();
      const { made } = forkSnapshotStats;
      await withSnapshots(() => checkpoint(t.pid, { dir, leaveRunning: true, precopy: false }));
      assert.equal(forkSnapshotStats.made, made, "no snapshot: the clone failed (EAGAIN)");
      assert.deepEqual(childrenOf(t.pid), [], "no child left in the target");
      Deno.writeTextFileSync(`${PIDS_CGROUP}/cgroup.procs`, String(t.pid));
      await assertOriginalThenRestored(t, trigger, dir);
    } finally {
      try {
        Deno.writeTextFileSync(`${PIDS_CGROUP}/cgroup.procs`, String(t.pid));
      } catch { /* gone */ }
      Deno.removeSync(group);
    }
  }),
});

const MEMORY_CGROUP = cgroupDirOf(Deno.pid, "memory");

Deno.test({
  name: "fork snapshot: a memory cgroup without room for the copies leaves the dump to copy frozen",
  ignore: !MEMORY_CGROUP?.v1, // (a v2 child needs the controller enabled above it)
  fn: withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["16"],
    });
    const root = MEMORY_CGROUP!.root;
    const group = `${root}/cryo-forksnap-${t.pid}`;
    Deno.mkdirSync(group);
    try {
      Deno.writeTextFileSync(`${group}/memory.limit_in_bytes`, String(8 << 20));
      Deno.writeTextFileSync(`${group}/cgroup.procs`, String(t.pid));
      assert.ok(memoryRoom(t.pid) <= 8 << 20, `${memoryRoom(t.pid)} bytes of room`);
      const dir = await tempImageDir();
      const { made } = forkSnapshotStats;
      await withSnapshots(() => checkpoint(t.pid, { dir, leaveRunning: true, precopy: false }));
      assert.equal(forkSnapshotStats.made, made, "no snapshot: 16 MiB of copies would not fit");
      Deno.writeTextFileSync(`${root}/cgroup.procs`, String(t.pid));
      await assertOriginalThenRestored(t, trigger, dir);
    } finally {
      try {
        Deno.writeTextFileSync(`${root}/cgroup.procs`, String(t.pid));
      } catch { /* gone */ }
      Deno.removeSync(group);
    }
  }),
});

Deno.test({
  name:
    "fork snapshot: no room for its copies, the copy ahead instead (the writes deferred); exact",
  ignore: !MEMORY_CGROUP?.v1, // (as above)
  fn: withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["16"],
    });
    const root = MEMORY_CGROUP!.root;
    const group = `${root}/cryo-forksnap-ahead-${t.pid}`;
    Deno.mkdirSync(group);
    try {
      Deno.writeTextFileSync(`${group}/memory.limit_in_bytes`, String(8 << 20));
      Deno.writeTextFileSync(`${group}/cgroup.procs`, String(t.pid));
      assert.ok(memoryRoom(t.pid) < 16 << 20, `${memoryRoom(t.pid)} bytes of room`);
      const dir = await tempImageDir();
      await dumpCopiedAhead(t.pid, dir, "its copies would not fit");
      Deno.writeTextFileSync(`${root}/cgroup.procs`, String(t.pid));
      await assertOriginalThenRestored(t, trigger, dir);
    } finally {
      try {
        Deno.writeTextFileSync(`${root}/cgroup.procs`, String(t.pid));
      } catch { /* gone */ }
      Deno.removeSync(group);
    }
  }),
});

Deno.test(
  "fork snapshot: shared memory resident, the copy ahead instead (the writes deferred); exact",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_forksnap", /^ready pid=(\d+)$/m);
    const dir = await tempImageDir();
    await dumpCopiedAhead(t.pid, dir, "its MAP_SHARED area");
    await assertOriginalThenRestored(t, trigger, dir, ["private", "shared"]);
  }),
);

Deno.test(
  "fork snapshot: a MAP_SHARED area makes the dump copy frozen, exactly",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_forksnap", /^ready pid=(\d+)$/m);
    const dir = await tempImageDir();
    const { made } = forkSnapshotStats;
    const dump = await withSnapshots(() =>
      checkpoint(t.pid, { dir, leaveRunning: true, precopy: false })
    );
    assert.equal(forkSnapshotStats.made, made, "no snapshot: the dump copied frozen");
    assert.ok(dump.stats.pagesBytes >= 17 << 20, `${dump.stats.pagesBytes} bytes saved`);
    await assertOriginalThenRestored(t, trigger, dir, ["private", "shared"]);
  }),
);

Deno.test("fork snapshot: not for mappings of too few pages on average, whose clone would take longer than their copy", () => {
  const MiB = 2 ** 20;
  assert.equal(forkSnapshotWanted(16 * MiB, 151), true, "threads-64's shape");
  assert.equal(forkSnapshotWanted(40 * MiB, 10_024), true, "maps-10000's shape (4 KiB a mapping)");
  assert.equal(forkSnapshotWanted(40 * MiB, 30_000), false, "1.4 KiB a mapping");
  assert.equal(forkSnapshotWanted(4 * MiB, 10), false, "below SNAPSHOT_MIN_BYTES");
  const n = 20_000;
  assert.equal(forkSnapshotWanted(n * SNAPSHOT_MIN_BYTES_PER_MAPPING, n), true);
  assert.equal(forkSnapshotWanted(n * SNAPSHOT_MIN_BYTES_PER_MAPPING - 1, n), false);
  Deno.env.set("CRYO_FORK_SNAPSHOT", "1");
  try {
    assert.equal(forkSnapshotWanted(40 * MiB, 30_000), true, "=1 at any shape");
  } finally {
    Deno.env.delete("CRYO_FORK_SNAPSHOT");
  }
});

Deno.test(
  "fork snapshot: by default for many mappings of a few pages (4,500 of 8 KiB), read exactly, the safe sites found before the freeze",
  withTargets(async () => {
    // 36 MiB: beyond the copy ahead's 32 MiB (engine/dump/copy_ahead.ts), which would read
    // the pages in the freeze instead; 8 KiB a mapping, below the pre-copy's 64 KiB.
    const { t, trigger } = await startTriggered("rt_manymaps", /^ready pid=(\d+)$/m, {
      extra: ["4500", "2"],
    });
    const dir = await tempImageDir();
    const { made, reapFailed } = forkSnapshotStats;
    const { remembered, searched } = sessionSites;
    const dump = await checkpoint(t.pid, { dir, leaveRunning: true });
    assert.equal(forkSnapshotStats.made, made + 1, "the pages came from a snapshot");
    assert.equal(forkSnapshotStats.reapFailed, reapFailed, "reaped in the target");
    // More mappings than the helper's rehearsal takes: the safe sites found before the freeze
    // all the same; the collect's, the snapshot's and the reap's sessions only check them.
    assert.equal(sessionSites.searched, searched, "no session searched for its safe sites");
    assert.ok(sessionSites.remembered >= remembered + 3, "three sessions with remembered sites");
    assert.ok(dump.stats.mappings >= 4500, `${dump.stats.mappings} mappings`);
    assert.ok(dump.stats.pagesBytes >= 4500 * 8192, `${dump.stats.pagesBytes} bytes saved`);
    assert.ok(
      dump.stats.pagesBytes < 16 * 1024 * dump.stats.mappings,
      "a shape the ninth pass's rule (16 KiB a mapping) refused",
    );
    assert.deepEqual(childrenOf(t.pid), [], "no child or zombie left in the target");
    await assertOriginalThenRestored(t, trigger, dir, ["pages", "mappings"]);
  }),
);
