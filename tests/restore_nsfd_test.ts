/**
 * Fds of the process's own namespaces (tests/targets/rt_nsfd.c; CRIU's
 * zdtm proc-self): /proc/self/ns/net, uts and pid_for_children held open
 * come back naming the namespaces the restored process is in.
 */

import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

Deno.test(
  "nsfd: fds of the process's own namespaces come back",
  withTargets(async () => {
    const rt = await startTriggered("rt_nsfd", /^ready pid=(\d+)$/m);
    await dumpKillRestore(rt.t);
    await Deno.writeTextFile(rt.trigger, "");
    assertChecksPassed(
      rt.t,
      ["ns-same", "ns-cloexec", "ns-setns", "ns-dup"],
      await rt.t.wait(),
    );
  }),
);
