/**
 * Round trip of scheduling per thread (tests/targets/rt_sched.c: policies
 * OTHER, BATCH, IDLE, FIFO with SCHED_RESET_ON_FORK, RR and DEADLINE, nice
 * values, CPU affinity, timer slack, I/O priority), and restores that
 * cannot set what the image records: refused before anything is created
 * when cryo can tell (no CAP_SYS_NICE, CPUs not online), otherwise failing
 * at finalize naming the thread; either way nothing is left behind.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { planRestore } from "../engine/restore/mod.ts";
import { RestoreSession } from "../engine/restore/session.ts";
import { checkTaskState } from "../engine/task/mod.ts";
import { describeSched } from "../engine/task/sched.ts";
import { RestoreError } from "../engine/errors.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { forgetParkedStatus } from "../ffi/wait.ts";
import { pathExists } from "./helpers/fs.ts";
import { assertOneLineError, runCli } from "./helpers/commands.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) cpus=(\d+) deadline=(\d)$/m;
const ITEMS = ["policy", "priority", "nice", "affinity", "timerslack", "ioprio"];
const THREADS = ["main", "batch", "idle", "fifo", "rr"];

Deno.test(
  "scheduling of every thread survives dump, kill and restore",
  withTargets(async () => {
    const s = await startTriggered("rt_sched", READY);
    const deadline = s.ready[3] === "1";
    const threads = deadline ? [...THREADS, "deadline"] : THREADS;
    const { dir } = await dumpKillRestore(s.t);
    // The image records what the threads set (policy per thread).
    const image = await readImageFile(`${dir}/${s.t.pid}.elf`);
    const policies = image.process.threads.map((t) => t.sched?.policy).sort();
    assert.deepEqual(policies, deadline ? [0, 1, 2, 3, 5, 6] : [0, 1, 2, 3, 5]);
    await Deno.writeTextFile(s.trigger, "");
    const names = threads.flatMap((t) => [`${t}-setup`, ...ITEMS.map((i) => `${t}-${i}`)]);
    if (deadline) names.push("deadline-params");
    assertChecksPassed(s.t, names, await s.t.wait());
  }),
);

Deno.test(
  "a restore that cannot set a thread's scheduling fails naming the thread, leaving nothing",
  withTargets(async () => {
    const s = await startTriggered("rt_sched", READY);
    const pid = s.t.pid;
    const dir = await tempImageDir();
    await checkpoint(pid, { dir });
    await s.t.wait();
    // As if restored on a host without CPU 1000: the affinity cannot be set.
    const plan = await planRestore(dir);
    const thread = plan.units[0].image.threads[1];
    thread.sched!.cpus = [1000];
    forgetParkedStatus(pid);
    const session = new RestoreSession(plan.units);
    assert.throws(() => session.run(), (e: unknown) => {
      assert.ok(e instanceof RestoreError, `expected RestoreError, got ${e}`);
      assert.equal(
        e.message,
        `cannot restore the scheduling of thread ${thread.tid} of process ${pid}: ` +
          "sched_setaffinity(CPUs 1000) failed: EINVAL",
      );
      return true;
    });
    assert.equal(pathExists(`/proc/${pid}`), false, "the failed restore left the process behind");
  }),
);

Deno.test(
  "restore refuses real-time scheduling without CAP_SYS_NICE, and CPUs this host lacks, creating nothing",
  withTargets(async () => {
    const s = await startTriggered("rt_sched", READY);
    const pid = s.t.pid;
    const dir = await tempImageDir();
    await checkpoint(pid, { dir });
    await s.t.wait();
    const plan = await planRestore(dir);
    const threads = plan.units[0].image.threads;
    // The first thread (in image order) that needs CAP_SYS_NICE is named.
    const first = threads.find((t) => [1, 2, 6].includes(t.sched!.policy) || t.sched!.nice < 0)!;
    // The CLI as root without CAP_SYS_NICE.
    const r = await runCli(["restore", dir], { wrapper: ["setpriv", "--bounding-set=-sys_nice"] });
    const what = [1, 2, 6].includes(first.sched!.policy)
      ? describeSched(first.sched!)
      : `nice ${first.sched!.nice}`;
    assertOneLineError(
      r,
      1,
      new RegExp(
        `^cryo: cannot restore: thread ${first.tid} of process ${pid} has ` +
          `${what.replaceAll("|", "\\|")}, which needs CAP_SYS_NICE$`,
      ),
      "restore without CAP_SYS_NICE",
    );
    assert.equal(pathExists(`/proc/${pid}`), false, "the refused restore created the process");
    // An image whose thread may only run on CPUs this host lacks.
    const batch = threads.find((t) => t.sched?.policy === 3)!;
    batch.sched!.cpus = [1000, 1001];
    assert.throws(() => checkTaskState([plan.units[0].image]), (e: unknown) => {
      assert.ok(e instanceof RestoreError, `expected RestoreError, got ${e}`);
      assert.equal(
        e.message,
        `cannot restore: thread ${batch.tid} of process ${pid} may only run on CPUs 1000,1001, ` +
          "which this host does not have online",
      );
      return true;
    });
  }),
);
