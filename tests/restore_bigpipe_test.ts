/**
 * A pipe and a FIFO each holding a full buffer of 1 MiB
 * (tests/targets/rt_bigpipe.c): the restore program that writes the bytes
 * back must fit the process's bootstrap range, which the dump sizes from
 * the data it carries. Found by CRIU's zdtm test transition/fifo_loop
 * (docs/COMPATIBILITY.md).
 */

import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

Deno.test(
  "a pipe and a FIFO holding 1 MiB each come back whole",
  withTargets(async () => {
    const rt = await startTriggered("rt_bigpipe", /^ready pid=(\d+)$/m, { passWork: true });
    await dumpKillRestore(rt.t);
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(rt.t, ["bigpipe-pipe", "bigpipe-fifo"], await rt.t.wait());
  }),
);
