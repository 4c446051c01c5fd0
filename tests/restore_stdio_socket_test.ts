/**
 * A TCP connection on a service's fds 0 and 1 (inetd, systemd Accept=yes,
 * `nc -e`; tests/targets/rt_stdio_socket.c) is a socket like any other: a
 * dump needs --tcp-established and restores the connection. It was taken
 * for stdio leading out of the tree: dumped without a word, its peer got
 * an EOF, and the restore gave the service the restorer's stdin and stdout.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { tempDir } from "./helpers/fs.ts";
import { assertDumpRefused, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, startTarget, withTargets } from "./helpers/targets.ts";

const READY = /^ready outer=(\d+) root=(\d+)$/m;

Deno.test(
  "a TCP connection on fds 0-1 needs --tcp-established and comes back as the same connection",
  withTargets(async () => {
    const work = await tempDir("cryo-stdio-socket-");
    const outer = await startTarget("rt_stdio_socket", [`${work}/go`]);
    const root = Number((await outer.waitFor(READY))[2]);
    await assertDumpRefused(root, (items) => {
      assert.match(
        items.join("\n"),
        /fd 0 \(tcp 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+\): needs --tcp-established/,
      );
    });
    const dir = await tempImageDir();
    await checkpoint(root, { dir, optIns: ["tcp-established"] });
    const tree = await restore(dir, { optIns: ["tcp-established"] });
    for (const pid of tree.pids) adoptPid(pid, "");
    assert.equal(tree.rootPid, root);
    for (const fd of [0, 1]) {
      assert.match(Deno.readLinkSync(`/proc/${root}/fd/${fd}`), /^socket:/, `fd ${fd}`);
    }
    await Deno.writeTextFile(`${work}/go`, "");
    assertChecksPassed(outer, ["echo-before", "echo-after"], await outer.wait());
  }),
);
