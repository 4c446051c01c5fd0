/**
 * A packet socket bound to (or a member on) an interface is re-created only
 * when the interface's index still names the same interface
 * (engine/fds/packet.ts packetProblem): otherwise the restore refuses it by
 * name instead of binding it to another interface, or failing in the
 * restore program.
 */

import assert from "node:assert/strict";
import { packetProblem } from "../engine/fds/packet.ts";
import type { PacketSocket } from "../engine/model.ts";

const lo = Number(Deno.readTextFileSync("/sys/class/net/lo/ifindex").trim());

function socket(ifindex: number, ifname?: string, member?: [number, string?]): PacketSocket {
  return {
    type: 3,
    protocol: 0x88b5,
    ifindex,
    ...(ifname !== undefined ? { ifname } : {}),
    options: [],
    memberships: member
      ? [{ ifindex: member[0], ifname: member[1], type: 1, address: "", count: 1 }]
      : [],
  };
}

Deno.test("packet interface: the same index and name, or no interface, is restored", () => {
  assert.equal(packetProblem(socket(lo, "lo")), undefined);
  assert.equal(packetProblem(socket(0)), undefined);
  assert.equal(packetProblem(socket(0, undefined, [lo, "lo"])), undefined);
});

Deno.test("packet interface: an index now naming another interface, or none, is refused by name", () => {
  const renamed = packetProblem(socket(lo, "cryo-gone0"));
  assert.match(
    renamed ?? "",
    /index names another interface.*cryo-gone0 \(index \d+\), index \d+ is now lo/,
  );
  const gone = packetProblem(socket(0x7ffffff0, "eth9"));
  assert.match(gone ?? "", /eth9 .*no interface has index/);
  const member = packetProblem(socket(0, undefined, [lo, "cryo-gone0"]));
  assert.match(member ?? "", /membership on interface cryo-gone0/);
});
