/**
 * The restore's pre-flight check that a pid of the image is not still a
 * process group or session id of a live process (engine/restore/checks.ts
 * `checkPidsFree`, which asks every process by getpgid/getsid): a group
 * and a session whose leader has exited, held by a `sleep` this test
 * starts and kills by pid. (A free pid passing the check is what every
 * round-trip test does.) A restore does not walk /proc in its preflight:
 * the creation of such a pid fails (clone3 EEXIST), and the restore then
 * names the holder the same way.
 *
 * @module
 */

import assert from "node:assert/strict";
import { checkPidsFree } from "../engine/restore/checks.ts";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { rawSyscall } from "../ffi/libc.ts";
import { SYS } from "../ffi/sysno.ts";
import { tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import type { ProcessImage } from "../engine/model.ts";
import { RestoreError } from "../engine/errors.ts";

/**
 * Starts `setsid sh -c <script>` (sh leads a new session and group and
 * exits once `sleep` runs in the background): the leader's pid (free now)
 * and the sleep's pid.
 */
async function orphanedGroup(ownGroup: boolean): Promise<{ leader: number; sleeper: number }> {
  // With ownGroup the sleep moves to a group of its own, keeping the session.
  const sleep = ownGroup
    ? `python3 -c 'import os; os.setpgid(0, 0); os.execvp("sleep", ["sleep", "60"])'`
    : "sleep 60";
  const script = `${sleep} </dev/null >/dev/null 2>&1 & echo $$ $!`;
  const out = await new Deno.Command("setsid", {
    args: ["sh", "-c", script],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const [leader, sleeper] = new TextDecoder().decode(out.stdout).trim().split(" ").map(Number);
  assert.ok(leader > 0 && sleeper > 0);
  // Until it runs sleep (after python's setpgid), its group may still be the leader's.
  for (let i = 0; i < 400; i++) {
    if (Deno.readTextFileSync(`/proc/${sleeper}/comm`).trim() === "sleep") break;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.equal(Deno.readTextFileSync(`/proc/${sleeper}/comm`).trim(), "sleep");
  return { leader, sleeper };
}

/** An image holding only what checkPidsFree reads: a pid, no threads, no zombies. */
function imageOf(pid: number): ProcessImage {
  return { pid, threads: [], zombies: [] } as unknown as ProcessImage;
}

/** Runs `check`, then kills `pid` (this test's sleep) and waits until it is gone. */
async function withSleeper(pid: number, check: () => void | Promise<void>): Promise<void> {
  try {
    await check();
  } finally {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone already */ }
    for (let i = 0; i < 200; i++) {
      try {
        Deno.statSync(`/proc/${pid}`);
      } catch {
        break;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

Deno.test("preflight: a pid still used as a process group id is refused, naming its member", async () => {
  const { leader, sleeper } = await orphanedGroup(false);
  await withSleeper(sleeper, () => {
    assert.throws(
      () => checkPidsFree([imageOf(leader)]),
      (e: unknown) =>
        e instanceof RestoreError &&
        e.message ===
          `cannot restore: pid ${leader} is still in use as the process group id of process ${sleeper}`,
    );
  });
});

Deno.test("preflight: a pid still used as a session id is refused, naming its member", async () => {
  const { leader, sleeper } = await orphanedGroup(true);
  await withSleeper(sleeper, () => {
    assert.throws(
      () => checkPidsFree([imageOf(leader)]),
      (e: unknown) =>
        e instanceof RestoreError &&
        e.message ===
          `cannot restore: pid ${leader} is still in use as the session id of process ${sleeper}`,
    );
  });
});

Deno.test(
  "restore: a pid still used as a process group id fails its creation, naming its member; nothing is left",
  withTargets(async () => {
    // The leader (setsid's pid) runs `sleep 300` once a subshell left `sleep 60` in its group.
    const child = new Deno.Command("setsid", {
      args: ["sh", "-c", "(sleep 60 </dev/null >/dev/null 2>&1 &); exec sleep 300"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const leader = child.pid;
    let sleeper = 0;
    for (let i = 0; i < 400 && !sleeper; i++) {
      const comm = Deno.readTextFileSync(`/proc/${leader}/comm`).trim();
      for (const e of Deno.readDirSync("/proc")) {
        const pid = Number(e.name);
        if (!pid || pid === leader || comm !== "sleep") continue;
        if (Number(rawSyscall(SYS.getpgid, pid)) === leader) sleeper = pid;
      }
      if (!sleeper) await new Promise((r) => setTimeout(r, 25));
    }
    assert.ok(sleeper > 0, "the sleep in the leader's group");
    await withSleeper(sleeper, async () => {
      const dir = await tempImageDir();
      await checkpoint(leader, { dir, precopy: false });
      await child.status.catch(() => {}); // killed by the dump (which may have reaped it)
      await assert.rejects(
        restore(dir),
        (e: unknown) =>
          e instanceof RestoreError &&
          e.message ===
            `cannot restore: pid ${leader} is still in use as the process group id of process ${sleeper}`,
      );
      assert.equal(rawSyscall(SYS.kill, leader, 0), -3n, "no task has the pid");
    });
  }),
);
