/**
 * Kernel uevent netlink sockets (tests/targets/rt_uevent.c; CRIU's zdtm
 * sk-netlink): bound with an automatic port id and group 1, bound to a
 * port id of their own, or never bound, they come back the same.
 */

import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

Deno.test(
  "uevent: netlink uevent sockets come back with their port ids and group",
  withTargets(async () => {
    const rt = await startTriggered("rt_uevent", /^ready pid=(\d+)$/m);
    await dumpKillRestore(rt.t);
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(
      rt.t,
      ["uevent-ports", "uevent-group", "uevent-unicast"],
      await rt.t.wait(),
    );
  }),
);
