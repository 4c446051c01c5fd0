/**
 * Fds that name a file by something other than a plain path
 * (tests/targets/rt_fdpaths.c): O_PATH fds of a symbolic link itself, of a
 * unix socket's file and of a FIFO (each was refused or failed the restore
 * before: the link as an unknown kind, the socket's file as a socket, the
 * FIFO as a pipe), a file whose name was removed while a hard link keeps it
 * (restored before as a copy: writes through the restored fd went to the
 * copy, not to the file the other name shows), and an O_TMPFILE file that
 * must stay linkable. The dump is killed and restored; the target checks
 * each fd is the same file. The file of a socket bound in the tree is
 * refused (its socket is bound again at restore: a new file).
 */

import assert from "node:assert/strict";
import { assertChecksPassed } from "./helpers/checks.ts";
import {
  assertDumpRefused,
  dumpKillRestore,
  startTriggered,
  tempImageDir,
} from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import { restore } from "../engine/restore/mod.ts";
import { checkpoint } from "../engine/dump/mod.ts";

const READY = /^ready pid=(\d+)$/m;
const CHECKS = [
  "opath-symlink",
  "opath-symlink-flags",
  "opath-socket",
  "opath-fifo",
  "opath-fifo-flags",
  "hardlink-same",
  "hardlink-nlink",
  "hardlink-write",
  "hardlink-mapping",
  "tmpfile-linkat",
];

Deno.test(
  "fd paths: O_PATH fds of a link, a socket file and a FIFO, a file kept by a hard link and an O_TMPFILE file come back as the same files",
  withTargets(async () => {
    const rt = await startTriggered("rt_fdpaths", READY, { passWork: true });
    const { dump } = await dumpKillRestore(rt.t);
    const ghosts = dump.manifest.ghosts ?? [];
    assert.deepEqual(ghosts.map((g) => g.kind).sort(), ["deleted", "linked", "linked"]);
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(rt.t, CHECKS, await rt.t.wait());
  }),
);

Deno.test(
  "fd paths: a hard-linked file removed since the dump refuses the restore by name",
  withTargets(async () => {
    const rt = await startTriggered("rt_fdpaths", READY, { passWork: true });
    const dir = await tempImageDir();
    await checkpoint(rt.t.pid, { dir });
    await rt.t.wait();
    await Deno.remove(`${rt.work}/hl_b`);
    await assert.rejects(
      () => restore(dir),
      /cannot restore: .*\/hl_a \(deleted, linked elsewhere\) is gone since the dump \(ESTALE\)/,
    );
  }),
);

Deno.test(
  "fd paths: an O_PATH fd of the file of a socket bound in the tree is refused by name, the target left running",
  withTargets(async () => {
    const rt = await startTriggered("rt_fdpaths", READY, {
      passWork: true,
      extra: ["keep-socket"],
    });
    await assertDumpRefused(rt.t.pid, (items, message) => {
      assert.equal(items.length, 1, message);
      assert.equal(
        items[0].replace(/ fd \d+ /, " fd N "),
        `process ${rt.t.pid} fd N (${rt.work}/sock): O_PATH fds of the file of a unix socket bound in the tree: the restore binds the socket again, which makes a new file`,
      );
    });
    await Deno.writeTextFile(rt.trigger, "");
    // Untouched: every fd is still itself.
    assertChecksPassed(rt.t, CHECKS, await rt.t.wait());
  }),
);
