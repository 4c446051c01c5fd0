/**
 * A second probe of fd state (tests/targets/rt_fdprobe2.c, one mode per
 * piece of state): epoll watches (one-shot fired or armed, edge-triggered,
 * exclusive, wakeup, nested, a watch whose fd number was closed or reused,
 * one file under two numbers), inotify watch flags, timerfd flags and
 * clocks, a signalfd with a signal pending, memfd seals, a thread owning an
 * fd's signals, write-life hints and unix socket options and queues. Each
 * mode is dumped (killed), restored, and checks itself; what cannot come
 * back exactly is refused by name and the target runs on.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import {
  assertRefusedLeavesRunning,
  dumpKillRestore,
  startTriggered,
  tempImageDir,
} from "./helpers/roundtrip.ts";
import { restore } from "../engine/restore/mod.ts";
import { RestoreError } from "../engine/errors.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;

/** Modes that come back exactly, with the checks each must pass. */
const ROUND_TRIPS: Record<string, string[]> = {
  "pipe-widowed": ["pipe-widowed", "pipe-widowed-write"],
  "pipe-widowed-shared": ["pipe-widowed-shared-child", "pipe-widowed-shared"],
  "ep-reused": ["ep-reused-other", "ep-closed-watch"],
  "ep-armed": ["ep-armed-fires", "ep-armed-once"],
  "ep-exclusive": ["ep-exclusive", "ep-wakeup"],
  "ep-nested": ["ep-nested-outer", "ep-nested-inner"],
  "ep-closed": ["ep-closed-stays-closed", "ep-closed-watch"],
  "ep-shared-closed": [
    "ep-shared-closed-stays-closed",
    "ep-shared-closed-watch",
    "ep-shared-child",
  ],
  "ep-twofds": ["ep-twofds"],
  "in-symlink": ["in-symlink-target-quiet", "in-symlink-link"],
  "in-masks": ["in-oneshot", "in-mask-add", "in-excl-unlink"],
  "tfd-flags": [
    "tfd-cancel-on-set",
    "tfd-realtime-abs",
    "tfd-boottime",
    "tfd-boottime-left",
    "tfd-ticks",
  ],
  "sfd-pending": ["sfd-pending", "sfd-mask"],
  "memfd-seals": [
    "memfd-seals",
    "memfd-seal-write",
    "memfd-noexec-seal",
    "memfd-exec-seals",
    "memfd-noexec-mode",
    "memfd-exec-mode",
    "memfd-noexec-chmod",
  ],
  "memfd-mapped": [
    "memfd-future-write-map",
    "memfd-write-seal-map",
    "memfd-write-seal-mprotect",
  ],
  "owner-tid": ["owner-tid", "owner-sig", "owner-async"],
  "rw-hint": ["rw-hint"],
  "unix-peekoff": ["unix-peekoff", "unix-peekoff-peek"],
  "unix-creds": ["unix-creds"],
  "unix-opts": [
    "unix-rcvlowat",
    "unix-rcvtimeo",
    "unix-sndtimeo",
    "unix-passsec",
    "unix-passpidfd",
  ],
  "ep-busypoll": ["ep-busypoll"],
  locks: ["locks"],
  "locks-deleted": ["locks"],
  "memfd-misc": ["memfd-name", "memfd-rw-hint"],
  "unix-senders": ["unix-senders"],
  "unix-backlog": ["unix-backlog-accept", "unix-backlog-first", "unix-backlog-second"],
  "opath-kinds": ["opath-symlink", "opath-fifo", "opath-fifo-no-reader", "opath-socket"],
  "unix-shut": ["unix-shut-wr", "unix-shut-wr-send", "unix-shut-rd-peer"],
};

for (const [mode, checks] of Object.entries(ROUND_TRIPS)) {
  Deno.test(
    `fd state comes back: ${mode}`,
    withTargets(async () => {
      const rt = await startTriggered("rt_fdprobe2", READY, { passWork: true, extra: [mode] });
      await dumpKillRestore(rt.t);
      await Deno.writeTextFile(rt.trigger, "");
      assertChecksPassed(rt.t, checks, await rt.t.wait(), { what: mode });
    }),
  );
}

/** Modes the dump refuses: the line it must print, and the checks of the target running on. */
const REFUSED: Record<string, { line: RegExp; checks: string[] }> = {
  "ep-oneshot": {
    line:
      /an EPOLLONESHOT epoll watch that fired and was not re-armed \(EPOLL_CTL_MOD\), of a file other than an eventfd, timerfd or signalfd: the watch of fd 4 \(data 0x11\)/,
    checks: ["ep-oneshot-disarmed", "ep-oneshot-rearm"],
  },
  "ep-orphan": {
    line:
      /an epoll watch whose fd number was closed while only another process or a message holds its file: the watch of fd 4 \(data 0x0*aa\)/,
    checks: ["ep-orphan"],
  },
  "pidfd-zombie": {
    line: /pidfds of children that exited and were not reaped \(zombies\): process \d+ is a zombie/,
    checks: ["pidfd-zombie"],
  },
  "unix-sender-gone": {
    line:
      /unix sockets in a state cryo cannot re-create exactly: datagrams from \S+\/a, outside the tree/,
    checks: ["unix-senders"],
  },
  "memfd-mapped-fw": {
    line:
      /a memfd sealed with F_SEAL_FUTURE_WRITE that a shared writable mapping \(made before the seal\) maps/,
    checks: [
      "memfd-future-write-map",
      "memfd-future-write-fd",
      "memfd-write-seal-map",
      "memfd-write-seal-mprotect",
    ],
  },
  "refused-kinds": {
    line:
      /^(?=[^]*fanotify: needs a global view)(?=[^]*file leases being broken)(?=[^]*inotify events not yet read)/,
    checks: ["refused-fanotify", "refused-lease", "refused-inotify-queued"],
  },
  "unix-backlog-gone": {
    line: /1 connection\(s\) whose client was closed wait to be accepted on it/,
    checks: ["unix-backlog-accept", "unix-backlog-first", "unix-backlog-gone-eof"],
  },
  "unix-oob": {
    line: /urgent \(MSG_OOB\) data in its receive queue/,
    checks: ["unix-oob"],
  },
};

for (const [mode, { line, checks }] of Object.entries(REFUSED)) {
  Deno.test(
    `fd state refused by name: ${mode}`,
    withTargets(() =>
      assertRefusedLeavesRunning("rt_fdprobe2", READY, mode, (e) => {
        assert.match(e.message, line);
      }, checks)
    ),
  );
}

Deno.test(
  "an O_PATH fd's symlink replaced after the dump: the restore refuses it by path",
  withTargets(async () => {
    const rt = await startTriggered("rt_fdprobe2", READY, {
      passWork: true,
      extra: ["opath-kinds"],
    });
    const dir = await tempImageDir();
    await checkpoint(rt.t.pid, { dir });
    await rt.t.wait();
    // Made beside it, then renamed over it: another inode (a freed number could come back).
    await Deno.symlink("nowhere", `${rt.work}/link2`);
    await Deno.rename(`${rt.work}/link2`, `${rt.work}/link`);
    await assert.rejects(async () => {
      const tree = await restore(dir);
      for (const pid of tree.pids) adoptPid(pid); // cleaned up by withTargets
    }, (e: Error) => {
      assert.ok(e instanceof RestoreError, String(e));
      assert.match(e.message, /link was replaced by another file since the dump/);
      return true;
    });
  }),
);
