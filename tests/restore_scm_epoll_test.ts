/**
 * An epoll fd in flight (SCM_RIGHTS) that no process holds, sent in two
 * messages (tests/targets/rt_scm_epoll.c, engine/fds/unix_scm.ts and
 * epoll.ts `inFlightEpollWatcher`): it comes back as one epoll with its
 * watches under their fd numbers, reporting what is ready; one whose
 * watch's number no longer holds its file is refused by name.
 */

import assert from "node:assert/strict";
import { assertChecksPassed } from "./helpers/checks.ts";
import {
  assertRefusedLeavesRunning,
  dumpKillRestore,
  startTriggered,
} from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;

const CHECKS = [
  "received",
  "kind",
  "watch-numbers",
  "ready-pipe-socket",
  "ready-eventfd",
  "eventfd-edge",
  "received-again",
  "one-description",
  "socket-drained",
];

Deno.test(
  "an epoll only messages hold comes back with its watches under their numbers, one description in both",
  withTargets(async () => {
    const m = await startTriggered("rt_scm_epoll", READY, { passWork: true });
    await dumpKillRestore(m.t);
    await Deno.writeTextFile(m.trigger, "");
    assertChecksPassed(m.t, CHECKS, await m.t.wait());
  }),
);

Deno.test(
  "an epoll in flight whose watch's number no longer holds its file is refused by name",
  withTargets(() =>
    assertRefusedLeavesRunning("rt_scm_epoll", READY, "moved", (e) => {
      assert.match(
        e.message,
        /message 1 of its queue, passed fd 1: an epoll \(anon_inode:\[eventpoll\]\) no process of the tree holds cannot be saved in flight: its watch of fd \d+ \(data 0x0*1111\) is of a file no process of the tree holds at that number/,
      );
    }, ["received", "kind"])
  ),
);
