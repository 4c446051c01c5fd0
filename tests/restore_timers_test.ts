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
import { decodeCpuClock, parseTimers, SIGEV } from "../engine/proc/timers.ts";
import { takeTimerSignals } from "../engine/task/timers.ts";
import { encodeBase64 } from "../engine/base64.ts";
import type { PosixTimer, SigInfoRecord } from "../engine/model.ts";

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

Deno.test("timers: /proc/<pid>/timers blocks and CPU clock ids decode", () => {
  const text = [
    "ID: 7",
    "signal: 35/0000000000001234",
    "notify: signal/tid.4242",
    "ClockID: 0",
    "ID: 2",
    "signal: 14/0000000000000002",
    "notify: none/pid.4000",
    "ClockID: -6",
    "ID: 3",
    "signal: 32/00007f0000001000",
    "notify: thread/pid.4000",
    "ClockID: -33946",
    "",
  ].join("\n");
  assert.deepEqual(parseTimers(text), [
    { id: 2, signo: 14, value: 2n, notify: SIGEV.NONE, target: 4000, clockid: -6 },
    {
      id: 3,
      signo: 32,
      value: 0x7f0000001000n,
      notify: SIGEV.THREAD,
      target: 4000,
      clockid: -33946,
    },
    { id: 7, signo: 35, value: 0x1234n, notify: SIGEV.THREAD_ID, target: 4242, clockid: 0 },
  ]);
  assert.deepEqual(parseTimers(""), []);
  assert.throws(() => parseTimers("ID: 1\nsignal: x\n"), /unreadable timer/);
  // CLOCK_PROCESS_CPUTIME_ID and CLOCK_THREAD_CPUTIME_ID as the kernel stores them (pid 0 = creator).
  assert.deepEqual(decodeCpuClock(-6), { pid: 0, thread: false, which: 2 });
  assert.deepEqual(decodeCpuClock(-2), { pid: 0, thread: true, which: 2 });
  // pthread_getcpuclockid of tid 4243: (~4243 << 3) | 4 | 2.
  assert.deepEqual(decodeCpuClock((~4243 << 3) | 6), { pid: 4243, thread: true, which: 2 });
  assert.equal(decodeCpuClock(1), undefined);
});

Deno.test("timers: a pending SI_TIMER signal moves into its timer, other signals stay", () => {
  const siginfo = (signo: number, code: number, timerId: number): SigInfoRecord => {
    const raw = new Uint8Array(128);
    const dv = new DataView(raw.buffer);
    dv.setInt32(0, signo, true);
    dv.setInt32(8, code, true);
    dv.setInt32(16, timerId, true);
    return { signo, code, raw: encodeBase64(raw) };
  };
  const timer = (id: number, signo: number): PosixTimer => ({
    id,
    clockid: 1,
    notify: 0,
    signo,
    sigevValue: "0x0",
    tid: 0,
    value: [1, 0],
    interval: [0, 0],
    signalPending: false,
  });
  const timers = [timer(4, 35), timer(5, 36)];
  const shared = [siginfo(35, -2, 4), siginfo(35, -1, 4), siginfo(35, -2, 9)];
  const thread = [siginfo(36, -2, 5), siginfo(36, -2, 5)];
  takeTimerSignals(timers, [shared, thread]);
  assert.deepEqual(timers.map((t) => t.signalPending), [true, true]);
  // sigqueue'd (-1) and unknown-timer signals stay; a timer queues one signal at most.
  assert.deepEqual(shared.map((s) => s.code), [-1, -2]);
  assert.equal(thread.length, 1);
});

Deno.test(
  "timers: POSIX timers (same ids, clocks, notifications, pending signals), timerfds and an itimer survive two round trips",
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
    const steps = (await restorePlan(dir))[0];
    const plan = [...steps.program, ...steps.finalize].join("\n");
    assert.match(plan, /prctl\(.*# timer_create takes the ids it is given/);
    assert.match(
      plan,
      new RegExp(
        `timer_create\\(.*# POSIX timer ${threadId}: CLOCK_REALTIME, signal \\d+ to thread ${tid2}`,
      ),
    );
    assert.match(plan, /timer_settime\(.*expires at once \(its signal was pending\)/);
    assert.match(plan, /ioctl\(.*# timerfd: \d+ expirations not yet read/);

    // A restored process comes back again with the same timers (C/R/C/R).
    await dumpKillRestore(m.t);
    await Deno.writeTextFile(m.trigger, "");
    assertChecksPassed(m.t, [...TIMER_CHECKS], await m.t.wait());
  }),
);

Deno.test(
  "timers: a timer on the thread CPU clock of a single-threaded process survives",
  withTargets(async () => {
    const m = await startTriggered("rt_timers", READY, { extra: ["single"] });
    await dumpKillRestore(m.t);
    await Deno.writeTextFile(m.trigger, "");
    assertChecksPassed(
      m.t,
      ["proc-timers-same", "timer-own-thread-clock", "timer-counts-this-thread"],
      await m.t.wait(),
    );
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
