/**
 * The thread statuses read on another thread at the start of a freeze
 * (engine/proc/status_ahead.ts): opened before the freeze of
 * tests/targets/rt_threads.c (six threads), read by a syscall table once
 * it is frozen; each text is the file's content in the freeze, taken once,
 * and `readThreadStatuses` gives the same statuses as without; a thread
 * not opened ahead, or gone since its open, is read the usual way
 * (undefined here); closing leaves no fd open.
 */

import assert from "node:assert/strict";
import { startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import { sleep } from "./helpers/wait.ts";
import { freezeTree, thawTree } from "../engine/dump/freeze.ts";
import { type ProcStatus, readThreadStatuses } from "../engine/proc/status.ts";
import {
  closeStatusesAhead,
  openStatusesAhead,
  startStatusReads,
  statusAheadStats,
  takeStatusAhead,
} from "../engine/proc/status_ahead.ts";
import { tablesAvailable } from "../ffi/syscall_table.ts";

const READY = /^ready pid=(\d+) tids=([\d,]+)$/m;
const fdCount = () => [...Deno.readDirSync("/proc/self/fd")].length;

/**
 * The statuses without SigQ (the queued signals of the user: every process of
 * the same uid on the host changes it between two reads).
 */
function withoutSigQ(m: Map<number, ProcStatus>) {
  return new Map([...m].map(([tid, st]) => {
    const { sigQ: _, fields, ...rest } = st;
    const { SigQ: __, ...f } = fields;
    return [tid, { ...rest, fields: f }];
  }));
}

Deno.test({
  name: "statuses read ahead in a freeze: the texts of the freeze, once each, the same statuses",
  ignore: !tablesAvailable(),
  fn: withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_threads", READY);
    const tids = ready[2].split(",").map(Number);
    await sleep(200);
    const fds = fdCount();
    openStatusesAhead(t.pid, 1);
    assert.equal(fdCount(), fds + tids.length, "one fd per thread");
    const tree = freezeTree(t.pid);
    try {
      startStatusReads(t.pid, tids);
      const taken = statusAheadStats.taken;
      for (const tid of tids.slice(0, 3)) {
        const text = takeStatusAhead(t.pid, tid);
        // (Its SigQ line counts every queued signal of the user: other processes move it.)
        const sigQ = /^SigQ:.*$/m;
        assert.equal(
          text?.replace(sigQ, ""),
          Deno.readTextFileSync(`/proc/${t.pid}/task/${tid}/status`).replace(sigQ, ""),
        );
        assert.match(text!, /^State:\s+t \(tracing stop\)$/m, "read in the freeze");
        assert.equal(takeStatusAhead(t.pid, tid), undefined, "taken once");
      }
      assert.equal(statusAheadStats.taken - taken, 3);
      assert.equal(takeStatusAhead(t.pid, t.pid + 1_000_000), undefined, "not opened ahead");
      assert.equal(takeStatusAhead(t.pid + 1, tids[4]), undefined, "another process");
      // The rest through readThreadStatuses: the same as read the usual way.
      const got = readThreadStatuses(t.pid, tids);
      assert.equal(statusAheadStats.taken - taken, tids.length);
      assert.deepEqual(withoutSigQ(got), withoutSigQ(readThreadStatuses(t.pid, tids)));
    } finally {
      closeStatusesAhead();
      thawTree(tree);
    }
    // Closed on another thread (not waited for in a freeze): soon.
    for (let i = 0; i < 100 && fdCount() !== fds; i++) await sleep(10);
    assert.equal(fdCount(), fds, "closed");
    assert.equal(takeStatusAhead(t.pid, tids[0]), undefined, "closed: nothing ahead");
    await Deno.writeTextFile(trigger, "");
    await t.wait(30000);
  }),
});

Deno.test({
  name: "a status opened ahead whose thread is gone at the read: read the usual way",
  ignore: !tablesAvailable(),
  async fn() {
    const child = new Deno.Command("sleep", { args: ["60"] }).spawn();
    try {
      openStatusesAhead(child.pid, 1);
      child.kill("SIGKILL");
      await child.status;
      startStatusReads(child.pid, [child.pid]);
      assert.equal(takeStatusAhead(child.pid, child.pid), undefined);
    } finally {
      closeStatusesAhead();
      try {
        child.kill("SIGKILL");
      } catch { /* reaped */ }
    }
  },
});

Deno.test({
  name: "statuses read ahead: only the threads stopped when the reads started are taken",
  ignore: !tablesAvailable(),
  fn: withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_threads", READY);
    const tids = ready[2].split(",").map(Number);
    await sleep(200);
    openStatusesAhead(t.pid, 1);
    const tree = freezeTree(t.pid);
    try {
      startStatusReads(t.pid, tids.slice(0, 2)); // as if only these had stopped yet
      assert.equal(takeStatusAhead(t.pid, tids[2]), undefined, "not stopped at the start");
      assert.equal(
        takeStatusAhead(t.pid, tids[1]),
        Deno.readTextFileSync(`/proc/${t.pid}/task/${tids[1]}/status`),
      );
      assert.deepEqual(
        withoutSigQ(readThreadStatuses(t.pid, tids)),
        withoutSigQ(readThreadStatuses(t.pid, tids)),
      );
    } finally {
      closeStatusesAhead();
      thawTree(tree);
    }
    await Deno.writeTextFile(trigger, "");
    await t.wait(30000);
  }),
});
