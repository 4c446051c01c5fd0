/**
 * AF_PACKET sockets with mmapped rings (tests/targets/rt_packet_ring.c;
 * libpcap's, so tcpdump's, way of capturing): TPACKET_V1, V2 (with an
 * unused tx ring in the same mapping) and V3 rings come back at the same
 * address with the frames the program owned, and the kernel fills next the
 * frame (block) the program reads next, round the ring.
 */

import assert from "node:assert/strict";
import { assertChecksPassed } from "./helpers/checks.ts";
import {
  assertRefusedLeavesRunning,
  dumpKillRestore,
  startTriggered,
} from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) ring=\S+$/m;

for (const mode of ["v1", "v2", "v3"]) {
  Deno.test(
    `packet ring: a ${mode} rx ring read part way comes back where the program reads next`,
    withTargets(async () => {
      const rt = await startTriggered("rt_packet_ring", READY, { passWork: true, extra: [mode] });
      await dumpKillRestore(rt.t);
      await Deno.writeTextFile(rt.trigger, "");
      assertChecksPassed(
        rt.t,
        [
          "ring-mapping",
          "ring-options",
          "ring-given-back",
          "ring-owned-kept",
          "ring-continues",
          "ring-position",
        ],
        await rt.t.wait(),
        { what: mode },
      );
    }),
  );
}

Deno.test(
  "packet ring: a ring mapping a forked child inherited is refused by name, the program left running",
  withTargets(async () => {
    await assertRefusedLeavesRunning("rt_packet_ring", READY, "fork", (e) => {
      assert.ok(e.items.some((i) => i.includes("not this process's own")), e.items.join("\n"));
    }, ["ring-mapping", "ring-options", "ring-given-back", "ring-owned-kept", "ring-continues"]);
  }),
);
