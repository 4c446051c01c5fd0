/**
 * The network lock taken before the dump reads the sockets
 * (engine/dump/mod.ts lockOutsideFirst): a peer outside the tree that
 * streams into the target's connection without pause (tests/targets/rt_tcp_stream.c)
 * no longer fails the dump. Killed and restored, or left running, the
 * target then reads the exact stream (no byte lost or duplicated); a dump
 * that fails after the lock lifts it at once.
 */

import assert from "node:assert/strict";
import { checkpoint, type DumpEvent } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { isLocked, LOCK_ROOT, staleLocks, unlockConnections } from "../engine/fds/tcp_lock.ts";
import { repoRoot, runCli } from "./helpers/commands.ts";
import { tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, startTarget, type Target, withTargets } from "./helpers/targets.ts";

const OPT_INS = ["tcp-established"];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The peer streaming (not in the tree) and the target reading, the stream flowing. */
async function streaming(extra: string[] = []): Promise<{ peer: Target; t: Target }> {
  const peer = await startTarget("rt_tcp_stream", ["serve"]);
  const port = (await peer.waitFor(/^port=(\d+)$/m))[1];
  const t = await startTarget("rt_tcp_stream", ["recv", port, ...extra]);
  await t.waitFor(/^ready pid=\d+$/m);
  await sleep(200);
  return { peer, t };
}

/** Stops the peer and checks that the target read all it sent, exactly, within `ms`. */
async function endOfStream(peer: Target, t: Target, ms: number): Promise<void> {
  Deno.kill(peer.pid, "SIGUSR1");
  const sent = (await peer.waitFor(/^sent=(\d+)$/m))[1];
  const got = await t.waitFor(/^(PASS|FAIL)$/m, ms).catch(() => null);
  assert.ok(got, `the stream did not end within ${ms} ms: ${t.output()}`);
  assert.match(t.output(), new RegExp(`^received=${sent}$`, "m"), t.output());
  const status = await t.wait();
  assert.deepEqual(status.kind === "exited" && status.code, 0, t.output());
  assert.ok(Number(sent) > 200_000, `sent ${sent}`);
}

Deno.test(
  "network lock first: a dump that kills the tree while the peer streams succeeds; the restored stream is exact",
  withTargets(async () => {
    const { peer, t } = await streaming();
    let dumpId: string | undefined;
    try {
      const events: DumpEvent[] = [];
      const dir = await tempImageDir();
      const dump = await checkpoint(t.pid, {
        dir,
        optIns: OPT_INS,
        onEvent: (e) => events.push(e),
      });
      dumpId = dump.manifest.dumpId!;
      await t.wait();
      assert.deepEqual(events.find((e) => e.type === "network-locked"), {
        type: "network-locked",
        connections: 1,
        dir: (dump.networkLock as { dir: string }).dir,
      });
      assert.equal((dump.networkLock as { connections: number }).connections, 1);
      assert.ok(isLocked(dumpId));
      await sleep(300); // the peer goes on sending: dropped, sent again after the restore
      const tree = await restore(dir, { optIns: OPT_INS });
      t.resetAfterRestore();
      for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
      assert.equal(isLocked(dumpId), false);
      await sleep(500);
      // Retransmission backs off while the tree is down: up to a few seconds.
      await endOfStream(peer, t, 20000);
      await Deno.remove(dir, { recursive: true });
    } finally {
      if (dumpId) unlockConnections(dumpId);
    }
  }),
);

Deno.test(
  "network lock first: a --leave-running dump while the peer streams succeeds and lifts the lock; the stream is exact",
  withTargets(async () => {
    const { peer, t } = await streaming();
    const events: DumpEvent[] = [];
    const dir = await tempImageDir();
    const dump = await checkpoint(t.pid, {
      dir,
      optIns: OPT_INS,
      leaveRunning: true,
      onEvent: (e) => events.push(e),
    });
    const locked = events.find((e) => e.type === "network-locked");
    assert.ok(locked && locked.type === "network-locked" && locked.connections === 1);
    assert.equal(isLocked(dump.manifest.dumpId!), false, "lifted when the tree runs on");
    await sleep(300);
    await endOfStream(peer, t, 5000);
    await Deno.remove(dir, { recursive: true });
  }),
);

Deno.test(
  "network lock first: a dump refused after the lock lifts it; the stream flows again at once",
  withTargets(async () => {
    // A deleted root (chroot into a directory removed since): refused after the lock is taken.
    const { peer, t } = await streaming(["root-deleted"]);
    const events: DumpEvent[] = [];
    const dir = await tempImageDir();
    let left = false, lockDir = "";
    try {
      await assert.rejects(
        () => checkpoint(t.pid, { dir, optIns: OPT_INS, onEvent: (e) => events.push(e) }),
        /task\.cwd-deleted|deleted/,
      );
    } finally {
      // Whatever the dump did, no lock of this test outlives it (a lock drops loopback segments).
      const locked = events.find((e) => e.type === "network-locked");
      if (locked?.type === "network-locked") {
        lockDir = locked.dir;
        const dumpId = locked.dir.split("cryo-tcp-lock-")[1];
        left = isLocked(dumpId);
        unlockConnections(dumpId);
      }
    }
    assert.ok(lockDir !== "", "the lock was taken");
    assert.equal(left, false, `${lockDir} is left`);
    // Segments dropped while locked come back at the peer's next retransmission (200 ms on).
    await endOfStream(peer, t, 3000);
  }),
);

Deno.test(
  "network lock first: a cryo killed while locked leaves a lock marked as its, which `image unlock --stale` lifts",
  withTargets(async () => {
    const { peer, t } = await streaming();
    const dir = await tempImageDir();
    const cryo = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        `${repoRoot}/cli.ts`,
        "dump",
        String(t.pid),
        "--dir",
        dir,
        "--tcp-established",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
      env: { NO_COLOR: "1", CRYO_TEST_PAUSE_AT: "collect" },
    }).spawn();
    let id: string | undefined;
    try {
      // Stopped at the collect (after the lock): killed there.
      const deadline = Date.now() + 30000;
      while (!/^T/.test(Deno.readTextFileSync(`/proc/${cryo.pid}/stat`).replace(/^.*\) /s, ""))) {
        assert.ok(Date.now() < deadline, "cryo did not reach the collect");
        await sleep(10);
      }
      id = [...Deno.readDirSync(LOCK_ROOT)].map((e) => e.name)
        .find((n) => {
          try {
            return Deno.statSync(`${LOCK_ROOT}/${n}/dumping-${cryo.pid}`).isDirectory;
          } catch {
            return false;
          }
        })?.slice("cryo-tcp-lock-".length);
      assert.ok(id, "a lock marked dumping-<cryo's pid>");
      assert.equal(staleLocks().includes(id), false, "not stale while its cryo lives");
      cryo.kill("SIGKILL");
      await cryo.status;
      assert.ok(staleLocks().includes(id), "stale once its cryo is gone");
      const out = await runCli(["image", "unlock", "--stale"]);
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, new RegExp(`lifted the network lock of dump ${id}`));
      assert.equal(isLocked(id), false);
      // The tree ran on (its tracer gone): the whole stream reaches it.
      await endOfStream(peer, t, 3000);
    } finally {
      try {
        cryo.kill("SIGKILL");
      } catch { /* exited */ }
      await cryo.status;
      if (id) unlockConnections(id);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  }),
);
