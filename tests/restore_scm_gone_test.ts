/**
 * Fds in flight (SCM_RIGHTS) that no process of the tree holds
 * (engine/fds/unix_scm.ts) with tests/targets/rt_scm_gone.c: both ends of
 * a pipe in flight (in two messages, or in one), a pipe read end whose
 * writer is gone (its bytes, then end of file), a write end whose reader is
 * gone (EPIPE), one eventfd and one pipe read end each sent in two messages
 * (one description after the restore), datagrams with fds on a socketpair
 * end whose peer was closed; and a pipe end whose other end a process
 * outside the tree holds, refused by name.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { UnsupportedError } from "../engine/errors.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { assertTriggeredRoundTrip, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)(?: outsider=(\d+))?/m;

Deno.test(
  "fds in flight no process holds come back: pipes by both ends or widowed, shared descriptions, an orphaned datagram queue",
  withTargets(async () => {
    await assertTriggeredRoundTrip("rt_scm_gone", READY, [], [
      "pair-read",
      "pair-write",
      "pair-read-end",
      "pair-write-end",
      "pair-bytes",
      "pair-one-pipe",
      "both",
      "both-ends",
      "both-bytes",
      "eof",
      "eof-end",
      "eof-bytes-then-eof",
      "epipe",
      "epipe-end",
      "epipe-no-reader",
      "twice-1",
      "twice-2",
      "twice-one-description",
      "twice-count",
      "twice-drained",
      "read-twice-1",
      "read-twice-2",
      "read-twice-one-description",
      "read-twice-bytes",
      "orphan-first",
      "orphan-eventfd",
      "orphan-second",
      "orphan-peer-gone",
    ]);
  }),
);

Deno.test(
  "an eventfd no process holds, sent in two messages, comes back one description",
  withTargets(async () => {
    await assertTriggeredRoundTrip("rt_scm_gone", READY, ["twice"], [
      "twice-1",
      "twice-2",
      "twice-one-description",
      "twice-count",
      "twice-drained",
    ]);
  }),
);

Deno.test(
  "a signalfd and an armed timerfd only messages hold come back with their mask and timer",
  withTargets(async () => {
    await assertTriggeredRoundTrip("rt_scm_gone", READY, ["timers"], [
      "signalfd",
      "signalfd-flags",
      "signalfd-mask",
      "timerfd",
      "timerfd-armed",
      "timerfd-flags",
    ]);
  }),
);

Deno.test(
  "a pipe end in flight whose other end a process outside the tree holds is refused by name",
  withTargets(async () => {
    const m = await startTriggered("rt_scm_gone", READY, { passWork: true, extra: ["outside"] });
    const outsider = Number(m.ready[2]);
    try {
      const dir = await tempImageDir();
      await assert.rejects(checkpoint(m.t.pid, { dir }), (e: unknown) => {
        assert.ok(e instanceof UnsupportedError, `expected UnsupportedError, got ${e}`);
        assert.match(
          (e as Error).message,
          /fd \d+ \(socket:\[\d+\]\): unix sockets with file descriptors in flight.*: message 1 of its queue, passed fd 1: a pipe \(pipe:\[\d+\]\) whose other end is not in the tree \(a process outside may hold it\)/,
        );
        return true;
      });
      await assert.rejects(Deno.stat(dir), Deno.errors.NotFound, "no image is left");
      assert.equal(m.t.poll(), undefined, "the target still runs");
      await Deno.writeTextFile(m.trigger, "");
      assertChecksPassed(m.t, ["outside-still-queued"], await m.t.wait());
    } finally {
      // The outsider left the test's tree: ended here, by its pid (it exits within 60 s anyway).
      if (outsider > 0) {
        try {
          Deno.kill(outsider, "SIGTERM");
        } catch { /* gone already */ }
      }
    }
  }),
);
