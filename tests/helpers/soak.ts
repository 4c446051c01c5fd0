/**
 * The policy soak shared by tests/soak_test.ts (short) and
 * scripts/soak_policy.ts (ten minutes): a policy checkpoints a writing
 * target (tests/targets/soak_writer.c) periodically; after every
 * checkpoint and every pruning the checkpoint directory must hold exactly
 * what the retention allows, with `latest` on the newest; every new
 * checkpoint is loaded and verified (checksums, validation, compilation:
 * everything a restore does before it creates a process); at the end the
 * run is stopped (killing the target), the latest image is restored and the
 * target checks its own memory and data file.
 *
 * @module
 */

import { resolve } from "node:path";
import { type PolicyEvent, runPolicy } from "../../engine/policy/mod.ts";
import { isCheckpointName, LATEST } from "../../engine/policy/retention.ts";
import { planRestore, restore } from "../../engine/restore/mod.ts";
import { tempDir } from "./fs.ts";
import { adoptPid, buildTarget, type Target } from "./targets.ts";
import { sleep } from "./wait.ts";

/** Options of {@link runSoak}. */
export interface SoakOptions {
  /** How long the policy runs, in ms. */
  durationMs: number;
  /** The policy's `every`, in ms. */
  everyMs: number;
  /** The policy's `keep`. */
  keep: number;
  /** The target's write period, in ms. */
  writeMs: number;
  /** Called with a progress line now and then (the script prints them). */
  progress?: (line: string) => void;
}

/** What a soak saw. */
export interface SoakFigures {
  /** Complete checkpoints. */
  checkpoints: number;
  /** Failed checkpoints (each also listed in `violations`). */
  failed: number;
  /** Checkpoints removed by retention. */
  pruned: number;
  /** Retention checks made (one after each checkpoint and each pruning). */
  retentionChecks: number;
  /** Checkpoints loaded and verified while the run went on. */
  verified: number;
  /** Everything that went against the promises, empty if none. */
  violations: string[];
  /** Dump times (seconds) of the checkpoints: min, mean, max. */
  dumpSeconds: { min: number; mean: number; max: number };
  /** Frozen times (seconds) of the checkpoints: min, mean, max. */
  freezeSeconds: { min: number; mean: number; max: number };
  /** Image size of the last checkpoint, in bytes. */
  imageBytes: number;
  /** Seconds the final restore took. */
  restoreSeconds: number;
  /** The restored target, once its self-check ended (its output holds the report). */
  restored: Target;
  /** The restored target's exit status. */
  restoredExit: Awaited<ReturnType<Target["wait"]>>;
  /** Records the target had written when the latest checkpoint was taken (from its report). */
  records: number;
}

/** min, mean and max of `xs` (zeros if empty). */
function spread(xs: number[]): { min: number; mean: number; max: number } {
  if (!xs.length) return { min: 0, mean: 0, max: 0 };
  return {
    min: Math.min(...xs),
    mean: xs.reduce((a, b) => a + b, 0) / xs.length,
    max: Math.max(...xs),
  };
}

/** The complete checkpoints (with a manifest) in `dir`, sorted, and where `latest` points. */
function listStore(dir: string): { names: string[]; latest?: string } {
  const names: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    if (!e.isDirectory || !isCheckpointName(e.name)) continue;
    try {
      Deno.statSync(`${dir}/${e.name}/manifest.json`);
      names.push(e.name);
    } catch { /* being written */ }
  }
  let latest: string | undefined;
  try {
    latest = Deno.readLinkSync(`${dir}/${LATEST}`);
  } catch { /* none yet */ }
  return { names: names.sort(), latest };
}

