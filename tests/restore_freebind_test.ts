/**
 * Sockets bound to an address this host does not have
 * (tests/targets/rt_freebind.c; CRIU's zdtm sk-freebind and
 * sk-freebind-false): an IPv6 UDP socket and an IPv4 TCP listener bound
 * with IP_FREEBIND, kept on or turned off after the bind. After the
 * restore they are bound to the same address and port and IP_FREEBIND
 * reads as before.
 */

import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

for (const mode of ["on", "off"]) {
  Deno.test(
    `freebind: a socket bound to a non-local address comes back (IP_FREEBIND ${mode})`,
    withTargets(async () => {
      const rt = await startTriggered("rt_freebind", /^ready pid=(\d+)$/m, { extra: [mode] });
      await dumpKillRestore(rt.t);
      await Deno.writeTextFile(rt.trigger, "");
      assertChecksPassed(
        rt.t,
        ["udp6-bound", "tcp4-bound", "tcp4-listens", "freebind"],
        await rt.t.wait(),
        { what: mode },
      );
    }),
  );
}
