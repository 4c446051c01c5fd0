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

import { checkpoint, type CheckpointOptions } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
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

/**
 * A dump, tried again (at most 4 times) when refused because bytes reached
 * a queue after it was read (loopback segments in flight at the freeze:
 * "try again", the tree left running).
 */
async function dumpRetrying(pid: number, opts: CheckpointOptions): Promise<void> {
  for (let i = 1;; i++) {
    try {
      await checkpoint(pid, opts);
      return;
    } catch (e) {
      if (i >= 4 || !/received data while the tree was being checkpointed/.test(String(e))) throw e;
      await Deno.remove(opts.dir, { recursive: true }).catch(() => {});
    }
  }
}

/** Starts rt_tcpbuf and waits until its queues are full (at least 1 MiB each way, asserted). */
async function started() {
  const rt = await startTriggered("rt_tcpbuf", READY, { extra: ["4096"], timeoutMs: 30000 });
  adoptPid(Number((await rt.t.waitFor(/^child pid=(\d+)$/m))[1]));
  const inq = Number(rt.ready[2]), outq = Number(rt.ready[3]);
  if (inq < 1 << 20 || outq < 1 << 20) {
    throw new Error(`queues not full: ${inq} received, ${outq} to send`);
  }
  return rt;
}

Deno.test(
  "full TCP queues between two processes of the tree: a kill dump keeps room for them in the child's restore program, exact",
  withTargets(async () => {
    const { t, trigger } = await started();
    const dir = await tempImageDir();
    await dumpRetrying(t.pid, { dir, optIns });
    await t.wait(30000);
    await restoreAndCheck(t, trigger, dir);
  }),
);

Deno.test(
  "full TCP queues between two processes of the tree, written all along a pre-dump chain: the stream and its count exact",
  withTargets(async () => {
    const { t, trigger } = await started();
    const d1 = await tempImageDir(), d2 = await tempImageDir();
    await dumpRetrying(t.pid, { dir: d1, preDump: true, optIns });
    await new Promise((r) => setTimeout(r, 300));
    await dumpRetrying(t.pid, { dir: d2, parent: d1, optIns });
    await t.wait(30000);
    await restoreAndCheck(t, trigger, d2);
  }),
);
