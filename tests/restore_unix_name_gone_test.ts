/**
 * Unix socket names whose files are gone (tests/targets/rt_unix_name_gone.c,
 * as zdtm's sk-unix01 leaves them): sockets whose files were removed with
 * their directories come back bound there (the directories made again
 * around the binds and removed), and a restore where such a directory
 * exists again is refused before anything is created; a datagram socketpair
 * whose ends were bound in turn at one name is refused by name at dump, the
 * target left running. Before, both dumps succeeded and killed the tree, and
 * the restores failed: "op #5 (bind) failed: ENOENT", "op #15 (unlink)
 * failed: ENOENT".
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
  "a datagram socketpair whose ends were bound in turn at one name is refused by name at dump",
  withTargets(() =>
    assertRefusedLeavesRunning("rt_unix_name_gone", READY, "pair", (e) => {
      assert.match(
        e.message,
        /fd \d+ \(socket:\[\d+\]\): unix sockets in a state cryo cannot re-create exactly: bound at \/.*\/p\.sock, where socket:\[\d+\] of the tree was bound too \(in turn, each file removed before the next bind\)/,
      );
    }, ["one-to-zero", "zero-to-one"])
  ),
);