/** Runs the soak described in the module doc; never throws for a broken promise, lists it. */
export async function runSoak(opts: SoakOptions): Promise<SoakFigures> {
  const bin = await buildTarget("soak_writer");
  const work = await tempDir("cryo-soak-");
  const ck = `${work}/ck`;
  const trigger = `${work}/go`;
  const out = `${work}/out`;
  const violations: string[] = [];
  const done: string[] = [];
  const dumps: number[] = [];
  const freezes: number[] = [];
  let imageBytes = 0, pruned = 0, failed = 0, retentionChecks = 0, stopping = false;

  /** Checks the store right after a checkpoint (`afterPrune` false) or a pruning. */
  const checkRetention = (afterPrune: boolean) => {
    retentionChecks++;
    const { names, latest } = listStore(ck);
    // Right after a checkpoint the store may hold one more than `keep`, until its pruning.
    const want = done.slice(-(afterPrune ? opts.keep : opts.keep + 1));
    if (names.join() !== want.join()) {
      violations.push(
        `after checkpoint ${done.length}${afterPrune ? " and its pruning" : ""}: ` +
          `store holds [${names}], want [${want}]`,
      );
    }
    if (latest !== done.at(-1)) {
      violations.push(`after checkpoint ${done.length}: latest is ${latest}, want ${done.at(-1)}`);
    }
  };

  const onEvent = (e: PolicyEvent) => {
    if (e.type === "checkpoint-done") {
      done.push(e.checkpoint.name);
      dumps.push(e.checkpoint.stats.dumpSeconds);
      freezes.push(e.checkpoint.stats.freezeSeconds);
      imageBytes = e.checkpoint.stats.imageBytes;
      if (done.length <= opts.keep) checkRetention(false);
    } else if (e.type === "pruned") {
      pruned += e.names.length;
      checkRetention(true);
    } else if (e.type === "checkpoint-failed") {
      failed++;
      violations.push(`checkpoint failed: ${e.error}`);
    } else if (e.type === "target-exited" && !stopping) {
      violations.push(`the target exited: ${JSON.stringify(e.exit)}`);
    }
  };

  const run = runPolicy({
    name: "soak",
    target: { command: [bin, trigger, work, String(opts.writeMs)], stdout: out },
    dir: ck,
    every: `${opts.everyMs}ms`,
    keep: opts.keep,
    onStop: "kill",
  }, { onEvent });
  const ended = run.done.catch((e) => {
    violations.push(`the run failed: ${e}`);
  });

  // Verify every new checkpoint while the run goes on.
  const t0 = Date.now();
  let verified = 0, lastVerified = "", lastProgress = t0;
  while (Date.now() - t0 < opts.durationMs && run.status().state !== "finished") {
    await sleep(50);
    const last = run.status().last;
    if (last && last.name !== lastVerified) {
      lastVerified = last.name;
      try {
        await planRestore(last.dir);
        verified++;
      } catch (e) {
        // Pruned under us only if `keep` newer ones exist; anything else is a broken image.
        if (done.indexOf(last.name) >= done.length - opts.keep) {
          violations.push(`checkpoint ${last.name} does not load: ${e}`);
        }
      }
    }
    if (opts.progress && Date.now() - lastProgress >= 30000) {
      lastProgress = Date.now();
      opts.progress(
        `${Math.round((Date.now() - t0) / 1000)} s: ${done.length} checkpoints, ` +
          `${pruned} pruned, ${verified} verified, ${violations.length} violations`,
      );
    }
  }
  const pid = run.status().pid;
  stopping = true;
  const outcome = await run.stop();
  await ended;
  if (outcome.reason !== "stopped") violations.push(`run ended: ${outcome.reason}`);
  if (pid === undefined) throw new Error("the policy never started its target");

  const { names, latest } = listStore(ck);
  if (names.length !== Math.min(opts.keep, done.length)) {
    violations.push(`after the stop the store holds ${names.length} checkpoints`);
  }
  if (latest !== done.at(-1)) violations.push(`after the stop latest is ${latest}`);

  const r0 = performance.now();
  const tree = await restore(resolve(ck, LATEST));
  const restoreSeconds = (performance.now() - r0) / 1000;
  const restored = adoptPid(tree.rootPid, out);
  if (tree.rootPid !== pid) violations.push(`restored as ${tree.rootPid}, not ${pid}`);
  await Deno.writeTextFile(trigger, "");
  const restoredExit = await restored.wait(60000);
  const records = Number(restored.output().match(/^records (\d+)$/m)?.[1] ?? -1);
  return {
    checkpoints: done.length,
    failed,
    pruned,
    retentionChecks,
    verified,
    violations,
    dumpSeconds: spread(dumps),
    freezeSeconds: spread(freezes),
    imageBytes,
    restoreSeconds,
    restored,
    restoredExit,
    records,
  };
}
