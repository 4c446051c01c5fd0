/**
 * Processes caught in odd states at dump time (tests/targets/rt_oddstate.c):
 * waiting in a syscall that swaps the signal mask for its duration
 * (sigsuspend, ppoll, pselect, epoll_pwait), in sigtimedwait, inside a
 * signal handler on an altstack (SA_NODEFER|SA_RESETHAND), with several
 * queued values of one real-time signal. Each is dumped (killed), restored,
 * woken, and checks itself.
 */

import { assertChecksPassed } from "./helpers/checks.ts";
import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import { sleep, waitUntil } from "./helpers/wait.ts";
import { SYS } from "../ffi/sysno.ts";

const READY = /^ready pid=(\d+)$/m;
const SIGUSR1 = 10;

/** Whether a thread of `pid` waits in syscall `nr` (from /proc/<pid>/task/<tid>/syscall). */
function inSyscall(pid: number, nr: number): boolean {
  try {
    for (const e of Deno.readDirSync(`/proc/${pid}/task`)) {
      const text = Deno.readTextFileSync(`/proc/${pid}/task/${e.name}/syscall`);
      if (Number(text.split(" ")[0]) === nr) return true;
    }
  } catch { /* gone meanwhile */ }
  return false;
}

const MASKED: [string, number][] = [
  ["sigsuspend", 130],
  ["ppoll", SYS.ppoll],
  ["pselect", SYS.pselect6],
  ["epoll_pwait", SYS.epoll_pwait],
  ["sigtimedwait", SYS.rt_sigtimedwait],
];

// Alone, with 9 more threads (per-thread state from the BPF iterator where
// it is loaded: no injection into the waiter), in a worker thread.
const HOW = [["main thread", ""], ["with 9 threads", "threads"], ["in a worker", "worker"]];

for (const [mode, nr] of MASKED) {
  for (const [label, how] of HOW) {
    Deno.test(
      `odd state ${mode} (${label}): dumped inside the call, the mask after it is the one before it`,
      withTargets(async () => {
        const a = await startTriggered("rt_oddstate", READY, { extra: [mode, how] });
        await waitUntil(`${mode} entered`, () => inSyscall(a.t.pid, nr));
        await dumpKillRestore(a.t);
        await waitUntil(`${mode} re-entered`, () => inSyscall(a.t.pid, nr));
        a.t.signal(SIGUSR1);
        const checks = mode === "sigtimedwait"
          ? ["sigtimedwait", "mask-after"]
          : ["call", "handler-mask", "mask-after"];
        assertChecksPassed(a.t, checks, await a.t.wait());
      }),
    );
  }
}

for (
  const [mode, checks] of [
    ["inhandler", ["handler-ran", "altstack", "nodefer", "resethand", "mask-after", "local"]],
    ["rtqueue", ["queued-11", "queued-22", "queued-33"]],
    ["wait4", ["wait4"]],
  ] as const
) {
  Deno.test(
    `odd state ${mode}: comes back as it was`,
    withTargets(async () => {
      const a = await startTriggered("rt_oddstate", READY, { extra: [mode] });
      if (mode === "wait4") await waitUntil("wait4 entered", () => inSyscall(a.t.pid, SYS.wait4));
      await dumpKillRestore(a.t);
      await Deno.writeTextFile(a.trigger, "");
      assertChecksPassed(a.t, checks, await a.t.wait());
    }),
  );
}

Deno.test(
  "odd state select: dumped inside a select with a 3 s timeout, it times out no earlier than 3 s",
  withTargets(async () => {
    const a = await startTriggered("rt_oddstate", READY, { extra: ["select"] });
    await waitUntil(
      "select entered",
      () => inSyscall(a.t.pid, SYS.select) || inSyscall(a.t.pid, SYS.pselect6),
    );
    await sleep(1000);
    const dir = await tempImageDir();
    await checkpoint(a.t.pid, { dir });
    await a.t.wait();
    // 1.5 s in the image: a restart that counted the time the image lay
    // (or a timeout cut short) would wake before its 3 s.
    await sleep(1500);
    const tree = await restore(dir);
    a.t.resetAfterRestore();
    assert.equal(tree.rootPid, a.t.pid);
    assertChecksPassed(a.t, ["select", "select-elapsed"], await a.t.wait());
  }),
);

Deno.test(
  "odd state futexrt: a FUTEX_CLOCK_REALTIME absolute wait times out at its deadline across a restore",
  withTargets(async () => {
    const a = await startTriggered("rt_oddstate", READY, { extra: ["futexrt"] });
    await waitUntil("futex entered", () => inSyscall(a.t.pid, SYS.futex));
    const dir = await tempImageDir();
    await checkpoint(a.t.pid, { dir });
    await a.t.wait();
    // The deadline is 3 s after it began: a relative restart would wake late.
    await sleep(2500);
    const tree = await restore(dir);
    a.t.resetAfterRestore();
    assert.equal(tree.rootPid, a.t.pid);
    assertChecksPassed(a.t, ["futexrt", "futexrt-deadline"], await a.t.wait());
  }),
);
