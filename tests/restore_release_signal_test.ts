/**
 * A signal that reaches a restored thread before it is back in the call
 * the freeze interrupted (engine/task/syscalls.ts `reissueInterrupted`):
 * the kernel decides, as for the live thread. tests/targets/rt_release_signal.c
 * waits in a call with a SIGUSR1 handler; it is stopped (SIGSTOP), dumped
 * and restored stopped (or dumped with --leave-running: engine/task/eintr.ts
 * `rewindStopEintr` sets its epoll wait to be issued again), then sent SIGUSR1
 * and SIGCONT: the handler runs and the call ends in EINTR (or, with
 * SA_RESTART, waits on and returns its byte). Set back in user space, the
 * handler ran before the call was issued again, which then slept on. An
 * epoll wait its own stop ended sees that EINTR at SIGCONT alone, as without
 * a dump (engine/task/eintr.ts `keepGroupStopEintr`). Each mode is also run
 * without a dump, to show the expectation is the kernel's own.
 */

import assert from "node:assert/strict";
import { assertChecksPassed } from "./helpers/checks.ts";
import { statusField } from "./helpers/proc.ts";
import { checkpoint } from "../engine/dump/mod.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { SIGCONT, SIGSTOP, SIGUSR1 } from "./helpers/signals.ts";
import { withTargets } from "./helpers/targets.ts";
import { waitUntil } from "./helpers/wait.ts";

const READY = /^ready pid=(\d+)$/m;

/** The syscall number each mode waits in (/proc/<pid>/syscall). */
const CALLS: Record<string, number> = {
  "read": 0,
  "read-restart": 0,
  "epoll": 232,
  "epoll-cont": 232,
  "nanosleep": 230, // glibc: clock_nanosleep
  "futex": 202,
};

const stateOf = (pid: number) => statusField(pid, "State")[0];

/** What is done to the stopped target: nothing, a dump that leaves it running, a dump and restore. */
const HOW = {
  live: "the live",
  "leave-running": "a dumped (--leave-running)",
  restored: "the restored",
} as const;

for (const [mode, nr] of Object.entries(CALLS)) {
  for (const [how, what] of Object.entries(HOW)) {
    Deno.test(
      `release signal (${mode}): a signal sent to ${what} stopped thread before it runs again ${
        mode === "read-restart"
          ? "restarts the call after the handler"
          : mode === "epoll-cont"
          ? "(none: SIGCONT alone) sees the EINTR its stop made"
          : "ends the call in EINTR"
      }`,
      withTargets(async () => {
        const { t, trigger } = await startTriggered("rt_release_signal", READY, { extra: [mode] });
        await waitUntil(
          "in its call",
          () => Deno.readTextFileSync(`/proc/${t.pid}/syscall`).startsWith(`${nr} `),
        );
        t.signal(SIGSTOP);
        await waitUntil("stopped", () => stateOf(t.pid) === "T");
        if (how === "restored") await dumpKillRestore(t);
        if (how === "leave-running") {
          await checkpoint(t.pid, { dir: await tempImageDir(), leaveRunning: true });
        }
        assert.equal(stateOf(t.pid), "T", "still stopped");
        if (mode !== "epoll-cont") t.signal(SIGUSR1);
        t.signal(SIGCONT);
        if (mode === "read-restart") {
          // The read waits on: nothing is printed before the byte comes.
          await new Promise((r) => setTimeout(r, 100));
          assert.doesNotMatch(t.output(), /check call/);
        } else {
          // A call issued again after the handler waits on: the byte (or the sleep's end)
          // makes it return otherwise than EINTR, and the check fails, without a time-out.
          await waitUntil("the call's end", () => /check call/.test(t.output()), 2000)
            .catch(() => {});
        }
        await Deno.writeTextFile(trigger, "");
        assertChecksPassed(t, ["call"], await t.wait());
      }),
    );
  }
}
