/**
 * Policies: programmable checkpointing and supervision. A policy says
 * what to checkpoint, when, where the images go and how many to keep,
 * what to leave out, which hooks to call, and what to do when the target
 * dies; {@link runPolicy} executes it.
 *
 * ```ts
 * import { definePolicy, runPolicy } from "./mod.ts";
 * const run = runPolicy(definePolicy({
 *   target: { command: ["./simulate"] },
 *   dir: "/tmp/simulate-ck",
 *   every: "30s",
 *   keep: 2,
 *   onExit: "restore",
 * }));
 * console.log((await run.done).exitCode);
 * ```
 *
 * @module
 */

export {
  type BackoffSpec,
  type CommandTargetSpec,
  definePolicy,
  type ExitAction,
  type ExitDecider,
  type ExitInfo,
  isPolicy,
  type PidFileTargetSpec,
  type PidTargetSpec,
  type Policy,
  PolicyError,
  type PolicyHooks,
  type PolicyIssue,
  type PolicySpec,
  type PolicyTarget,
  type SelectionSpec,
  type StopAction,
  type TargetSpec,
} from "./schema.ts";
export { type PolicyRun, RunEndedError, type RunOptions, runPolicy } from "./runner.ts";
export type { PolicyEvent, RunOutcome, RunState, RunStatus } from "./events.ts";
export {
  type CommandResult,
  type Hook,
  HOOK_NAMES,
  type HookContext,
  type HookName,
  type LogLevel,
  type PolicyLogger,
} from "./hooks.ts";
export { type CheckpointRecord, CheckpointStore, LATEST } from "./retention.ts";
export { type Duration, parseDuration } from "./duration.ts";
export { type CommandLaunch, describeExit, exitCodeOf, type TargetExit } from "./target.ts";
export { TRIGGER_SIGNALS, type TriggerSignal } from "./signals.ts";
