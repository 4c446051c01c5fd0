/**
 * The final freeze's warm-up (engine/dump/rehearsal.ts `warmUpFinalFreeze`)
 * leaves POOL_THREADS_WARMED threads of Deno's blocking pool ready: as many
 * off-thread syscalls at once afterwards (the validation's and the page
 * plan's walks, one per segment, in the freeze) make no thread of their own.
 */

import assert from "node:assert/strict";
import { POOL_THREADS_WARMED, warmUpFinalFreeze } from "../engine/dump/rehearsal.ts";
import { rawSyscallOffThread } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";

/** The blocking pool's threads (named by tokio; V8's own workers, which it may start any time, are not). */
const threadCount = () =>
  [...Deno.readDirSync("/proc/self/task")].filter((e) => {
    try {
      return Deno.readTextFileSync(`/proc/self/task/${e.name}/comm`).startsWith("tokio-runtime");
    } catch {
      return false; // a thread that ended meanwhile
    }
  }).length;

Deno.test("the final freeze's warm-up leaves the blocking pool threads its walks take", async () => {
  await warmUpFinalFreeze();
  const before = threadCount();
  // Each call sleeps 30 ms: all of them hold a pool thread at the same time.
  const ts = new BigInt64Array([0n, 30_000_000n]);
  const results = await Promise.all(
    Array.from({ length: POOL_THREADS_WARMED }, () => rawSyscallOffThread(SYS.nanosleep, ts, 0)),
  );
  assert.deepEqual(results, results.map(() => 0n));
  assert.ok(threadCount() <= before, `threads ${before} -> ${threadCount()}`);
});
