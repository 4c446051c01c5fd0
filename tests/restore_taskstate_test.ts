/**
 * Round trips of task states: zombie children (tests/targets/rt_zombie.c),
 * stopped processes (rt_stopped.c), pending signals including stop
 * signals and SIGTRAP (rt_pending.c), threads blocked in futex waits and
 * joins (rt_futex.c); and the refusal of a vfork parent.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { becomeSubreaper, startTarget, withTargets } from "./helpers/targets.ts";
import { restore } from "../engine/restore/mod.ts";
import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";
import { pathExists, tempDir } from "./helpers/fs.ts";
import { statusField } from "./helpers/proc.ts";
import { sleep, waitUntil } from "./helpers/wait.ts";
import { collectGroupStop } from "../engine/task/stopped.ts";
import { Refusals } from "../engine/support.ts";

const SIGSTOP = 19;
const SIGTSTP = 20;
const SIGCONT = 18;

// Orphaned zombies of a killed tree come back to this process, which reaps them.
becomeSubreaper();

Deno.test(
  "zombie children come back as zombies with their pid, exit status and group",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered(
      "rt_zombie",
      /^ready pid=(\d+) zombies=([\d,]+) live=(\d+)$/m,
    );
    const zombies = ready[2].split(",").map(Number);
    const rt = await dumpKillRestore(t);
    assert.deepEqual(rt.tree.pids, [t.pid, Number(ready[3])]);
    const proc = (await readImageFile(`${rt.dir}/${t.pid}.elf`)).process;
    assert.deepEqual(proc.zombies?.map((z) => z.pid), zombies);
    assert.deepEqual(proc.zombies?.map((z) => z.waitStatus), [42 << 8, 15, 0]);
    assert.deepEqual(proc.children, [Number(ready[3])]);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, [
      "zombie-state",
      "zombie-exit-code",
      "zombie-pgrp",
      "zombie-ids",
      "no-sigchld",
      "reap-exit-42",
      "reap-sigterm",
      "reap-exit-0",
      "live-child",
      "no-other-child",
    ], await t.wait());
  }),
);

Deno.test(
  "stopped children and grandchildren come back stopped, each stop reported to the parent once",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered(
      "rt_stopped",
      /^ready pid=(\d+) children=(\d+),(\d+) grandchild=(\d+)$/m,
    );
    const [a, b, g] = [Number(ready[2]), Number(ready[3]), Number(ready[4])];
    // A dump that leaves the tree running leaves the children stopped, untraced.
    await checkpoint(t.pid, { dir: await tempImageDir(), leaveRunning: true });
    for (const pid of [a, b, g]) {
      await waitUntil(`${pid} untraced`, () => statusField(pid, "TracerPid") === "0");
      assert.match(statusField(pid, "State"), /^T /);
    }
    const rt = await dumpKillRestore(t);
    const image = async (pid: number) => (await readImageFile(`${rt.dir}/${pid}.elf`)).process;
    assert.deepEqual((await image(a)).stopped, { signal: SIGSTOP, reported: true });
    assert.deepEqual((await image(b)).stopped, { signal: SIGTSTP, reported: false });
    assert.deepEqual((await image(g)).stopped, { signal: SIGSTOP, reported: true });
    assert.equal((await image(t.pid)).stopped, undefined);
    for (const pid of [a, b, g]) assert.match(statusField(pid, "State"), /^T /);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, [
      "stopped-a",
      "stopped-b",
      "no-sigchld",
      "a-reported-once",
      "b-report-tstp",
      "b-reported-once",
      "a-continued",
      "b-continued",
      "a-exit",
      "b-exit",
    ], await t.wait());
  }),
);

Deno.test(
  "threads blocked in futex waits, nanosleep and pthread_join wake as before after a restore",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered(
      "rt_futex",
      /^ready pid=(\d+) start=(\d+)$/m,
    );
    const start = Number(ready[2]);
    await sleep(1500); // a good part of the 3 s timeouts is used up before the dump
    const dumpedAt = Date.now();
    await dumpKillRestore(t);
    const away = Date.now() - dumpedAt;
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, [
      "wait-woken",
      "rel-timeout",
      "abs-timeout",
      "sleep-done",
      "rawsleep-done",
      "join-value",
    ], await t.wait(15000));
    // An absolute deadline is kept; a nanosleep goes on for what remained.
    // Starting over would make it late by the time slept before the dump
    // (1.5 s or more); half of that is left for waking up on a loaded machine.
    const slept = dumpedAt - start;
    const woke = (name: string) =>
      Number(t.output().match(new RegExp(`^woke ${name} at=(\\d+)$`, "m"))?.[1]);
    for (const name of ["abs", "sleep", "rawsleep"]) {
      const late = woke(name) - (start + 3000) - away;
      assert.ok(
        late < slept / 2,
        `${name} woke ${late} ms late (restore took ${away} ms, ${slept} ms slept before)`,
      );
    }
  }),
);

/** The checks rt_pending.c reports. */
const PENDING_CHECKS = ["main-pending", "main-delivered", "worker-pending", "worker-delivered"];
const PENDING_READY = /^ready pid=(\d+) worker=(\d+)$/m;

