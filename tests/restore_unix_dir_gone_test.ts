/**
 * A unix socket whose file was removed with its directory
 * (tests/targets/rt_unix_dir_gone.c): refused by name at dump, the target
 * left running as it was. Before, the dump succeeded and the restore failed
 * with "op #5 (bind) failed: ENOENT" after the tree had been killed.
 */

import assert from "node:assert/strict";
import { assertRefusedLeavesRunning } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

Deno.test(
  "a unix socket whose file was removed with its directory is refused by name at dump",
  withTargets(() =>
    assertRefusedLeavesRunning("rt_unix_dir_gone", /^ready pid=(\d+)$/m, "", (e) => {
      assert.match(
        e.message,
        /fd \d+ \(socket:\[\d+\]\): unix sockets in a state cryo cannot re-create exactly: its socket file \/.*\/d\/s was removed with its directory \/.*\/d/,
      );
    }, ["datagram", "dir-gone"])
  ),
);
