/**
 * The check of the timer slack each restored thread read in its own run
 * (engine/task/sched.ts `checkTimerSlacks`, engine/restore/thread_state.ts):
 * a value read as recorded passes without touching /proc; any other value
 * is set from cryo and read back from /proc/<tid>/timerslack_ns, and a
 * slack that still differs fails naming the thread. Run on this test's own
 * main thread (its slack is read, never changed: the value written is the
 * one it has). The round trip with threads of other slacks is
 * tests/restore_sched_test.ts.
 */

import assert from "node:assert/strict";
import { checkTimerSlacks, type ThreadSched } from "../engine/task/sched.ts";
import { RestoreError } from "../engine/errors.ts";

const own = () => Number(Deno.readTextFileSync(`/proc/${Deno.pid}/timerslack_ns`).trim());
const image = (ns: number) => ({
  pid: Deno.pid,
  threads: [{ tid: Deno.pid, sched: { timerSlackNs: ns } as ThreadSched }],
});

Deno.test("timer slack read in the run: as recorded passes, a wrong read is checked on /proc", () => {
  const ns = own();
  assert.ok(ns > 0);
  checkTimerSlacks(image(ns), new Map([[Deno.pid, BigInt(ns)]]));
  // A read that differs (here a failed prctl's -EINVAL) goes to /proc, which has the value.
  checkTimerSlacks(image(ns), new Map([[Deno.pid, 0xffffffffffffffean]]));
  // No read for a thread: nothing to check here (restoreSched read it).
  checkTimerSlacks(image(ns + 1), new Map());
  assert.equal(own(), ns);
});

Deno.test("timer slack read in the run: a slack that cannot be set fails naming the thread", () => {
  const ns = own();
  // 0 is never written (an RT thread's slack is 0 by the kernel): a fair thread keeps its own.
  assert.throws(
    () => checkTimerSlacks(image(0), new Map([[Deno.pid, BigInt(ns)]])),
    (e: unknown) =>
      e instanceof RestoreError &&
      e.message.includes(`thread ${Deno.pid} of process ${Deno.pid}`) &&
      e.message.includes(`timerSlackNs is ${ns}, the image has 0`),
  );
  assert.equal(own(), ns);
});
