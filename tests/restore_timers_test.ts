/**
 * Round trips of timers (tests/targets/rt_timers.c): POSIX timers on
 * several clocks with every notification kind and sparse ids, timer
 * signals pending at the dump, timerfds (relative, absolute,
 * CANCEL_ON_SET, periodic ones that expired unread), an itimer; and the
 * two refusals: a timer on an unknown thread's CPU clock, and an overrun
 * count the kernel cannot set back.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { restorePlan } from "../engine/restore/plan.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { pathExists } from "./helpers/fs.ts";
import { statusField } from "./helpers/proc.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) tid2=(\d+) alarm=(\d) ids=(-?\d+),(-?\d+),(-?\d+)$/m;

/** The checks rt_timers.c reports after a restore. */
const TIMER_CHECKS = [
  "proc-timers-same",
  "sparse-id-kept",
  "timer-mono",
  "timer-thread-id",
  "timer-boottime-none",
  "timer-process-cpu",
  "timer-thread-clock",
  "timer-tai",
  "timer-pending-oneshot",
  "timer-pending-periodic",
  "pending-oneshot-signal",
  "pending-periodic-signal",
  "pending-signals-arrived",
  "periodic-signal",
  "thread-id-signal",
  "new-timer",
  "timer-delete",
  "timerfd-periodic",
  "timerfd-abs-realtime-cancel",
  "timerfd-abs-monotonic",
  "timerfd-rel-realtime",
  "timerfd-expired-oneshot",
  "timerfd-periodic-ticks",
  "timerfd-periodic-fires",
  "timerfd-expired-ticks",
  "itimer",
];

Deno.test(
  "timers: POSIX timers (same ids, clocks, notifications, pending signals), timerfds and an itimer survive",
  withTargets(async () => {
    const m = await startTriggered("rt_timers", READY);
    const [, pid, tid2, alarm, monoId, threadId] = m.ready.map(Number);
    const { dir } = await dumpKillRestore(m.t);

    // The image: every timer with its id; the pending timer signals moved into their timers.
    const image = (await readImageFile(`${dir}/${pid}.elf`)).process;
    const timers = image.posixTimers ?? [];
    assert.ok(timers.length >= 10 + alarm, `${timers.length} timers in the image`);
    const byId = new Map(timers.map((t) => [t.id, t]));
    assert.deepEqual(byId.get(threadId)?.tid, tid2, "SIGEV_THREAD_ID target");
    assert.deepEqual(byId.get(monoId)?.interval, [0, 50_000_000]);
    // SIGRTMIN+4 and +5 are blocked: their timers' signals wait in the queue (others may too,
    // queued while the target was frozen).
    for (const signo of [38, 39]) {
      const t = timers.find((x) => x.signo === signo);
      assert.equal(t?.signalPending, true, `the signal ${signo} of timer ${t?.id} is pending`);
    }
    const pending = [...image.sharedPending, ...image.threads.flatMap((t) => t.pending)];
    assert.equal(pending.filter((s) => s.code === -2).length, 0, "SI_TIMER left in the queues");
    const periodic = image.fds.find((f) =>
      f.kind === "timerfd" && f.extra["it_interval"] === "(0, 40000000)"
    );
    assert.ok(periodic, "the periodic timerfd");
    assert.ok(Number(periodic.extra["ticks"]) >= 6, `ticks ${periodic.extra["ticks"]}`);
    assert.notEqual(periodic.extra["it_value"], "(0, 0)", "the periodic timerfd is disarmed");

    // show --plan shows the timer ops.
    const plan = (await restorePlan(dir))[0].program.join("\n");
    assert.match(plan, /prctl\(.*# timer_create takes the ids it is given/);
    assert.match(
      plan,
      new RegExp(
        `timer_create\\(.*# POSIX timer ${threadId}: CLOCK_REALTIME, signal \\d+ to thread ${tid2}`,
      ),
    );
    assert.match(plan, /timer_settime\(.*expires at once \(its signal was pending\)/);
    assert.match(plan, /ioctl\(.*# timerfd: \d+ expirations not yet read/);

    await Deno.writeTextFile(m.trigger, "");
    assertChecksPassed(m.t, [...TIMER_CHECKS], await m.t.wait());
  }),
);

for (
  const [mode, pattern] of [
    [
      "threadcpu",
      /POSIX timer \d+ \(CLOCK_THREAD_CPUTIME_ID\): POSIX timers tied to a thread or process cryo cannot name: it runs on the CPU clock of the thread that created it/,
    ],
    [
      "overrun",
      /POSIX timer \d+ \(CLOCK_MONOTONIC\): POSIX timer overrun counts \(timer_getoverrun\) above zero: timer_getoverrun\(\) reads \d+/,
    ],
  ] as const
) {
  Deno.test(
    `timers: a dump refused for ${mode} leaves no image and the target running untouched`,
    withTargets(async () => {
      const m = await startTriggered("rt_timers", READY, { extra: [mode] });
      const dir = await tempImageDir();
      await assert.rejects(
        () => checkpoint(m.t.pid, { dir }),
        (e: unknown) => {
          assert.ok(e instanceof UnsupportedError, String(e));
          assert.match(e.message, pattern);
          return true;
        },
      );
      assert.equal(pathExists(dir), false, "an image directory was left behind");
      assert.equal(statusField(m.t.pid, "TracerPid"), "0");
      await Deno.writeTextFile(m.trigger, "");
      assertChecksPassed(m.t, ["still-running"], await m.t.wait());
    }),
  );
}