Deno.test(
  "pending SIGTSTP, SIGTTIN, SIGTRAP and SIGUSR1, per thread and per process, survive a round trip",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_pending", PENDING_READY);
    const worker = Number(ready[2]);
    const rt = await dumpKillRestore(t);
    const proc = (await readImageFile(`${rt.dir}/${t.pid}.elf`)).process;
    const signos = (list: { signo: number }[]) => list.map((s) => s.signo).sort((a, b) => a - b);
    assert.deepEqual(signos(proc.threads.find((x) => x.tid === t.pid)!.pending), [5, 20]);
    assert.deepEqual(signos(proc.threads.find((x) => x.tid === worker)!.pending), [5, 10]);
    assert.deepEqual(signos(proc.sharedPending), [21]);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, PENDING_CHECKS, await t.wait());
  }),
);

Deno.test(
  "SIGSTOPs arriving all through a dump are never lost: the process comes back stopped",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_pending", PENDING_READY, {
      extra: ["after-sigcont"],
    });
    const stopper = await startTarget("rt_pending", ["stopper", String(t.pid)]);
    await sleep(50);
    const dir = await tempImageDir();
    await checkpoint(t.pid, { dir }); // injections meet SIGSTOPs and group stops
    await stopper.wait(); // it ends once the target is a zombie
    assert.match(stopper.output(), /^stopper sent=[1-9]\d*$/m);
    await t.wait();
    const tree = await restore(dir);
    t.resetAfterRestore();
    assert.deepEqual(tree.pids, [t.pid]);
    const proc = (await readImageFile(`${dir}/${t.pid}.elf`)).process;
    const stopPending = [...proc.sharedPending, ...proc.threads.flatMap((x) => x.pending)]
      .some((s) => s.signo === SIGSTOP);
    assert.ok(proc.stopped || stopPending, "neither stopped nor SIGSTOP pending in the image");
    await waitUntil("the restored process to stop", () => /^T /.test(statusField(t.pid, "State")));
    rawSyscall(SYS.kill, t.pid, SIGCONT);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, PENDING_CHECKS, await t.wait());
  }),
);

/** Asserts that dumping `pid` is refused with an UnsupportedError matching `line`, writing nothing. */
async function assertDumpRefused(pid: number, line: RegExp): Promise<void> {
  const dir = await tempImageDir();
  await assert.rejects(checkpoint(pid, { dir }), (e: unknown) => {
    assert.ok(e instanceof UnsupportedError, `expected UnsupportedError, got ${e}`);
    assert.match((e as Error).message, line);
    return true;
  });
  assert.ok(!pathExists(dir), "a refused dump left an image");
}

Deno.test(
  "zombies of a parent that now ignores SIGCHLD are refused by name; the tree goes on untouched",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered(
      "rt_zombie",
      /^ready pid=(\d+) zombies=([\d,]+) live=(\d+)$/m,
      { extra: ["ignore-sigchld"] },
    );
    const zombies = ready[2].split(",").map(Number);
    await assertDumpRefused(
      t.pid,
      new RegExp(
        `process ${t.pid} zombie child ${
          zombies[0]
        } \\(rt_zombie[^)]*\\): .*its parent now ignores SIGCHLD`,
      ),
    );
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, ["zombie-state"], await t.wait());
  }),
);

Deno.test(
  "a parent waiting in vfork is refused by name, and goes on untouched",
  withTargets(async () => {
    const t = await startTarget("rt_vfork", ["vfork"]);
    const m = await t.waitFor(/^ready pid=(\d+) child=(\d+)$/m);
    const child = Number(m[2]);
    assert.equal(Number(m[1]), t.pid);
    await assertDumpRefused(
      t.pid,
      new RegExp(
        `process ${t.pid}: parents waiting in vfork\\(\\) for their child: its child ${child} runs on its memory`,
      ),
    );
    // The child alone is refused too: it runs on its parent's memory.
    await assertDumpRefused(
      child,
      new RegExp(
        `process ${child}: .*: it runs on the memory of its parent ${t.pid} \\(vfork child\\)`,
      ),
    );
    for (const pid of [t.pid, child]) assert.equal(statusField(pid, "TracerPid"), "0");
    rawSyscall(SYS.kill, child, 9);
    const st = await t.wait();
    assert.deepEqual(st, { kind: "exited", pid: t.pid, code: 0 });
    assert.match(t.output(), /^parent resumed$/m);
  }),
);

