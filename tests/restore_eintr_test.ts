/**
 * Waits a stop ends with EINTR (engine/task/eintr.ts,
 * tests/targets/rt_eintr.c): an epoll wait the freeze interrupted is issued
 * again, after a --leave-running dump and after a restore; the program
 * never sees an EINTR no signal of its own caused.
 */

import { checkpoint } from "../engine/dump/mod.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+)$/m;

for (const mode of ["epoll_wait", "epoll_pwait", "epoll_pwait2"]) {
  Deno.test(
    `${mode} interrupted by a --leave-running dump waits on, no EINTR`,
    withTargets(async () => {
      const { t, trigger } = await startTriggered("rt_eintr", READY, { extra: [mode] });
      await new Promise((r) => setTimeout(r, 50)); // in its wait
      await checkpoint(t.pid, { dir: await tempImageDir(), leaveRunning: true });
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, ["wait"], await t.wait());
    }),
  );

  Deno.test(
    `${mode} interrupted by the dump is issued again after the restore, no EINTR`,
    withTargets(async () => {
      const { t, trigger } = await startTriggered("rt_eintr", READY, { extra: [mode] });
      await new Promise((r) => setTimeout(r, 50));
      await dumpKillRestore(t);
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, ["wait"], await t.wait());
    }),
  );
}
