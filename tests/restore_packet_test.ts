/**
 * AF_PACKET sockets (tests/targets/rt_packet.c; CRIU's zdtm packet_sock,
 * packet_sock_mmap, packet_sock_spkt): raw and datagram packet sockets on
 * the loopback interface come back with their protocol, interface, options,
 * memberships, filter and fanout group, and receive again; packets queued,
 * a ring whose kernel position is inside a block (rings:
 * restore_packet_ring_test.ts) and SOCK_PACKET are refused by name, the program left
 * running as it was.
 */

import assert from "node:assert/strict";
import { assertRefusedLeavesRunning, assertTriggeredRoundTrip } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;

Deno.test(
  "packet: raw and datagram packet sockets come back bound, with options, memberships, filter and a fanout group across two processes",
  withTargets(async () => {
    await assertTriggeredRoundTrip("rt_packet", READY, ["ok"], [
      "packet-names",
      "packet-options",
      "packet-memberships",
      "packet-filter-kept",
      "packet-fanout",
      "packet-receives",
      "packet-filter",
      "packet-fanout-child",
      "packet-fanout-one",
    ]);
  }),
);

for (
  const [mode, id, check] of [
    ["queued", "packets waiting to be read", "packet-queued-kept"],
    ["ring", "inside a block of 2 frames", "packet-ring-kept"],
    ["spkt", "SOCK_PACKET", "packet-spkt-alive"],
  ] as const
) {
  Deno.test(
    `packet: ${mode} is refused by name, the program left running`,
    withTargets(async () => {
      await assertRefusedLeavesRunning("rt_packet", READY, mode, (e) => {
        assert.ok(e.items.some((i) => i.includes(id)), e.items.join("\n"));
      }, [check]);
    }),
  );
}
