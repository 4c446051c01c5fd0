/**
 * Pipe state found by running CRIU's zdtm pipe tests against cryo
 * (tests/targets/rt_pipeprobe.c, one mode per case): a pipe enlarged to
 * 1 MiB and full; both ends of a pipe opened again through /proc/self/fd
 * (several descriptions of each end, one read-write). Each mode is dumped (killed), restored, and checks itself.
 */

import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;

/** Modes that come back exactly, with the checks each must pass. */
const ROUND_TRIPS: Record<string, string[]> = {
  "full-1m": ["full-size", "full-data", "full-empty"],
  reopen: ["reopen-flags", "reopen-apart", "reopen-data", "reopen-one-pipe"],
};

for (const [mode, checks] of Object.entries(ROUND_TRIPS)) {
  Deno.test(
    `pipe state comes back: ${mode}`,
    withTargets(async () => {
      const rt = await startTriggered("rt_pipeprobe", READY, { extra: [mode] });
      const { t } = rt;
      await dumpKillRestore(t);
      await Deno.writeTextFile(rt.trigger, "");
      assertChecksPassed(t, checks, await t.wait(), { what: mode });
    }),
  );
}
