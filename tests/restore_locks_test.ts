/**
 * File locks survive a round trip (tests/targets/rt_locks.c): a flock on a
 * description the child shares, POSIX record locks (write, read, to EOF)
 * and an OFD lock. A separate process started by the test (rt_locks probe)
 * checks, before the dump and after the restore, that it cannot take the
 * held locks (and that F_GETLK names the restored owner) but can take the
 * ranges around them; after the owner unlocks, it can take them all.
 * Active file leases (F_SETLEASE, tests/targets/rt_lease.c) come back on
 * their descriptions and break as before.
 */

import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";
import { tempDir } from "./helpers/fs.ts";
import { SIGUSR1 } from "./helpers/signals.ts";

const PROBES = [
  "flock",
  "posix-owner",
  "posix-write",
  "posix-read",
  "posix-eof",
  "posix-free",
  "ofd",
];

async function probe(work: string, holder: number, expect: "locked" | "free", what: string) {
  const p = await startTarget("rt_locks", ["probe", work, String(holder), expect]);
  assertChecksPassed(p, PROBES, await p.wait(), { what });
}

Deno.test(
  "flock, POSIX and OFD locks are held again after restore and can be released",
  withTargets(async () => {
    const { t, trigger, work } = await startTriggered("rt_locks", /^ready pid=(\d+) child=\d+$/m, {
      passWork: true,
    });
    await probe(work, t.pid, "locked", "probe before the dump");
    await dumpKillRestore(t);
    await Deno.writeTextFile(trigger, "");
    await t.waitFor(/^restored$/m);
    await probe(work, t.pid, "locked", "probe after the restore");
    await Deno.writeTextFile(`${trigger}.unlock`, "");
    await t.waitFor(/^unlocked$/m);
    await probe(work, t.pid, "free", "probe after unlocking");
    await Deno.writeTextFile(`${trigger}.end`, "");
    assertChecksPassed(t, ["unlock-flock", "unlock-posix", "unlock-ofd", "child"], await t.wait());
  }),
);

Deno.test(
  "file leases: a read and a write lease are held again after restore and break as before",
  withTargets(async () => {
    const work = await tempDir("cryo-lease-");
    const t = await startTarget("rt_lease", [work]);
    await t.waitFor(/^ready pid=\d+$/m);
    await dumpKillRestore(t);
    t.signal(SIGUSR1);
    assertChecksPassed(
      t,
      ["read-lease", "write-lease", "read-lease-acts", "write-lease-acts", "break-signals"],
      await t.wait(),
    );
  }),
);
