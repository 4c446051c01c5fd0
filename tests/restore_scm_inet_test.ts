/**
 * TCP and UDP sockets in flight (SCM_RIGHTS) in a unix socket queue
 * (engine/fds/unix_scm.ts) with tests/targets/rt_scm_inet.c: a listener
 * the process holds (one description with the received fd) and a bound
 * UDP socket only the message holds come back bound, listening and
 * receiving; a listener only the message holds; and a TCP connection only
 * a message holds (tests/restore_scm_tcp_test.ts checks it further).
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { pathExists } from "./helpers/fs.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import {
  assertTriggeredRoundTrip,
  dumpKillRestore,
  startTriggered,
  tempImageDir,
} from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)(?: port=(\d+))?/m;

/** What the target checks of its UDP socket in flight (every mode but conn). */
const UDP_CHECKS = ["udp", "udp-bound", "udp-receives", "udp-again", "udp-one-description"];
/** What it checks in mode gone: the listener only a message holds, the UDP socket. */
const GONE_CHECKS = ["listener", "listener-bound", "listener-accepts", ...UDP_CHECKS];

Deno.test(
  "a TCP listener held and in flight and a UDP socket only in flight come back with their messages",
  withTargets(async () => {
    await assertTriggeredRoundTrip("rt_scm_inet", READY, [], [
      "listener",
      "listener-bound",
      "listener-one-description",
      "listener-accepts",
      ...UDP_CHECKS,
    ]);
  }),
);

Deno.test(
  "a TCP listener only a message holds comes back listening on its port",
  withTargets(async () => {
    await assertTriggeredRoundTrip("rt_scm_inet", READY, ["gone"], GONE_CHECKS);
  }),
);

Deno.test(
  "a TCP connection only a message holds comes back connected to its client (rt_scm_tcp checks more)",
  withTargets(async () => {
    const m = await startTriggered("rt_scm_inet", READY, { passWork: true, extra: ["conn"] });
    await dumpKillRestore(m.t);
    await Deno.writeTextFile(m.trigger, "");
    assertChecksPassed(m.t, ["conn-still-queued", "conn-peer"], await m.t.wait());
  }),
);

Deno.test(
  "a --leave-running dump leaves the TCP and UDP sockets in flight as they were",
  withTargets(async () => {
    await assertTriggeredRoundTrip("rt_scm_inet", READY, ["gone"], GONE_CHECKS, {
      leaveRunning: true,
    });
  }),
);

Deno.test(
  "a restore whose port of a listener in flight is taken fails before creating anything, naming it",
  withTargets(async () => {
    const m = await startTriggered("rt_scm_inet", READY, { passWork: true, extra: ["gone"] });
    const port = Number(m.ready[2]);
    const dir = await tempImageDir();
    await checkpoint(m.t.pid, { dir });
    await m.t.wait();
    const squatter = Deno.listen({ hostname: "127.0.0.1", port });
    try {
      await assert.rejects(
        () => restore(dir),
        new RegExp(
          `a socket in flight on a socket of process \\d+ \\(tcp listen 127\\.0\\.0\\.1:${port}\\): its address is in use \\(EADDRINUSE\\)`,
        ),
      );
      assert.equal(pathExists(`/proc/${m.t.pid}`), false, "a process was created");
    } finally {
      squatter.close();
    }
    const tree = await restore(dir);
    m.t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== m.t.pid) adoptPid(pid);
    await Deno.writeTextFile(m.trigger, "");
    assertChecksPassed(m.t, ["listener", "listener-bound", "listener-accepts"], await m.t.wait());
  }),
);
