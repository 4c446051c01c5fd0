/**
 * Round trips of per-process kernel state first probed by
 * tests/targets/rt_probe.c: memory-deny-write-execute, TSC mode, MCE kill
 * policy, PR_SET_IO_FLUSHER, speculation controls (also force-disabled), coredump_filter, a command line rewritten in place, the exe link,
 * auxv and mm fields, fd status and descriptor flags, pipe size, eventfd
 * semaphore mode, utilization clamps, ITIMER_PROF, a clock_nanosleep
 * (TIMER_ABSTIME) across a restore, epoll watch flags (EPOLLONESHOT armed
 * and disarmed, EPOLLET, EPOLLEXCLUSIVE). Refused: a child cloned with an
 * exit signal other than SIGCHLD, syscall user dispatch and a process
 * keyring by dump (the target runs on untouched), a joined session keyring
 * by restore. Items this kernel refuses at setup are reported by the target
 * as unavailable and not checked.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { RestoreError, UnsupportedError } from "../engine/errors.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { pathExists } from "./helpers/fs.ts";
import { statusField } from "./helpers/proc.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;

const ROUND_TRIPS: [string, string[]][] = [
  ["mdwe", ["mdwe"]],
  ["tsc", ["tsc"]],
  ["mce", ["mce"]],
  ["ioflusher", ["ioflusher"]],
  ["spec", ["spec"]],
  ["specforce", ["specforce"]],
  ["coredump", ["coredump"]],
  ["cmdline", ["cmdline"]],
  ["mmfields", ["exe", "auxv", "mm-fields"]],
  ["fdflags", ["fdflags", "pipe-size", "eventfd-semaphore"]],
  ["uclamp", ["uclamp"]],
  ["itprof", ["itprof"]],
  ["epoll", [
    "epoll-oneshot-disarmed",
    "epoll-oneshot-armed",
    "epoll-oneshot-once",
    "epoll-et",
    "epoll-exclusive",
  ]],
];

for (const [item, checks] of ROUND_TRIPS) {
  Deno.test(
    `probe ${item}: the state comes back after dump, kill and restore`,
    withTargets(async () => {
      const a = await startTriggered("rt_probe", READY, { extra: [item] });
      await dumpKillRestore(a.t);
      await Deno.writeTextFile(a.trigger, "");
      const status = await a.t.wait();
      // Unavailable on this kernel: nothing to check (the target said so).
      const unavailable = new RegExp(`^info ${item}=unavailable`, "m").test(a.t.output());
      if (unavailable) console.log(`probe ${item}: not available on this machine, not checked`);
      assertChecksPassed(a.t, unavailable ? [] : checks, status);
    }),
  );
}

Deno.test(
  "probe absleep: a clock_nanosleep(TIMER_ABSTIME) wakes at its deadline, not later, after a restore",
  withTargets(async () => {
    const a = await startTriggered("rt_probe", READY, { extra: ["absleep"] });
    const dir = await tempImageDir();
    await checkpoint(a.t.pid, { dir });
    await a.t.wait();
    // The sleep ends 3 s after it began: restore 2.5 s after, so a relative
    // restart (in full or of the time left at dump) would wake it late.
    await new Promise((r) => setTimeout(r, 2500));
    const tree = await restore(dir);
    a.t.resetAfterRestore();
    assert.equal(tree.rootPid, a.t.pid);
    await Deno.writeTextFile(a.trigger, "");
    assertChecksPassed(a.t, ["absleep"], await a.t.wait());
  }),
);

Deno.test(
  "dump refuses a child cloned with an exit signal other than SIGCHLD; the target runs on untouched",
  withTargets(async () => {
    const a = await startTriggered("rt_probe", READY, { extra: ["exitsig"] });
    const child = Number(a.t.output().match(/^info child=(\d+)/m)![1]);
    const dir = await tempImageDir();
    await assert.rejects(checkpoint(a.t.pid, { dir }), (e: unknown) => {
      assert.ok(e instanceof UnsupportedError, `expected UnsupportedError, got ${e}`);
      assert.match(
        e.message,
        new RegExp(
          `process ${child}: children cloned with an exit signal other than SIGCHLD \\(or none\\): ` +
            `its exit sends its parent ${a.t.pid} signal 12, not SIGCHLD`,
        ),
      );
      return true;
    });
    assert.equal(pathExists(dir), false, "the refused dump left an image");
    assert.equal(statusField(a.t.pid, "TracerPid"), "0");
    await Deno.writeTextFile(a.trigger, "");
    assertChecksPassed(a.t, ["exitsig-stat", "exitsig-signal"], await a.t.wait());
  }),
);

Deno.test(
  "dump refuses a process keyring; the target runs on untouched",
  withTargets(async () => {
    const a = await startTriggered("rt_probe", READY, { extra: ["keyring"] });
    const dir = await tempImageDir();
    await assert.rejects(checkpoint(a.t.pid, { dir }), (e: unknown) => {
      assert.ok(e instanceof UnsupportedError, `expected UnsupportedError, got ${e}`);
      assert.match(
        e.message,
        new RegExp(
          `process ${a.t.pid}: thread and process keyrings \\(keyctl\\): it has a process keyring \\(\\d+\\)`,
        ),
      );
      return true;
    });
    assert.equal(pathExists(dir), false, "the refused dump left an image");
    await Deno.writeTextFile(a.trigger, "");
    assertChecksPassed(
      a.t,
      ["keyring-session", "keyring-key", "keyring-process"],
      await a.t.wait(),
    );
  }),
);

Deno.test(
  "restore refuses a session keyring other than the restorer's, creating nothing",
  withTargets(async () => {
    const a = await startTriggered("rt_probe", READY, { extra: ["sessionkeyring"] });
    const dir = await tempImageDir();
    await checkpoint(a.t.pid, { dir });
    await a.t.wait();
    await assert.rejects(restore(dir), (e: unknown) => {
      assert.ok(e instanceof RestoreError, `expected RestoreError, got ${e}`);
      assert.match(
        e.message,
        new RegExp(
          `^cannot restore: process ${a.t.pid} had session keyring \\d+, ` +
            `restored processes get the restorer's \\(\\w+\\)$`,
        ),
      );
      return true;
    });
    assert.equal(pathExists(`/proc/${a.t.pid}`), false, "the refused restore created the process");
  }),
);

Deno.test(
  "an empty session keyring of its own (a login's, a service's) is not recorded: restored",
  withTargets(async () => {
    const a = await startTriggered("rt_probe", READY, { extra: ["emptyring"] });
    const dir = await tempImageDir();
    await checkpoint(a.t.pid, { dir });
    await a.t.wait();
    const tree = await restore(dir);
    a.t.resetAfterRestore();
    assert.deepEqual(tree.pids, [a.t.pid]);
    await Deno.writeTextFile(a.trigger, "");
    assertChecksPassed(a.t, ["emptyring"], await a.t.wait());
  }),
);

Deno.test(
  "the user's fallback session keyring (holding the user keyring) is not recorded",
  withTargets(async () => {
    // A process that joined no session keyring gets its user's session keyring, which links
    // the user keyring: it holds a key, and the restorer of another user namespace has
    // another one. It was recorded (the query asked for the user keyring, KEY_SPEC -4, in
    // place of the user's session keyring, -5) and a rootless restore refused it.
    const a = await startTriggered("rt_probe", READY, { extra: ["mce"] });
    const dir = await tempImageDir();
    await checkpoint(a.t.pid, { dir, leaveRunning: true });
    const { process } = await readImageFile(`${dir}/${a.t.pid}.elf`);
    assert.equal(process.attrs?.sessionKeyring, undefined, "a session keyring was recorded");
    await Deno.writeTextFile(a.trigger, "");
    assertChecksPassed(a.t, ["mce"], await a.t.wait());
  }),
);

Deno.test(
  "dump refuses syscall user dispatch before injecting anything; the target runs on untouched",
  withTargets(async () => {
    const a = await startTriggered("rt_probe", READY, { extra: ["sud"] });
    const dir = await tempImageDir();
    await assert.rejects(checkpoint(a.t.pid, { dir }), (e: unknown) => {
      assert.ok(e instanceof UnsupportedError, `expected UnsupportedError, got ${e}`);
      assert.match(
        e.message,
        new RegExp(
          `process ${a.t.pid} thread ${a.t.pid}: syscall user dispatch ` +
            "\\(PR_SET_SYSCALL_USER_DISPATCH\\): not saved yet",
        ),
      );
      return true;
    });
    assert.equal(pathExists(dir), false, "the refused dump left an image");
    assert.equal(statusField(a.t.pid, "TracerPid"), "0");
    await Deno.writeTextFile(a.trigger, "");
    assertChecksPassed(a.t, ["sud"], await a.t.wait());
  }),
);
