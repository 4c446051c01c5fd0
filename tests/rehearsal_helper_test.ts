/**
 * A dump frozen once (`--leave-running` below the pre-copy's threshold)
 * rehearses its collect on a helper process of its own before the freeze
 * (engine/dump/rehearsal.ts `rehearseOnHelper`), never on the target:
 *
 * - the per-thread readers rehearsed on the helper's one thread as many
 *   times as the target has threads (engine/dump/thread_rehearsal.ts):
 *   run on the frozen helper only (the target is read through /proc,
 *   not traced), nothing for one thread, at most
 *   THREAD_REHEARSAL_MAX_ROUNDS, the helper's registers unchanged and it
 *   still ends by itself;
 * - the helper (`cat` on a pipe only cryo holds) is frozen, collected,
 *   thawed, ended and reaped: no child of cryo is left; none is started
 *   for a root of more than HELPER_REHEARSAL_MAX_MAPPINGS mappings; the
 *   helper exits by itself when its input ends;
 * - a one-freeze `--leave-running` dump of a process writing its memory
 *   all the time (tests/targets/rt_precopy.c, 4 MiB: not pre-copied)
 *   leaves the original running and checking itself, and the image,
 *   restored, is its memory at the freeze; cryo's pause points in the
 *   rehearsal's collect are not counted (the target's first injected
 *   syscall is still `inject:1`);
 * - cryo SIGKILLed with the helper frozen (`rehearsal-helper`), or right
 *   after starting it (`helper-started`: the helper is started before the
 *   page buffers and the BPF program, engine/dump/mod.ts): no image, the
 *   target untouched, and the helper goes away by itself (its input ends
 *   with cryo).
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import {
  HELPER_REHEARSAL_MAX_MAPPINGS,
  rehearseOnHelper,
  startRehearsalHelper,
} from "../engine/dump/rehearsal.ts";
import { closePipe } from "../ffi/pipe_child.ts";
import { rehearseThreads, THREAD_REHEARSAL_MAX_ROUNDS } from "../engine/dump/thread_rehearsal.ts";
import { freezeTree, thawTree } from "../engine/dump/freeze.ts";
import { getRegs } from "../ffi/ptrace.ts";
import { regsToHex } from "../ffi/regs.ts";
import { __WALL, waitPid } from "../ffi/wait.ts";
import { startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import {
  assertOriginalThenRestored,
  RT_PRECOPY_CHECKS,
  RT_PRECOPY_READY,
  trackingTraces,
} from "./helpers/tracking.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { pathExists, tempDir } from "./helpers/fs.ts";
import { startPaused } from "./helpers/kill_anywhere.ts";
import { HELPER_FIRST_MIN_THREADS } from "../engine/dump/precopy_lanes.ts";
import { NATIVE_LANE_MIN_BYTES } from "../engine/dump/native_lane.ts";

/** The children of `pid` (every thread's). */
function childrenOf(pid: number): number[] {
  return [...Deno.readDirSync(`/proc/${pid}/task`)].flatMap((t) =>
    Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/children`).trim().split(/\s+/)
      .filter(Boolean).map(Number)
  );
}

/** The state letter of `pid`, or undefined once it is gone. */
function stateOf(pid: number): string | undefined {
  try {
    const s = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return s.slice(s.lastIndexOf(")") + 2, s.lastIndexOf(")") + 3);
  } catch {
    return undefined;
  }
}

Deno.test("the collect's rehearsal on a helper: frozen, collected, ended and reaped", () => {
  const before = new Set(childrenOf(Deno.pid));
  // The root's mappings counted by the caller (here a small process's).
  assert.equal(rehearseOnHelper(Deno.pid, 10), true, "frozen and collected");
  assert.deepEqual(childrenOf(Deno.pid).filter((p) => !before.has(p)), [], "no child left");
  // Above the bound no helper is started.
  const many = HELPER_REHEARSAL_MAX_MAPPINGS + 1;
  assert.equal(rehearseOnHelper(Deno.pid, many), false, "not rehearsed");
  assert.deepEqual(childrenOf(Deno.pid).filter((p) => !before.has(p)), [], "no child left");
});

Deno.test("the per-thread rehearsal: the frozen helper's thread read once per thread of the target", () => {
  const helper = startRehearsalHelper();
  assert.ok(helper, "the helper started");
  try {
    // Past its exec and asleep in its read (as rehearseOnHelper waits for).
    const deadline = Date.now() + 10_000;
    while (
      Deno.readLinkSync(`/proc/${helper.pid}/exe`) === Deno.execPath() ||
      stateOf(helper.pid) !== "S"
    ) {
      assert.ok(Date.now() < deadline, "the helper waits for its input");
    }
    const tree = freezeTree(helper.pid);
    try {
      const regs = regsToHex(getRegs(helper.pid));
      // This test process (several threads) as the target: read through /proc only.
      assert.equal(rehearseThreads(helper.pid, Deno.pid, 5), 5, "five rounds");
      assert.equal(rehearseThreads(helper.pid, Deno.pid, 1), 0, "one thread: none");
      assert.equal(
        rehearseThreads(helper.pid, Deno.pid, 1000),
        THREAD_REHEARSAL_MAX_ROUNDS,
        "at most the bound",
      );
      assert.equal(rehearseThreads(helper.pid + 1_000_000, Deno.pid, 4), 0, "a read failed: 0");
      assert.deepEqual(regsToHex(getRegs(helper.pid)), regs, "the helper's registers unchanged");
      assert.match(
        Deno.readTextFileSync(`/proc/${Deno.pid}/status`),
        /^TracerPid:\s+0$/m,
        "the target is not traced",
      );
    } finally {
      thawTree(tree);
    }
  } finally {
    closePipe(helper);
  }
  const st = waitPid(helper.pid, __WALL);
  assert.deepEqual(st.kind === "exited" && st.code, 0, "the helper still ends by itself");
});

Deno.test("the helper: cat on a pipe, it ends when its input does", () => {
  const helper = startRehearsalHelper();
  assert.ok(helper, "the helper started");
  assert.ok(childrenOf(Deno.pid).includes(helper.pid), "the helper is this process's child");
  closePipe(helper);
  const st = waitPid(helper.pid, __WALL);
  assert.deepEqual(st.kind === "exited" && st.code, 0, "it exits by itself, status 0");
});

Deno.test(
  "a dump frozen once, rehearsed on a helper: exact at the freeze, the original runs on, no helper left",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["4"],
    });
    const dir = `${await tempDir("cryo-rehearsal-helper-")}/image`;
    const before = new Set(childrenOf(Deno.pid));
    const result = await checkpoint(t.pid, { dir, leaveRunning: true, sync: false });
    assert.equal(result.stats.precopy, undefined, "frozen once (no pre-copy)");
    assert.deepEqual(childrenOf(Deno.pid).filter((p) => !before.has(p)), [], "no helper left");
    await assertOriginalThenRestored(t, trigger, dir);
  }),
);

Deno.test(
  "cryo dump --leave-running frozen once: the rehearsal's pause points are not counted",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["4"],
    });
    const dir = `${await tempDir("cryo-rehearsal-inject-")}/image`;
    // The first injected syscall counted is the target's, in the dump's own freeze.
    const paused = await startPaused(
      ["dump", String(t.pid), "--dir", dir, "--leave-running", "--no-sync"],
      "inject:1",
    );
    const tracer = Deno.readTextFileSync(`/proc/${t.pid}/status`).match(/^TracerPid:\s+(\d+)/m);
    assert.equal(Number(tracer?.[1]), paused.child.pid, "the target is frozen by cryo");
    paused.child.kill("SIGCONT");
    const out = await paused.output;
    assert.equal(out.code, 0, out.stderr);
    await assertOriginalThenRestored(t, trigger, dir);
  }),
);

Deno.test(
  "cryo dump --leave-running killed right after starting the rehearsal's helper: no image, the target untouched, the helper gone",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["4"],
    });
    const dir = `${await tempDir("cryo-rehearsal-started-")}/image`;
    const paused = await startPaused(
      ["dump", String(t.pid), "--dir", dir, "--leave-running", "--no-sync"],
      "helper-started",
    );
    const helpers = childrenOf(paused.child.pid);
    assert.equal(helpers.length, 1, "cryo has one child, the helper");
    const helper = helpers[0];
    assert.match(Deno.readTextFileSync(`/proc/${t.pid}/status`), /^TracerPid:\s+0$/m);
    paused.child.kill("SIGKILL");
    await paused.output;
    assert.equal(pathExists(dir), false, "no image");
    const deadline = Date.now() + 10_000;
    while (stateOf(helper) !== undefined && stateOf(helper) !== "Z") {
      assert.ok(Date.now() < deadline, "the helper ends by itself");
      await new Promise((r) => setTimeout(r, 10));
    }
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, RT_PRECOPY_CHECKS, await t.wait(30000), {
      what: "original after the killed dump",
    });
  }),
);

Deno.test(
  "cryo dump --leave-running killed with the rehearsal's helper frozen: no image, the target untouched, the helper gone",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: ["4"],
    });
    const region = BigInt(`0x${ready[2]}`), pages = Number(ready[3]);
    const before = trackingTraces(t.pid, region, pages);
    const dir = `${await tempDir("cryo-rehearsal-kill-")}/image`;
    const paused = await startPaused(
      ["dump", String(t.pid), "--dir", dir, "--leave-running", "--no-sync"],
      "rehearsal-helper",
    );
    const helpers = childrenOf(paused.child.pid);
    assert.equal(helpers.length, 1, "cryo has one child, the helper");
    const helper = helpers[0];
    const tracer = Deno.readTextFileSync(`/proc/${helper}/status`).match(/^TracerPid:\s+(\d+)/m);
    assert.equal(Number(tracer?.[1]), paused.child.pid, "the helper is frozen by cryo");
    assert.match(Deno.readTextFileSync(`/proc/${t.pid}/status`), /^TracerPid:\s+0$/m);
    paused.child.kill("SIGKILL");
    await paused.output;
    assert.equal(pathExists(dir), false, "no image");
    const deadline = Date.now() + 10_000;
    while (stateOf(helper) !== undefined && stateOf(helper) !== "Z") {
      assert.ok(Date.now() < deadline, "the helper ends by itself");
      await new Promise((r) => setTimeout(r, 10));
    }
    const after = trackingTraces(t.pid, region, pages);
    assert.deepEqual(after.fds, before.fds, "the same fds");
    assert.equal(after.maps, before.maps, "the same mappings");
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, RT_PRECOPY_CHECKS, await t.wait(30000), {
      what: "original after the killed dump",
    });
  }),
);

Deno.test(
  "a pre-copy without a table lane of a root of many threads: rehearsed on the helper before its first freeze, exact",
  withTargets(async () => {
    const mib = 4;
    assert.ok(mib << 20 < NATIVE_LANE_MIN_BYTES, "below the table lane's size");
    const { t, trigger, ready } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
      extra: [String(mib), "threads"],
    });
    const threads = [...Deno.readDirSync(`/proc/${t.pid}/task`)].length;
    assert.ok(threads >= HELPER_FIRST_MIN_THREADS, `${threads} threads`);
    const region = BigInt(`0x${ready[2]}`), pages = Number(ready[3]);
    const before = trackingTraces(t.pid, region, pages);
    const dir = `${await tempDir("cryo-rehearsal-first-")}/image`;
    const paused = await startPaused(
      ["dump", String(t.pid), "--dir", dir, "--leave-running", "--no-sync", "--precopy"],
      "rehearsal-helper",
    );
    const helpers = childrenOf(paused.child.pid);
    assert.equal(helpers.length, 1, "cryo has one child, the helper");
    // Before the pre-copy's first freeze: the target neither traced nor tracked yet.
    assert.match(Deno.readTextFileSync(`/proc/${t.pid}/status`), /^TracerPid:\s+0$/m);
    const now = trackingTraces(t.pid, region, pages);
    assert.deepEqual(now.fds, before.fds, "no userfaultfd yet");
    assert.deepEqual(now, before, "no tracking yet");
    paused.child.kill("SIGCONT");
    const out = await paused.output;
    assert.equal(out.code, 0, out.stderr);
    await assertOriginalThenRestored(t, trigger, dir, [...RT_PRECOPY_CHECKS, "threads"]);
  }),
);
