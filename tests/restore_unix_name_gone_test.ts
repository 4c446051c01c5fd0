/**
 * Unix socket names whose files are gone (tests/targets/rt_unix_name_gone.c,
 * as zdtm's sk-unix01 leaves them): a socket whose file was removed with its
 * directory, and a datagram socketpair whose ends were bound in turn at one
 * name. Both are refused by name at dump, the target left running as it was.
 * Before, both dumps succeeded and killed the tree, and the restores failed:
 * "op #5 (bind) failed: ENOENT", "op #15 (unlink) failed: ENOENT".
 */

import assert from "node:assert/strict";
import { assertRefusedLeavesRunning } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;

Deno.test(
  "a unix socket whose file was removed with its directory is refused by name at dump",
  withTargets(() =>
    assertRefusedLeavesRunning("rt_unix_name_gone", READY, "dir", (e) => {
      assert.match(
        e.message,
        /fd \d+ \(socket:\[\d+\]\): unix sockets in a state cryo cannot re-create exactly: its socket file \/.*\/d\/s was removed with its directory \/.*\/d/,
      );
    }, ["datagram", "dir-gone"])
  ),
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
