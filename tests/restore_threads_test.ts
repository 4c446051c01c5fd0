/**
 * Round trip of a multi-threaded process: tests/targets/rt_threads.c runs
 * the main thread and five workers, each with its own TLS value, tid,
 * signal mask, name and rseq registration, parked in nanosleep (holding a
 * robust mutex), pthread_cond_wait (with a sigaltstack), a futex wait, a
 * busy loop (with a signal pending for it alone) and sigwaitinfo. It is
 * dumped, killed and restored with the same pid and tids, then every thread
 * checks itself; joins, condition variables and the robust mutex of a dead
 * owner must still work.
 */

import assert from "node:assert/strict";
import { readImageFile } from "../engine/image/reader.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { tasksOf } from "./helpers/proc.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { SIGUSR2 } from "./helpers/signals.ts";
import { withTargets } from "./helpers/targets.ts";
import { sleep } from "./helpers/wait.ts";

const KINDS = ["sleep", "condwait", "futex", "spin", "sigwait"];

/** The checks rt_threads.c reports. */
const THREAD_CHECKS = [
  "main-tid",
  "main-tls",
  "main-sigmask",
  "main-rseq",
  "pending-not-shared",
  "task-list",
  "spinner-runs",
  ...KINDS.map((k) => `join-${k}`),
  ...KINDS.flatMap((k) =>
    ["tid", "tls", "sigmask", "name", "rseq", "state", "round"].map((c) => `${k}-${c}`)
  ),
  "distinct-tls",
  "robust-owner-died",
  "tasks-gone",
  "new-thread",
];

/** The line rt_threads prints once every thread is parked. */
const READY = /^ready pid=(\d+) tids=([\d,]+)$/m;

/** Dumps rt_threads with its threads parked, restores it, and checks every thread's report. */
async function roundTripThreads(withPending: boolean): Promise<void> {
  const extra = withPending ? [] : ["nopending"];
  const { t, trigger, ready } = await startTriggered("rt_threads", READY, { extra });
  const pid = t.pid;
  const tids = ready[2].split(",").map(Number);
  assert.equal(tids.length, 6);
  assert.deepEqual(tasksOf(pid), tids);
  await sleep(200); // everyone settles in its wait

  const rt = await dumpKillRestore(t);
  assert.deepEqual(rt.tree.pids, [pid]);
  assert.equal(rt.dump.stats.threads, 6);
  assert.deepEqual(tasksOf(pid), tids, "restored with other thread ids");
  // Every thread's own personality (the target's has ADDR_NO_RANDOMIZE, 0x0040000).
  for (const tid of tids) {
    const persona = parseInt(Deno.readTextFileSync(`/proc/${pid}/task/${tid}/personality`), 16);
    assert.equal(
      persona & 0x0040000,
      0x0040000,
      `thread ${tid}: personality 0x${persona.toString(16)}`,
    );
  }

  // The fd above the fd table's first 64 is back.
  assert.equal(Deno.readLinkSync(`/proc/${pid}/fd/300`), "/dev/null");
  const proc = (await readImageFile(`${rt.dir}/${pid}.elf`)).process;
  assert.deepEqual(proc.threads.map((x) => x.tid).sort((a, b) => a - b), tids);
  const spinner = proc.threads.find((x) => x.comm === "w3-spin");
  assert.ok(spinner, `no w3-spin thread in ${proc.threads.map((x) => x.comm)}`);
  assert.equal(
    spinner.pending.some((s) => s.signo === SIGUSR2),
    withPending,
    "SIGUSR2 pending for w3",
  );
  assert.ok(!proc.sharedPending.some((s) => s.signo === SIGUSR2), "SIGUSR2 pending for all");
  for (const th of proc.threads) {
    assert.notEqual(BigInt(th.clearChildTid), 0n, `thread ${th.tid}: no clear_child_tid`);
    assert.notEqual(BigInt(th.robustList.head), 0n, `thread ${th.tid}: no robust list`);
  }

  await Deno.writeTextFile(trigger, "");
  assertChecksPassed(t, THREAD_CHECKS, await t.wait(20000));
}

Deno.test(
  "threads survive dump, kill and restore (same tids, TLS, masks, futex/cond/sleep/spin/sigwait, join, robust mutex)",
  withTargets(() => roundTripThreads(false)),
);

Deno.test({
  name: "a signal pending for one thread only (tgkill) survives dump, kill and restore",
  fn: withTargets(() => roundTripThreads(true)),
});
