/**
 * A dump leaves a process without a session keyring without one
 * (engine/task/keyrings.ts): asking the kernel for KEY_SPEC_SESSION_KEYRING
 * installs the user's session keyring in the asking thread's cred (a new
 * struct cred), and asking for KEY_SPEC_USER_SESSION_KEYRING creates the
 * user's keyrings; where the BPF task iterator's record says the main
 * thread's cred has none, neither is asked. tests/targets/keyring_none.c
 * runs with a real uid that owns no keys and checks itself that
 * /proc/key-users still has no line for it after the dump; the test reads
 * the record before and after.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { readThreadRecords } from "../engine/proc/thread_state_bpf.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import { threadBpfTest } from "./helpers/thread_bpf.ts";
import { waitUntil } from "./helpers/wait.ts";

const READY = /^ready pid=(\d+)$/m;

/** The uids /proc/key-users lists (those owning keys). */
function keyUsers(): Set<number> {
  return new Set(
    Deno.readTextFileSync("/proc/key-users").split("\n").map((l) => l.match(/^\s*(\d+):/))
      .filter((m) => m !== null).map((m) => Number(m[1])),
  );
}

/** A uid that owns no keys and runs no process (none is taken for granted: looked up). */
function unusedUid(): number {
  const taken = keyUsers();
  for (;;) {
    const uid = 1_500_000_000 + Math.floor(Math.random() * 1_000_000);
    if (taken.has(uid)) continue;
    const running = [...Deno.readDirSync("/proc")].some((e) => {
      if (!/^\d+$/.test(e.name)) return false;
      try {
        return Deno.statSync(`/proc/${e.name}`).uid === uid;
      } catch {
        return false;
      }
    });
    if (!running) return uid;
  }
}

/** Each thread's real_cred pointer (as in its iterator record). */
function realCreds(pid: number): Map<number, bigint> {
  return new Map(readThreadRecords(pid).map((r) => [r.tid, r.realCred]));
}

/** The session keyring state of the main thread of `pid` in its iterator record. */
function sessionOf(pid: number): string | undefined {
  return readThreadRecords(pid).find((r) => r.tid === pid)?.sessionKeyring;
}

threadBpfTest(
  "dump --leave-running of a process without a session keyring installs none, creates no keyring",
  withTargets(async () => {
    const uid = unusedUid();
    const a = await startTriggered("keyring_none", READY, { extra: [String(uid)] });
    assert.equal(sessionOf(a.t.pid), "none", "the target starts without a session keyring");
    const dir = await tempImageDir();
    await checkpoint(a.t.pid, { dir, leaveRunning: true });
    assert.equal(sessionOf(a.t.pid), "none", "the dump installed a session keyring");
    assert.ok(!keyUsers().has(uid), `the dump created keys of uid ${uid}`);
    const { process } = await readImageFile(`${dir}/${a.t.pid}.elf`);
    assert.equal(process.attrs?.sessionKeyring, undefined);
    await Deno.writeTextFile(a.trigger, "");
    assertChecksPassed(a.t, ["keyusers_before", "keyusers_after"], await a.t.wait());
  }),
);

threadBpfTest(
  "dump --leave-running of 8 threads without a session keyring: all keep one struct cred",
  withTargets(async () => {
    // The dump reads the task records of 8 threads or more (engine/dump/thread_state.ts); the
    // main thread's says it has no session keyring. Asked, the kernel gave the main thread a
    // new struct cred, and later dumps found the threads' creds differ (slower: a status each).
    const uid = unusedUid();
    const a = await startTriggered("keyring_none", READY, { extra: [String(uid), "7"] });
    await waitUntil("8 threads", () => realCreds(a.t.pid).size === 8);
    const before = realCreds(a.t.pid);
    assert.equal(new Set(before.values()).size, 1, "the threads share one struct cred");
    await checkpoint(a.t.pid, { dir: await tempImageDir(), leaveRunning: true });
    assert.deepEqual(realCreds(a.t.pid), before, "a thread's struct cred changed");
    assert.equal(sessionOf(a.t.pid), "none", "the dump installed a session keyring");
    assert.ok(!keyUsers().has(uid), `the dump created keys of uid ${uid}`);
    await Deno.writeTextFile(a.trigger, "");
    assertChecksPassed(a.t, ["keyusers_before", "keyusers_after"], await a.t.wait());
  }),
);
