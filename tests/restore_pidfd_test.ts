/**
 * Round trip of pidfds (engine/fds/pidfd.ts): tests/targets/rt_pidfd.c
 * holds a pidfd of its child and of itself, its child one of its parent;
 * after restore they name the same processes with the same flags, a signal
 * sent through the child's pidfd reaches it and waitid(P_PIDFD) reaps it.
 * The ordering rule (self, children and ancestors only) is checked on
 * made-up trees. tests/targets/rt_pidfd_dead.c holds pidfds of two reaped
 * children (one exited with 7, one killed by SIGTERM): after restore they
 * are pidfds of no process with the same exit status and flags, and its two
 * pidfds of one of them (two descriptions) still name one process.
 */

import assert from "node:assert/strict";
import type { FdInfo, ProcessImage } from "../engine/model.ts";
import { checkPidfds, planPidfd } from "../engine/fds/pidfd.ts";
import { Refusals } from "../engine/support.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) child=(\d+)$/m;

Deno.test(
  "pidfd: a parent's pidfd of its child signals and reaps it after restore",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_pidfd", READY);
    const { tree } = await dumpKillRestore(t);
    assert.deepEqual([...tree.pids].sort(), [t.pid, Number(ready[2])].sort());
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(
      t,
      ["child-pidfd", "self-pidfd", "flags", "child-running", "send-signal", "poll", "waitid"],
      await t.wait(),
    );
  }),
);

/** A minimal process image: pid, ppid, children, threads and pidfds (fd -> pid named). */
function proc(
  pid: number,
  ppid: number,
  children: number[],
  pidfds: number[],
  tids: number[] = [],
) {
  const fds: FdInfo[] = pidfds.map((target, i) => ({
    fd: 3 + i,
    kind: "pidfd",
    target: "anon_inode:[pidfd]",
    flags: 2,
    cloexec: false,
    pos: 0,
    mntId: 0,
    extra: { Pid: String(target) },
    restore: "open",
  }));
  return {
    pid,
    ppid,
    children,
    fds,
    threads: [pid, ...tids].map((tid) => ({ tid })),
  } as unknown as ProcessImage;
}

function problems(images: ProcessImage[]): string[] {
  const r = new Refusals();
  checkPidfds(images, r);
  return [...r.problems];
}

Deno.test("pidfd: only the holder, its children and its ancestors can be ordered", () => {
  // 10 -> 11 -> 13, 10 -> 12; 12 has a second thread 14.
  const tree = (fds: Record<number, number[]>) => [
    proc(10, 1, [11, 12], fds[10] ?? []),
    proc(11, 10, [13], fds[11] ?? []),
    proc(12, 10, [], fds[12] ?? [], [14]),
    proc(13, 11, [], fds[13] ?? []),
  ];
  assert.deepEqual(problems(tree({ 10: [10, 11, 12], 11: [10, 13], 13: [10, 11, 13] })), []);
  const sibling = problems(tree({ 11: [12] }));
  assert.equal(sibling.length, 1);
  assert.match(sibling[0], /^process 11 fd 3 .*other processes of the tree.*process 12 is neither/);
  assert.match(problems(tree({ 10: [13] }))[0], /process 10 fd 3 .*process 13 is neither/);
  assert.match(problems(tree({ 12: [14] }))[0], /process 12 fd 3 .*thread 14 of process 12/);
  assert.match(problems(tree({ 11: [999] }))[0], /outside the tree: pid 999 is not in the tree/);
  // An exited process (Pid: -1) is refused by the planner, not here.
  assert.deepEqual(problems(tree({ 10: [-1] })), []);
});

Deno.test(
  "pidfd: pidfds of reaped children come back naming no process, with their exit status",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_pidfd_dead", /^ready pid=(\d+)$/m);
    const { tree } = await dumpKillRestore(t);
    assert.deepEqual([...tree.pids], [t.pid]);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(
      t,
      [
        "pidfd",
        "pid",
        "exit-status",
        "flags",
        "send-signal",
        "poll",
        "same-process",
        "two-descriptions",
        "no-child",
        "no-sigchld",
      ],
      await t.wait(),
    );
  }),
);

Deno.test("pidfd: one reaped process named from two processes of the tree is refused", () => {
  const dead = (image: ProcessImage, ino: number) => {
    image.fds[0].extra = { Pid: "-1", "pidfd-exit": "0", "pidfd-ino": String(ino) };
    return image;
  };
  const tree = (a: number, b: number) => [
    dead(proc(10, 1, [11], [-1]), a),
    dead(proc(11, 10, [], [-1]), b),
  ];
  assert.deepEqual(problems(tree(500, 501)), []);
  const shared = problems(tree(500, 500));
  assert.equal(shared.length, 1);
  assert.match(shared[0], /^process 11 fd 3 .*several processes.*process 10 fd 3 names the same/);
  // Held twice by one process: one made, the other reopened from it.
  const two = proc(10, 1, [], [-1, -1]);
  for (const f of two.fds) f.extra = { Pid: "-1", "pidfd-exit": "0", "pidfd-ino": "500" };
  assert.deepEqual(problems([two]), []);
  assert.deepEqual(planPidfd(two.fds[1], two.fds), {
    kind: "pidfd",
    pid: -1,
    flags: 0,
    exit: 0,
    sameAs: 500,
  });
});

Deno.test("pidfd: a reaped process that dumped core, or a thread's, is refused", () => {
  const fd = (flags: number, extra: Record<string, string>) =>
    ({
      fd: 3,
      kind: "pidfd",
      target: "anon_inode:[pidfd]",
      flags,
      extra: { Pid: "-1", ...extra },
    }) as unknown as FdInfo;
  assert.deepEqual(planPidfd(fd(2, { "pidfd-exit": "1792", "pidfd-coredump": "0" })), {
    kind: "pidfd",
    pid: -1,
    flags: 0,
    exit: 1792,
  });
  assert.match(String(planPidfd(fd(2, { "pidfd-exit": "139" }))), /dumped core/);
  assert.match(String(planPidfd(fd(2, { "pidfd-exit": "11", "pidfd-coredump": "1" }))), /core/);
  assert.match(String(planPidfd(fd(0o200, { "pidfd-exit": "0" }))), /thread/);
  assert.match(String(planPidfd(fd(2, {}))), /no exit status/);
});
