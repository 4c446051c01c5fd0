/**
 * Socket state bits that no buffer size or option value shows
 * (tests/targets/rt_sockbits.c): SO_BUF_LOCK (which buffer sizes the
 * program fixed; setting a size at restore locks it) and SO_NO_CHECK. Found
 * by CRIU's zdtm tests sock_opts02 and sock_opts00 (docs/COMPATIBILITY.md).
 * Each mode is dumped (killed), restored, and checks itself.
 */

import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;

/** Each mode with the checks it must pass. */
const MODES: Record<string, string[]> = {
  "buf-lock": [
    "lock-tcp-snd",
    "lock-udp-rcv",
    "lock-tcp-sized-unlocked",
    "lock-udp-both",
    "lock-conn-snd",
    "lock-conn-sized-unlocked",
    "lock-size-kept",
    "lock-conn-works",
  ],
  "no-check": ["no-check-udp", "no-check-tcp"],
};

for (const [mode, checks] of Object.entries(MODES)) {
  Deno.test(
    `socket bits come back: ${mode}`,
    withTargets(async () => {
      const rt = await startTriggered("rt_sockbits", READY, { extra: [mode] });
      await dumpKillRestore(rt.t);
      await Deno.writeTextFile(rt.trigger, "");
      assertChecksPassed(rt.t, checks, await rt.t.wait(), { what: mode });
    }),
  );
}
