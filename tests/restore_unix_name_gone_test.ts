/**
 * Unix socket names whose files are gone (tests/targets/rt_unix_name_gone.c,
 * as zdtm's sk-unix01 leaves them): sockets whose files were removed with
 * their directories come back bound there (the directories made again
 * around the binds and removed), and a restore where such a directory
 * exists again is refused before anything is created; a datagram socketpair
 * whose ends were bound in turn at one name comes back (socketpair(), then
 * bound in turn); a socket whose file a later socket of the tree replaced is
 * bound and its file removed before that one binds; one whose file a regular
 * file replaced stays refused by name. Before, the first two dumps succeeded
 * and killed the tree, and the restores failed: "op #5 (bind) failed:
 * ENOENT", "op #15 (unlink) failed: ENOENT"; the third was refused.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { pathExists } from "./helpers/fs.ts";
import {
  assertRefusedLeavesRunning,
  dumpKillRestore,
  startTriggered,
  tempImageDir,
} from "./helpers/roundtrip.ts";
import { adoptPid, withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;
const DIR_CHECKS = ["datagram", "names", "stream", "dir-gone"];

Deno.test(
  "unix sockets whose files were removed with their directories come back bound there, the directories gone again",
  withTargets(async () => {
    const m = await startTriggered("rt_unix_name_gone", READY, { passWork: true, extra: ["dir"] });
    await dumpKillRestore(m.t);
    assert.equal(pathExists(`${m.work}/t`), false, "the directories were left");
    await Deno.writeTextFile(m.trigger, "");
    assertChecksPassed(m.t, DIR_CHECKS, await m.t.wait());
  }),
);

Deno.test(
  "a restore where a socket's removed directory exists again is refused before anything is created",
  withTargets(async () => {
    const m = await startTriggered("rt_unix_name_gone", READY, { passWork: true, extra: ["dir"] });
    const dir = await tempImageDir();
    await checkpoint(m.t.pid, { dir });
    await m.t.wait();
    await Deno.mkdir(`${m.work}/t`);
    await assert.rejects(
      () => restore(dir),
      /cannot restore: .*\/t, removed with the socket file of process \d+ fd \d+, exists again/,
    );
    assert.equal(pathExists(`/proc/${m.t.pid}`), false, "a process was created");
    await Deno.remove(`${m.work}/t`);
    const tree = await restore(dir);
    m.t.resetAfterRestore();
    for (const pid of tree.pids) if (pid !== m.t.pid) adoptPid(pid);
    await Deno.writeTextFile(m.trigger, "");
    assertChecksPassed(m.t, DIR_CHECKS, await m.t.wait());
  }),
);

Deno.test(
  "a datagram socketpair whose ends were bound in turn at one name comes back: one pair, both names, no file",
  withTargets(async () => {
    const m = await startTriggered("rt_unix_name_gone", READY, { passWork: true, extra: ["pair"] });
    await dumpKillRestore(m.t);
    await Deno.writeTextFile(m.trigger, "");
    assertChecksPassed(
      m.t,
      ["one-to-zero", "zero-to-one", "pair-names", "pair-peercred", "pair-file-gone"],
      await m.t.wait(),
    );
  }),
);

Deno.test(
  "a socket whose file a later socket of the tree replaced comes back bound first, the file the later one's",
  withTargets(async () => {
    const m = await startTriggered("rt_unix_name_gone", READY, {
      passWork: true,
      extra: ["replaced"],
    });
    await dumpKillRestore(m.t);
    await Deno.writeTextFile(m.trigger, "");
    assertChecksPassed(
      m.t,
      ["first-client", "first-name", "second-client", "file-is-second"],
      await m.t.wait(),
    );
  }),
);

Deno.test(
  "a socket whose file was replaced by a regular file is refused by name",
  withTargets(() =>
    assertRefusedLeavesRunning("rt_unix_name_gone", READY, "replaced-file", (e) => {
      assert.match(
        e.message,
        /fd \d+ \(socket:\[\d+\]\): unix sockets in a state cryo cannot re-create exactly: its socket file \/.*\/r\.sock was replaced by another file/,
      );
    }, ["first-client", "first-name"])
  ),
);
