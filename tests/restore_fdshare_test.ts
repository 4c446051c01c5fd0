/**
 * Round trips of fd flags and of open file descriptions shared across the
 * tree (tests/targets/rt_fdshare.c): pipe flags exactly as before (in a
 * process, shared with a child, leading out of the tree), a regular file,
 * an eventfd and an epoll shared by parent and child after fork (kcmp
 * across the pids, the shared offset), fd owner / signal / O_ASYNC, paths
 * through a symlink. And what is refused by name: fd tables shared by
 * processes (CLONE_FILES), a deleted cwd, a directory fd whose directory
 * was removed.
 */

import assert from "node:assert/strict";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) child=(\d+) outside=(\d+)$/m;

Deno.test(
  "fd flags, shared open file descriptions, owners and symlinked paths survive",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_fdshare", READY, { passWork: true });
    adoptPid(Number(ready[3])); // the process holding the pipe's other end, outside the tree
    const { tree } = await dumpKillRestore(t);
    assert.equal(tree.pids.length, 2, "the child is restored too");
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, [
      "pipe-flags-in-process",
      "pipe-flags-shared",
      "pipe-flags-outside",
      "eventfd-epoll-flags",
      "shared-file",
      "shared-eventfd",
      "shared-epoll",
      "epoll-watch",
      "child-said",
      "child",
      "shared-offset",
      "shared-eventfd-count",
      "file-flags",
      "owner",
      "async-signal",
      "symlinked-file",
      "symlinked-cwd",
    ], await t.wait());
  }),
);
