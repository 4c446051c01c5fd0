/**
 * One shared anonymous object mapped in several places not side by side
 * (a piece moved by mremap, the object mapped again through map_files) is
 * restored as one object (engine/memory/shmem_restore.ts), in one process,
 * in a child that inherits the pieces, and in a parent and a child that
 * hold pieces at different addresses.
 */

import { checkpoint } from "../engine/dump/mod.ts";
import { dumpKillRestore, tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, startTarget, type Target, withTargets } from "./helpers/targets.ts";
import { signalThenPass } from "./helpers/checks.ts";

/** Waits for the target's ready line; its child, when it has one, is cleaned up with it. */
async function ready(t: Target): Promise<void> {
  const m = await t.waitFor(/^ready pid=\d+ child=(-?\d+)$/m);
  if (Number(m[1]) > 0) adoptPid(Number(m[1]));
}

Deno.test(
  "shared anonymous object with its last page moved by mremap comes back as one object (not two at offset 0)",
  withTargets(async () => {
    const t = await startTarget("rt_shanon", ["noview"]);
    await ready(t);
    await dumpKillRestore(t);
    await signalThenPass(t);
  }),
);

for (const forked of [false, true]) {
  for (const lazy of [false, true]) {
    Deno.test(
      `shared anonymous object with a piece moved by mremap and a second view comes back as one object${
        forked ? ", in a child that inherits it too" : ""
      }${lazy ? " (restore --lazy)" : ""}`,
      withTargets(async () => {
        const t = await startTarget("rt_shanon", forked ? ["forked"] : []);
        await ready(t);
        const { tree } = await dumpKillRestore(t, { lazy });
        tree.lazy?.serve();
        await signalThenPass(t);
      }),
    );
  }
}

for (const lazy of [false, true]) {
  Deno.test(
    `shared anonymous object held by a parent and a child at different addresses and offsets comes back as one object${
      lazy ? " (restore --lazy)" : ""
    }`,
    withTargets(async () => {
      const t = await startTarget("rt_shanon", ["apart"]);
      await ready(t);
      const { tree } = await dumpKillRestore(t, { lazy });
      tree.lazy?.serve();
      await signalThenPass(t);
    }),
  );
}

Deno.test(
  "shared anonymous object in several pieces: a pre-copy dump, then the restore, keeps it one object",
  withTargets(async () => {
    const t = await startTarget("rt_shanon", ["forked"]);
    await ready(t);
    await dumpKillRestore(t, {}, { precopy: true });
    await signalThenPass(t);
  }),
);

Deno.test(
  "shared anonymous object in several pieces: a dump that leaves it running leaves it one object",
  withTargets(async () => {
    const t = await startTarget("rt_shanon", []);
    await ready(t);
    await checkpoint(t.pid, { dir: await tempImageDir(), leaveRunning: true });
    await signalThenPass(t);
  }),
);
