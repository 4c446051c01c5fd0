/**
 * Example policy: a service checkpointed on a signal, before a risky
 * change.
 *
 * The runner starts the service and takes no periodic checkpoints. Right
 * before something risky (a migration, a config reload, an upgrade of a
 * library it loads), the operator asks for a rollback point:
 *
 * ```sh
 * deno run -A cli.ts run scripts/policy-service.ts &
 * kill -USR2 <runner pid>        # checkpoint now (SIGHUP works too)
 * # ... the risky change; if the service dies, cryo restores it as it was ...
 * ```
 *
 * If the service then dies abnormally, cryo restores it from that
 * checkpoint (twice at most). Stopping the runner leaves the service
 * running (`onStop: "leave"`); any rollback point can still be restored
 * by hand with `cryo restore <dir>`.
 *
 * The service here is a shell loop with a child `sleep`: cryo saves and
 * restores the whole process tree.
 *
 * @module
 */

import { definePolicy } from "../mod.ts";

/** The policy: checkpoint on SIGUSR2/SIGHUP, restore on abnormal exit, leave running on stop. */
export default definePolicy({
  name: "service",
  target: {
    command: [
      "sh",
      "-c",
      'n=0; while :; do n=$((n+1)); echo "served request $n"; sleep 1; done',
    ],
  },
  dir: "/tmp/cryo-policy-service",
  onSignal: ["SIGUSR2", "SIGHUP"],
  keep: 5,
  onExit: "restore",
  maxRestores: 2,
  backoff: "500ms",
  onStop: "leave",
  hooks: {
    afterDump: (ctx) =>
      ctx.log.info(
        `rollback point ${ctx.checkpoint?.name} saved; by hand: cryo restore ${ctx.checkpoint?.dir}`,
      ),
    beforeRestore: (ctx) =>
      ctx.log.warn(`the service died; rolling back to ${ctx.checkpoint?.name}`),
  },
});
