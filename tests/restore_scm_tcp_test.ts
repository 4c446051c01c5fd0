/**
 * An accepted TCP connection in flight (SCM_RIGHTS) that only the message
 * holds, as a master passes each connection to a worker
 * (tests/targets/rt_scm_tcp.c, engine/fds/unix_scm.ts): with its client in
 * the tree, and with the client outside (this test, `--tcp-established`).
 * After the restore the worker receives an established connection with its
 * addresses and the client's unread bytes, and it carries on both ways.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { pathExists } from "./helpers/fs.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import { startPaused } from "./helpers/kill_anywhere.ts";
import { childrenOf, commsOf, statusField } from "./helpers/proc.ts";
import { waitPid, WNOHANG } from "../ffi/wait.ts";

const READY = /^ready pid=(\d+) port=(\d+)$/m;
const TCP_OPT_IN = ["tcp-established"];

const CHECKS = ["received", "kind", "established", "addresses", "queued-bytes", "reply-sent"];

async function readText(conn: Deno.Conn, n: number): Promise<string> {
  const buf = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await conn.read(buf.subarray(got));
    if (r === null) break;
    got += r;
  }
  return new TextDecoder().decode(buf.subarray(0, got));
}

Deno.test(
  "an accepted TCP connection only a message holds, its client in the tree, comes back established with its bytes",
  withTargets(async () => {
    const m = await startTriggered("rt_scm_tcp", READY, { passWork: true, extra: ["inner"] });
    await dumpKillRestore(m.t);
    await Deno.writeTextFile(m.trigger, "");
    assertChecksPassed(
      m.t,
      [...CHECKS, "client-reads-reply", "client-sends", "second-bytes"],
      await m.t.wait(),
    );
  }),
);

/** The target in `outside` mode with this test's connection: its greeting read, our bytes unread. */
async function startOutside() {
  const m = await startTriggered("rt_scm_tcp", READY, { passWork: true, extra: ["outside"] });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(m.ready[2]) });
  await conn.write(new TextEncoder().encode("hello-from-test"));
  assert.equal(await readText(conn, 8), "greeting");
  await m.t.waitFor(/^ready queued pid=\d+$/m);
  return { m, conn };
}

Deno.test(
  "an accepted TCP connection from outside the tree only a message holds comes back with --tcp-established and carries on",
  withTargets(async () => {
    const { m, conn } = await startOutside();
    try {
      await dumpKillRestore(m.t, { optIns: TCP_OPT_IN }, { optIns: TCP_OPT_IN });
      await Deno.writeTextFile(m.trigger, "");
      assert.equal(await readText(conn, 11), "reply-after", m.t.output());
      await conn.write(new TextEncoder().encode("second"));
      assertChecksPassed(m.t, [...CHECKS, "second-bytes"], await m.t.wait());
    } finally {
      conn.close();
    }
  }),
);

Deno.test(
  "an accepted TCP connection from outside in flight needs --tcp-established, and the refused dump leaves it as it was",
  withTargets(async () => {
    const { m, conn } = await startOutside();
    try {
      const dir = await tempImageDir();
      await assert.rejects(() => checkpoint(m.t.pid, { dir }), (e: Error) => {
        assert.ok(e instanceof UnsupportedError, String(e));
        assert.match(
          e.message,
          /a socket in flight in a unix socket's queue \(tcp 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+\): needs --tcp-established/,
        );
        return true;
      });
      assert.equal(m.t.poll(), undefined, "the target died");
      assert.equal(pathExists(dir), false, "an image was left");
      await Deno.writeTextFile(m.trigger, "");
      assert.equal(await readText(conn, 11), "reply-after", m.t.output());
      await conn.write(new TextEncoder().encode("second"));
      assertChecksPassed(m.t, [...CHECKS, "second-bytes"], await m.t.wait());
    } finally {
      conn.close();
    }
  }),
);

Deno.test(
  "a --leave-running dump leaves an accepted TCP connection in flight as it was (out of repair mode)",
  withTargets(async () => {
    const m = await startTriggered("rt_scm_tcp", READY, { passWork: true, extra: ["inner"] });
    await checkpoint(m.t.pid, { dir: await tempImageDir(), leaveRunning: true });
    assert.equal(m.t.poll(), undefined, "the target died");
    await Deno.writeTextFile(m.trigger, "");
    assertChecksPassed(
      m.t,
      [...CHECKS, "client-reads-reply", "client-sends", "second-bytes"],
      await m.t.wait(),
    );
  }),
);

Deno.test(
  "restore --tcp-close gives back a connection in flight closed, like the tree's",
  withTargets(async () => {
    const m = await startTriggered("rt_scm_tcp", READY, { passWork: true, extra: ["inner"] });
    await dumpKillRestore(m.t, { tcpClose: true });
    await Deno.writeTextFile(m.trigger, "");
    await m.t.wait();
    const out = m.t.output();
    assert.match(out, /^check received ok$/m, out);
    assert.match(out, /^check kind ok$/m, out);
    // TCP_CLOSE is 7: no longer a connection, its queues dropped.
    assert.match(out, /^check established FAIL state 7$/m, out);
    assert.match(out, /^check queued-bytes FAIL/m, out);
  }),
);

/** Waits until `pid` is gone or a zombie (reaped if it is this process's child). */
async function waitGone(pid: number, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    let state: string | undefined;
    try {
      state = statusField(pid, "State")[0];
    } catch { /* gone */ }
    if (state === undefined) return;
    if (state === "Z") {
      try {
        waitPid(pid, WNOHANG);
      } catch { /* another process's child */ }
      return;
    }
    assert.ok(Date.now() < deadline, `${what} is still there (state ${state})`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test(
  "cryo dump killed while it reads the connection in flight in repair mode: the worker's connection still carries on",
  withTargets(async () => {
    const m = await startTriggered("rt_scm_tcp", READY, { passWork: true, extra: ["inner"] });
    const dir = await tempImageDir();
    // The first connection read in repair mode is the worker's client (a tree fd, its undo
    // injected), the second the accepted connection only the message holds.
    const paused = await startPaused(
      ["dump", String(m.t.pid), "--dir", dir, "--no-sync"],
      "tcp-repair:2",
    );
    const helpers = childrenOf(paused.child.pid);
    const comms = commsOf(helpers);
    paused.child.kill("SIGKILL");
    await paused.output;
    assert.equal(pathExists(dir), false, "an image was left");
    for (const h of helpers) await waitGone(h, `cryo's child ${h}`);
    // The tree goes on once its tracer is gone.
    const deadline = Date.now() + 10_000;
    while (!/^TracerPid:\s+0$/m.test(Deno.readTextFileSync(`/proc/${m.t.pid}/status`))) {
      assert.ok(Date.now() < deadline, "the target is still traced");
      await new Promise((r) => setTimeout(r, 10));
    }
    await Deno.writeTextFile(m.trigger, "");
    assertChecksPassed(
      m.t,
      [...CHECKS, "client-reads-reply", "client-sends", "second-bytes"],
      await m.t.wait(),
    );
    // The helper that stood by for the read (engine/fds/tcp_repair_helper.ts) ended by itself.
    assert.deepEqual(comms, ["cryo-repair-und"], "cryo's children: the repair-mode helper");
  }),
);