Deno.test(
  "a dump that meets a spawn's brief vfork wait tries again and succeeds; the restored parent spawns on",
  withTargets(async () => {
    const trigger = `${await tempDir("cryo-vfork-")}/go`;
    const t = await startTarget("rt_vfork", ["spawn", trigger]);
    await t.waitFor(/^ready pid=\d+$/m);
    // Started as a child prints (it exits 60 ms later): the first freeze meets the vfork wait.
    await t.waitFor(/^spawned 1$/m);
    const rt = await dumpKillRestore(t);
    assert.deepEqual(rt.tree.pids, [t.pid]);
    await t.waitFor(/^spawned 3$/m);
    await Deno.writeTextFile(trigger, "");
    assert.deepEqual(await t.wait(), { kind: "exited", pid: t.pid, code: 0 }, t.output());
  }),
);

Deno.test(
  "a process whose main thread exited before its other thread is refused by name, and goes on",
  withTargets(async () => {
    const t = await startTarget("rt_vfork", ["leader-exit"]);
    const m = await t.waitFor(/^ready pid=(\d+) worker=(\d+)$/m);
    const worker = Number(m[2]);
    await waitUntil("the main thread to exit", () => /^Z /.test(statusField(t.pid, "State")));
    await assertDumpRefused(
      t.pid,
      new RegExp(`process ${t.pid}: processes whose main thread exited before the others`),
    );
    assert.equal(
      Number(
        Deno.readTextFileSync(`/proc/${t.pid}/task/${worker}/status`)
          .match(/^TracerPid:\s+(\d+)/m)?.[1],
      ),
      0,
    );
    rawSyscall(SYS.kill, t.pid, 10); // SIGUSR1
    const st = await t.wait();
    assert.deepEqual(st, { kind: "exited", pid: t.pid, code: 0 });
    assert.match(t.output(), /^worker done$/m);
  }),
);

Deno.test("a process stopped by a signal it now catches or blocks is refused by name", () => {
  // Not reachable by a running program (a stopped process changes nothing),
  // but a process sharing its signal actions with another (CLONE_SIGHAND) could.
  const sigactions = Array.from({ length: 64 }, () => ({
    handler: "0x0",
    flags: "0x0",
    restorer: "0x0",
    mask: "0x0",
  }));
  const image = (handler: string, sigmask: string) =>
    ({
      pid: 4242,
      ppid: 1,
      sigactions: sigactions.map((a, i) => i === SIGTSTP - 1 ? { ...a, handler } : a),
      threads: [{ tid: 4242, sigmask }],
    }) as unknown as Parameters<typeof collectGroupStop>[0];
  const refusals = new Refusals();
  assert.deepEqual(collectGroupStop(image("0x0", "0x0"), SIGTSTP, false, refusals), {
    signal: SIGTSTP,
    reported: false,
  });
  assert.deepEqual(refusals.problems, []);
  collectGroupStop(image("0x401000", "0x0"), SIGTSTP, false, refusals);
  collectGroupStop(image("0x0", `0x${(1n << 19n).toString(16)}`), SIGTSTP, false, refusals);
  collectGroupStop(image("0x401000", "0xffffffffffffffff"), SIGSTOP, false, refusals);
  assert.deepEqual(refusals.problems, [
    "process 4242 (stopped by signal 20): processes stopped by a signal they now catch or block: it now catches it",
    "process 4242 (stopped by signal 20): processes stopped by a signal they now catch or block: it now blocks it",
  ]);
});

Deno.test(
  "an ignored SIGTRAP stays ignored through a dump (leaving it running) and a restore",
  withTargets(async () => {
    // Ignored dispositions survive exec: sleep starts with SIGTRAP ignored.
    const t = await startTarget("/bin/sh", ["-c", "trap '' TRAP; exec sleep 30"]);
    await waitUntil(
      "sleep exec'd",
      () => Deno.readLinkSync(`/proc/${t.pid}/exe`).endsWith("sleep"),
    );
    const ignored = () => (BigInt(`0x${statusField(t.pid, "SigIgn")}`) & (1n << 4n)) !== 0n;
    assert.ok(ignored(), "SIGTRAP not ignored to begin with");
    await checkpoint(t.pid, { dir: await tempImageDir(), leaveRunning: true });
    await waitUntil("untraced", () => statusField(t.pid, "TracerPid") === "0");
    assert.ok(ignored(), "the dump's injected syscalls reset the ignored SIGTRAP");
    await dumpKillRestore(t);
    assert.ok(ignored(), "SIGTRAP not ignored after the restore");
  }),
);
