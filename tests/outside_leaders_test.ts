/**
 * A tree whose process group and session are led from outside cryo's view:
 * inside a new pid namespace, /proc shows their ids as 0 (as for a tree
 * started by pid 1 without a session of its own, the case of the CI
 * machines). Its images are valid and it round-trips: the round trip of
 * tests/restore_files_test.ts is run as a whole inside such a namespace.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { pathExists } from "./helpers/fs.ts";
import { runCommand } from "./helpers/commands.ts";

const unshare = ["/usr/bin/unshare", "/bin/unshare"].find(pathExists);
const root = fileURLToPath(new URL("..", import.meta.url));

Deno.test({
  name: "a tree whose group and session leaders are outside the pid namespace (ids 0) round-trips",
  ignore: unshare === undefined,
  fn: async () => {
    // The target's stat line (pgrp, session) is checked from inside, then the
    // round-trip test runs with the tree's leaders outside the namespace.
    const script = `set -e
read -r _ _ _ _ pgrp sid _ < /proc/self/stat
echo "ids pgrp=$pgrp sid=$sid"
exec "$0" test -A --no-check tests/restore_files_test.ts`;
    const r = await runCommand(
      [unshare!, "--pid", "--fork", "--mount-proc", "sh", "-c", script, Deno.execPath()],
      { cwd: root, env: { NO_COLOR: "1" } },
    );
    const out = r.stdout + r.stderr;
    assert.match(out, /^ids pgrp=0 sid=0$/m, out);
    assert.equal(r.code, 0, out);
    assert.match(out, /^ok \| 1 passed \| 0 failed/m, out);
  },
});
