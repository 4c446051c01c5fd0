/**
 * A process in a Landlock domain (landlock_restrict_self) is refused by
 * the dump, by name (task.landlock; engine/task/landlock.ts): the domain
 * cannot be read back, and the restored process would run unrestricted.
 * tests/targets/landlock.c checks itself that a read its domain denies is
 * still denied after the refused dump. A process with no_new_privs and no
 * domain still dumps; where domains cannot be read (`CRYO_LANDLOCK=unread`),
 * a process with no_new_privs is refused by name (task.landlock-unchecked).
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { landlockAbi } from "../engine/task/landlock_probe.ts";
import {
  inInitialPidNamespace,
  loadThreadIterator,
  threadIteratorLayout,
  threadIteratorUnavailable,
} from "../engine/proc/thread_state_bpf.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { assertRefusedLeavesRunning, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;
const LANDLOCK_HERE = landlockAbi() > 0;

/** A test that needs Landlock enabled in the kernel (ignored elsewhere). */
function landlockTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, ignore: !LANDLOCK_HERE, fn });
}

landlockTest(
  "landlock: the domain pointer's place in the credentials is found on this boot",
  () => {
    assert.ok(loadThreadIterator(), threadIteratorUnavailable());
    const offset = threadIteratorLayout()?.landlockOffset;
    assert.ok(offset !== undefined && offset >= 0 && offset % 8 === 0, `offset ${offset}`);
    return Promise.resolve();
  },
);

for (
  const [mode, checks, who] of [
    ["restrict", ["readable_first", "denied_before", "denied_after"], /process \d+: a Landlock/],
    [
      "restrict-threads",
      ["readable_first", "denied_before", "denied_after"],
      /process \d+: a Landlock/, // every thread is in the domain: named as the process
    ],
    [
      "thread",
      ["readable_first", "thread_denied_before", "thread_denied_after", "main_free"],
      // Named by thread where the records' tids are cryo's (the initial pid namespace).
      inInitialPidNamespace()
        ? /process (\d+) thread (\d+): a Landlock/
        : /process \d+: a Landlock/,
    ],
  ] as const
) {
  landlockTest(
    `landlock: a dump of a process in a Landlock domain (${mode}) is refused by name, the target still restricted`,
    withTargets(() =>
      assertRefusedLeavesRunning("landlock", READY, mode, (e) => {
        assert.equal(e.items.length, 1, e.items.join("\n"));
        assert.match(e.items[0], who);
        assert.match(
          e.items[0],
          /a Landlock domain \(landlock_restrict_self\): cannot be read back: the restored process would run unrestricted/,
        );
        const m = e.items[0].match(/process (\d+) thread (\d+)/);
        if (m) assert.notEqual(m[1], m[2], "the restricted thread is not the main one");
      }, checks)
    ),
  );
}

landlockTest(
  "landlock: a process with no_new_privs and no domain still dumps",
  withTargets(async () => {
    const a = await startTriggered("landlock", READY, { passWork: true, extra: ["nnp"] });
    await checkpoint(a.t.pid, { dir: await tempImageDir(), leaveRunning: true });
    await Deno.writeTextFile(a.trigger, "");
    assertChecksPassed(
      a.t,
      ["readable_first", "readable_before", "readable_after"],
      await a.t.wait(),
      { what: "nnp" },
    );
  }),
);

for (const mode of ["nnp", "restrict"]) {
  landlockTest(
    `landlock: where domains cannot be read, a process with no_new_privs (${mode}) is refused by name`,
    withTargets(async () => {
      Deno.env.set("CRYO_LANDLOCK", "unread");
      try {
        await assertRefusedLeavesRunning(
          "landlock",
          READY,
          mode,
          (e) => {
            assert.equal(e.items.length, 1, e.items.join("\n"));
            assert.match(
              e.items[0],
              /process \d+: no_new_privs in a thread, on a host with Landlock enabled .*: it may be in a Landlock domain, which cannot be read here \(CRYO_LANDLOCK=unread\)/,
            );
          },
          mode === "nnp"
            ? ["readable_first", "readable_before", "readable_after"]
            : ["readable_first", "denied_before", "denied_after"],
        );
      } finally {
        Deno.env.delete("CRYO_LANDLOCK");
      }
    }),
  );
}
