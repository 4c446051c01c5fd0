/**
 * A dump that leaves the tree running must not unshare the pages its
 * processes share copy-on-write (tests/targets/lr_cow.c; zdtm's cow00 and
 * cow01 found it): a pinning read (process_vm_readv) of such a page gives
 * the process a copy of it. Both ways a frozen copy reads: the stream of a
 * tree of two processes, and the copy made ahead of one process (the child,
 * sharing with its parent outside the tree).
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { copyAheadHooks, copyAheadStats } from "../engine/dump/copy_ahead.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) child=(\d+) region=0x([0-9a-f]+) pages=(\d+)$/m;

for (const which of ["tree", "child alone"] as const) {
  Deno.test(
    `a --leave-running dump keeps pages shared copy-on-write shared (${which})`,
    withTargets(async () => {
      const { t, trigger, ready } = await startTriggered("lr_cow", READY);
      const child = Number(ready[2]);
      const started = copyAheadStats.started;
      // (else under load the copy ahead may begin too late, or not at all)
      copyAheadHooks.waitWalk = copyAheadHooks.waitFirst = true;
      Deno.env.set("CRYO_COPY_LANES", "native"); // (the copy ahead also where lanes do not pay)
      try {
        await checkpoint(which === "tree" ? t.pid : child, {
          dir: await tempImageDir(),
          leaveRunning: true, // (no pre-copy: too small for one to pay)
        });
      } finally {
        copyAheadHooks.waitWalk = copyAheadHooks.waitFirst = false;
        Deno.env.delete("CRYO_COPY_LANES");
      }
      if (which === "child alone") {
        assert.ok(copyAheadStats.started > started, "the copy ahead did not run");
      }
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, ["still-shared", "content"], await t.wait(20000));
    }),
  );
}
