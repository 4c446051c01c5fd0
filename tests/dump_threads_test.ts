/**
 * The dump's injected queries of a multi-threaded process
 * (engine/dump/injected.ts): tests/targets/rt_threads.c's six threads run
 * their batches all at once (`callsTogether`: each thread's own results);
 * with `quietblocked` its sigwait thread blocks every signal a batch could
 * end with, so the session goes one thread after the other (that thread
 * by single injected syscalls). Either way the queries find each thread's
 * own state and the process comes back whole (same tids, masks,
 * sigaltstack, clear_child_tid, robust lists: the target checks itself).
 */

import assert from "node:assert/strict";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import { sleep } from "./helpers/wait.ts";
import { freezeTree, thawTree } from "../engine/dump/freeze.ts";
import { queryInjectedState, withInjection } from "../engine/dump/injected.ts";
import { readThreadStatuses } from "../engine/proc/status.ts";
import { SYS } from "../ffi/sysno.ts";

/** The line rt_threads prints once every thread is parked. */
const READY = /^ready pid=(\d+) tids=([\d,]+)$/m;

/**
 * Freezes rt_threads (`quietBlocked`: its sigwait thread blocks every quiet
 * signal), runs four getpid in every thread at once and the dump's injected
 * queries, then dumps, kills and restores it and lets it check itself.
 */
async function queriesAndRoundTrip(quietBlocked: boolean): Promise<void> {
  const { t, trigger, ready } = await startTriggered("rt_threads", READY, {
    extra: quietBlocked ? ["quietblocked"] : [],
  });
  const tids = ready[2].split(",").map(Number);
  assert.equal(tids.length, 6);
  await sleep(200); // everyone settles in its wait

  const tree = freezeTree(t.pid);
  let state;
  try {
    const statuses = readThreadStatuses(t.pid, tids);
    state = withInjection(t.pid, (s) => {
      const together = s.callsTogether(tids.map((tid) => ({
        tid,
        steps: () => [0, 1, 2, 3].map(() => ({ nr: SYS.getpid, args: [] })),
        outBytes: 64,
      })));
      if (quietBlocked) {
        assert.equal(together, undefined, "the sigwait thread has no quiet signal");
      } else {
        assert.ok(together, "every thread can run its batch");
        assert.deepEqual(together.map((x) => x.r), tids.map(() => Array(4).fill(BigInt(t.pid))));
      }
      return queryInjectedState(s, tids);
    }, statuses);
  } finally {
    thawTree(tree);
  }
  assert.deepEqual([...state.threads.keys()].sort((a, b) => a - b), tids);
  for (const [tid, th] of state.threads) {
    assert.notEqual(BigInt(th.clearChildTid), 0n, `thread ${tid}: no clear_child_tid`);
    assert.ok(th.own, `thread ${tid}: not opened for crash-safe injection`);
  }
  // rt_threads gives its condwait thread a sigaltstack of its own: exactly one has one.
  assert.equal([...state.threads.values()].filter((th) => th.sigaltstack.flags !== 2).length, 1);

  const rt = await dumpKillRestore(t);
  assert.equal(rt.dump.stats.threads, 6);
  await Deno.writeTextFile(trigger, "");
  const masks = ["main-sigmask", "sigwait-sigmask", "condwait-sigmask", "futex-sigmask"];
  assertChecksPassed(t, masks, await t.wait(20000));
}

Deno.test(
  "every thread's batch at once: each thread's own results, and the round trip holds",
  withTargets(() => queriesAndRoundTrip(false)),
);

Deno.test(
  "a thread without a quiet signal: no batches at once, one thread after the other, and the round trip holds",
  withTargets(() => queriesAndRoundTrip(true)),
);
