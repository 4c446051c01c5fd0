/**
 * Half-closed and closing TCP connections across dump, kill and restore
 * (tests/targets/rt_tcp_half.c): FIN_WAIT1 (its FIN behind unsent bytes),
 * FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING and a receive side shut by the
 * program, inside the tree, and CLOSE_WAIT and FIN_WAIT2 connections to
 * this test (outside the tree, `--tcp-established`): the target sees the
 * same states, queued bytes then EOF, EPIPE on send, and the connections
 * finish as they would have; the test sees its connections go on. With
 * `--tcp-close` (at dump, or at restore of an image dumped with
 * `--tcp-established`), every connection comes back closed: TCP_CLOSE,
 * recv 0, POLLHUP, EPIPE; a connection that ended (both FINs, fds still
 * open) comes back so without it too.
 */

import assert from "node:assert/strict";
import { checkpoint, type CheckpointOptions } from "../engine/dump/mod.ts";
import { restore, type RestoreOptions } from "../engine/restore/mod.ts";
import { unlockConnections } from "../engine/fds/tcp_lock.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { startTriggered, tempImageDir, type TriggeredTarget } from "./helpers/roundtrip.ts";
import { adoptPid, type Target, withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) port=(\d+)$/m;
const TCP_OPT_IN = ["tcp-established"];

const EXACT_CHECKS = [
  "setup-states",
  "closed-e1",
  "closed-e2",
  "states",
  "fw2-epipe",
  "cw-data-eof",
  "fw2-reads",
  "fw1-epipe",
  "r1-data-eof",
  "fw1-acked",
  "la-eof",
  "la-epipe",
  "f3-data-eof",
  "la-closed",
  "cl-eof",
  "cl-epipe",
  "f4-epipe",
  "f4-data-eof",
  "cl-closed",
  "rd-eof",
  "rd-writes",
  "ocw-data-eof",
  "ofw-epipe",
  "ofw-reads",
];

const CLOSED_CHECKS = [
  "setup-states",
  ...["fw2", "cw", "fw1", "r1", "f3", "la", "cl", "f4", "rd", "w5", "ocw", "ofw", "e1", "e2"].map((
    n,
  ) => `closed-${n}`),
];

/** The target with the test's two connections: `ocw` (its write side shut), `ofw`. */
interface Setup {
  rt: TriggeredTarget;
  ocw: Deno.TcpConn;
  ofw: Deno.TcpConn;
}

/**
 * Dumps `t` (killing it) and restores it, as helpers/roundtrip.ts
 * `dumpKillRestore` does, and lifts the dump's network lock whatever
 * happens: a failed restore leaves it (by design), and it would go on
 * dropping the test's loopback segments of these connections.
 */
async function dumpKillRestore(
  t: Target,
  opts: RestoreOptions,
  dumpOpts: Omit<CheckpointOptions, "dir">,
): Promise<void> {
  const dir = await tempImageDir();
  const dump = await checkpoint(t.pid, { ...dumpOpts, dir });
  try {
    await t.wait();
    const tree = await restore(dir, opts);
    t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
    assert.equal(tree.rootPid, t.pid, "restored with another pid");
  } finally {
    if (dump.manifest.dumpId) unlockConnections(dump.manifest.dumpId);
  }
}

async function readAll(conn: Deno.Conn): Promise<string> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(256);
  for (;;) {
    const r = await conn.read(buf);
    if (r === null) break;
    chunks.push(buf.slice(0, r));
  }
  return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
}

async function start(mode: "exact" | "closed"): Promise<Setup> {
  const rt = await startTriggered("rt_tcp_half", READY, { extra: [mode] });
  const port = Number(rt.ready[2]);
  const ocw = await Deno.connect({ hostname: "127.0.0.1", port });
  const ofw = await Deno.connect({ hostname: "127.0.0.1", port });
  await ocw.write(new TextEncoder().encode("from-test"));
  await ocw.closeWrite();
  assert.equal(await readAll(ofw), "bye"); // then EOF: the target shut down writing
  await rt.t.waitFor(/^armed /m);
  return { rt, ocw, ofw };
}

/** A test of the target in `mode`: `body` with its connections, closed after it whatever happens. */
function halfTest(name: string, mode: "exact" | "closed", body: (s: Setup) => Promise<void>) {
  Deno.test(
    name,
    withTargets(async () => {
      const s = await start(mode);
      try {
        await body(s);
      } finally {
        s.ocw.close();
        s.ofw.close();
      }
    }),
  );
}

/**
 * The exact mode's end: the trigger, then (after the target read the
 * states, before our FIN changes ofw's) our bytes and EOF on ofw, where the
 * target still reads (its peer had not shut down); on ocw the target reads
 * our bytes and EOF, replies and closes; its own checks pass.
 */
async function finishExact(s: Setup): Promise<void> {
  await Deno.writeTextFile(s.rt.trigger, "");
  await s.rt.t.waitFor(/^check states /m);
  await s.ofw.write(new TextEncoder().encode("after"));
  await s.ofw.closeWrite();
  assert.equal(await readAll(s.ocw), "reply", s.rt.t.output());
  assertChecksPassed(s.rt.t, EXACT_CHECKS, await s.rt.t.wait());
}

/** The closed mode's end: the trigger; the target's own checks pass. */
async function finishClosed(s: Setup): Promise<void> {
  await Deno.writeTextFile(s.rt.trigger, "");
  assertChecksPassed(s.rt.t, CLOSED_CHECKS, await s.rt.t.wait());
}

halfTest(
  "half-closed and closing TCP connections (inside the tree and to the outside) come back exactly, twice",
  "exact",
  async (s) => {
    // Twice: a restored half-closed connection dumps again.
    for (let round = 0; round < 2; round++) {
      await dumpKillRestore(s.rt.t, { optIns: TCP_OPT_IN }, { optIns: TCP_OPT_IN });
    }
    await finishExact(s);
  },
);

halfTest(
  "a --leave-running dump of half-closed connections leaves them as they were",
  "exact",
  async (s) => {
    const dir = await tempImageDir();
    await checkpoint(s.rt.t.pid, { dir, leaveRunning: true, optIns: TCP_OPT_IN });
    await finishExact(s);
  },
);

halfTest(
  "restore --tcp-close brings an image's connections (dumped with --tcp-established) back closed",
  "closed",
  async (s) => {
    await dumpKillRestore(s.rt.t, { tcpClose: true }, { optIns: TCP_OPT_IN });
    await finishClosed(s);
  },
);

halfTest(
  "dump --tcp-close records connections closed: no opt-in, the restore gives them back closed",
  "closed",
  async (s) => {
    const dir = await tempImageDir();
    const dump = await checkpoint(s.rt.t.pid, { dir, tcpClose: true });
    assert.deepEqual(dump.manifest.optIns ?? [], []);
    await s.rt.t.wait();
    // The original sockets were closed with the tree, as by the kernel: ocw had our bytes
    // unread, the test's end gets a reset (not repair mode's silence).
    await assert.rejects(() => readAll(s.ocw), Deno.errors.ConnectionReset);
    const tree = await restore(dir);
    s.rt.t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== s.rt.t.pid) adoptPid(pid);
    await finishClosed(s);
  },
);
