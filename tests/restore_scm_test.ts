/**
 * Fds in flight (SCM_RIGHTS) in unix socket queues (engine/fds/unix_scm.ts)
 * with tests/targets/rt_scm.c: a round trip (a held file's description
 * shared with the received fd, a closed file with its offset and flags, an
 * eventfd, a socketpair end with bytes queued, a held socket, a pipe write
 * end whose read end the process holds, a datagram from a sender since
 * closed, message boundaries and fd sets), a child's fd passed to its parent (one
 * description in two processes), a --leave-running dump after which the
 * target reads exactly the queue it had, an epoll fd no process holds
 * (tests/restore_scm_epoll_test.ts checks more), and a unix socket with
 * fds of its own in flight refused by name.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import {
  assertTriggeredRoundTrip,
  dumpKillRestore,
  startTriggered,
  tempImageDir,
} from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)/m;

/** The checks rt_scm.c reports in its round-trip mode. */
const CHECKS = [
  "stream-held",
  "held-shared-offset",
  "held-same-file",
  "stream-gone",
  "gone-flags",
  "gone-offset",
  "gone-same-file",
  "gone-alone",
  "stream-two",
  "two-eventfd",
  "two-held-shared",
  "stream-sock",
  "sock-queue",
  "sock-peer",
  "stream-empty",
  "seq-pipe",
  "pipe-arrives",
  "seq-after",
  "seq-socket",
  "seq-socket-same",
  "seq-empty",
  "dgram-held",
  "dgram-held-shared",
];

Deno.test(
  "fds in flight in unix socket queues come back with their messages",
  withTargets(async () => {
    await assertTriggeredRoundTrip("rt_scm", READY, [], CHECKS);
  }),
);

Deno.test(
  "a child's fd in flight to its parent shares its description with the child after the restore",
  withTargets(async () => {
    await assertTriggeredRoundTrip("rt_scm", READY, ["tree"], [
      "tree-message",
      "tree-offset",
      "tree-same-file",
      "tree-child-shares",
    ]);
  }),
);

Deno.test(
  "a --leave-running dump leaves the queues with their fds in flight as they were",
  withTargets(async () => {
    const m = await startTriggered("rt_scm", READY, { passWork: true });
    await checkpoint(m.t.pid, { dir: await tempImageDir(), leaveRunning: true });
    assert.equal(m.t.poll(), undefined, "the target died");
    await Deno.writeTextFile(m.trigger, "");
    assertChecksPassed(m.t, CHECKS, await m.t.wait());
  }),
);

/** Starts rt_scm in `mode`, checks the dump is refused with `line`, then that the fd is still queued. */
async function assertRefused(
  mode: string,
  line: RegExp,
  checks = ["epoll-still-queued"],
): Promise<void> {
  const m = await startTriggered("rt_scm", READY, { passWork: true, extra: [mode] });
  const dir = await tempImageDir();
  await assert.rejects(checkpoint(m.t.pid, { dir }), (e: unknown) => {
    assert.ok(e instanceof UnsupportedError, `expected UnsupportedError, got ${e}`);
    assert.match((e as Error).message, line);
    return true;
  });
  await assert.rejects(Deno.stat(dir), Deno.errors.NotFound, "no image is left");
  assert.equal(m.t.poll(), undefined, "the target still runs");
  await Deno.writeTextFile(m.trigger, "");
  assertChecksPassed(m.t, checks, await m.t.wait());
}

Deno.test(
  "an epoll fd in flight that no process holds, watching nothing, comes back with its message (rt_scm_epoll checks watches)",
  withTargets(async () => {
    const m = await startTriggered("rt_scm", READY, { passWork: true, extra: ["epoll"] });
    await dumpKillRestore(m.t);
    await Deno.writeTextFile(m.trigger, "");
    assertChecksPassed(m.t, ["epoll-still-queued"], await m.t.wait());
  }),
);

Deno.test(
  "a unix socket in flight that has fds in flight itself is refused by name",
  withTargets(() =>
    assertRefused(
      "socket",
      /fd \d+ \(socket:\[\d+\]\): unix sockets with file descriptors in flight.*: message 1 of its queue, passed fd 1: a socket \(socket:\[\d+\]\) that has fds in flight itself cannot be saved in flight/,
    )
  ),
);

Deno.test(
  "a stream message with fds longer than one byte is refused: where its fds begin cannot be seen",
  withTargets(() =>
    assertRefused(
      "ambiguous",
      /fd \d+ \(socket:\[\d+\]\): unix sockets with file descriptors in flight.*: message 1 of its queue carries fds with 8 bytes of a stream/,
      ["ambiguous-plain-first", "ambiguous-then-fds", "ambiguous-same-file"],
    )
  ),
);
