/**
 * Queued TCP data between two processes of the tree
 * (tests/targets/rt_tcpbuf.c: one connection, 4 MiB buffers, its four
 * queues full, both ends writing a known stream and reading the other's
 * all the time; after the restore each checks every byte and the count):
 *
 * - a kill dump: the restore program of the child, restored by inheritance
 *   (its bootstrap moved clear of its parent's, engine/memory/inherit.ts),
 *   keeps room for the queued bytes it writes back (it was refused: "does
 *   not fit the reserved bootstrap range");
 * - a pre-dump then a `--parent` dump killing the tree: the stream and its
 *   count are exact after the restore.
 */

import { restore } from "../engine/restore/mod.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { checkpointRetrying, startFullQueues, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, type Target, withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) inq=(\d+) outq=(\d+)$/m;
const CHECKS = ["stream", "count", "peer"];
const optIns = ["tcp-established"];

/** Restores `dir` as `t`, adopts the rest of the tree, triggers it and asserts its checks. */
async function restoreAndCheck(t: Target, trigger: string, dir: string): Promise<void> {
  const tree = await restore(dir, { optIns });
  t.resetAfterRestore();
  for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
  await Deno.writeTextFile(trigger, "");
  assertChecksPassed(t, CHECKS, await t.wait(60000), { what: `restored from ${dir}` });
}

/** Starts rt_tcpbuf and waits until its queues are full (at least 1 MiB each way, asserted). */
function started() {
  return startFullQueues("rt_tcpbuf", READY, "4096", 1 << 20, 1 << 20);
}

Deno.test(
  "full TCP queues between two processes of the tree: a kill dump keeps room for them in the child's restore program, exact",
  withTargets(async () => {
    const { t, trigger } = await started();
    const dir = await tempImageDir();
    await checkpointRetrying(t.pid, { dir, optIns });
    await t.wait(30000);
    await restoreAndCheck(t, trigger, dir);
  }),
);

Deno.test(
  "full TCP queues between two processes of the tree, written all along a pre-dump chain: the stream and its count exact",
  withTargets(async () => {
    const { t, trigger } = await started();
    const d1 = await tempImageDir(), d2 = await tempImageDir();
    await checkpointRetrying(t.pid, { dir: d1, preDump: true, optIns });
    await new Promise((r) => setTimeout(r, 300));
    await checkpointRetrying(t.pid, { dir: d2, parent: d1, optIns });
    await t.wait(30000);
    await restoreAndCheck(t, trigger, d2);
  }),
);
