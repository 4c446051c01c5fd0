/**
 * Example policy: a long batch computation (the HPC case), checkpointed
 * periodically and restored automatically when it is killed.
 *
 * The target is a deterministic computation whose progress lives only in
 * memory (an awk loop here; in practice a simulation or a solver). Every
 * 10 seconds cryo checkpoints it and lets it run on, keeping the two
 * newest checkpoints. If it is killed (OOM killer, `kill -9`, a crash),
 * cryo restores it from the latest checkpoint — same pid, same memory —
 * and it only redoes the work since that checkpoint; the printed result is
 * the one an uninterrupted run prints.
 *
 * Ctrl-C takes a last checkpoint and ends the computation; running the
 * policy again resumes it from there (`resume: true`). Once it finishes,
 * the next run starts afresh.
 *
 * ```sh
 * deno run -A cli.ts run scripts/policy-batch.ts
 * kill -9 <the pid it shows>     # in another terminal: watch it come back
 * BATCH_STEPS=50000000 deno run -A cli.ts run scripts/policy-batch.ts   # a shorter run
 * ```
 *
 * @module
 */

import { definePolicy } from "../mod.ts";

const steps = Number(Deno.env.get("BATCH_STEPS") ?? 400_000_000);

/** The policy: every 10 s, keep 2, restore on abnormal exit, checkpoint on Ctrl-C, resume. */
export default definePolicy({
  name: "batch",
  target: {
    command: [
      "awk",
      `BEGIN { h = 1; for (i = 1; i <= ${steps}; i++) h = (h * 31 + i) % 1000000007; ` +
      `print "result", h }`,
    ],
  },
  dir: "/tmp/cryo-policy-batch",
  every: "10s",
  keep: 2,
  onExit: "restore",
  maxRestores: 5,
  backoff: { initial: "1s", factor: 2, max: "10s" },
  resume: true,
  onStop: "checkpoint",
  // Memory the program can rebuild by itself need not be saved: mappings it
  // named "[anon:cache...]" (prctl PR_SET_VMA_ANON_NAME) come back empty.
  exclude: { mapping: (m) => m.name.startsWith("[anon:cache") },
  hooks: {
    afterRestore: (ctx) =>
      ctx.log.info(`computation back from ${ctx.checkpoint?.name} (attempt ${ctx.attempt})`),
  },
});
