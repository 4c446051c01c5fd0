/**
 * Example policy: a process kept with its last N checkpoints, with hooks
 * that log each one.
 *
 * Every 5 seconds the counter below is checkpointed; only the 5 newest
 * checkpoints stay in the directory (older ones are removed only after a
 * newer one is complete), and `latest` always points at the newest. The
 * hooks log every checkpoint through the runner (`ctx.log`), run a
 * command (`ctx.run`) to report the store's size, and append a JSON line
 * per checkpoint to a journal next to the store.
 *
 * ```sh
 * deno run -A cli.ts run scripts/policy-keep-last.ts
 * ls -l /tmp/cryo-policy-keep-last; cat /tmp/cryo-policy-keep-last.jsonl
 * ```
 *
 * @module
 */

import { definePolicy } from "../mod.ts";

const dir = "/tmp/cryo-policy-keep-last";

/** The policy: every 5 s, keep 5, log each checkpoint. */
export default definePolicy({
  name: "keep-last",
  target: {
    command: ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.5; done"],
    stdout: `${dir}.out`,
  },
  dir,
  every: "5s",
  keep: 5,
  hooks: {
    beforeDump: (ctx) =>
      ctx.log.info(`checkpoint #${ctx.counts.checkpoints + 1} of pid ${ctx.pid} (${ctx.reason})`),
    afterDump: async (ctx) => {
      const c = ctx.checkpoint!;
      const kib = Math.round(c.stats.imageBytes / 1024);
      const frozenMs = Math.round(c.stats.freezeSeconds * 1000);
      ctx.log.info(`${c.name}: ${kib} KiB, target frozen ${frozenMs} ms`);
      const du = await ctx.run(["du", "-sh", ctx.dir]);
      ctx.log.info(`store now ${du.stdout.split("\t")[0]}`);
      const entry = { name: c.name, at: c.createdAt, reason: c.reason, bytes: c.stats.imageBytes };
      await Deno.writeTextFile(`${dir}.jsonl`, JSON.stringify(entry) + "\n", { append: true });
    },
    onError: (ctx) => ctx.log.error(`${ctx.during} failed: ${ctx.error}`),
  },
});
