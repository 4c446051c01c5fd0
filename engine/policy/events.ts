/**
 * What a policy run reports: its events (one per thing that happened, for
 * the CLI to log), its live status, and how it ended. The engine never
 * prints; these are the whole interface.
 *
 * @module
 */

import type { DumpEvent } from "../dump/mod.ts";
import type { HookName, LogLevel } from "./hooks.ts";
import type { CheckpointRecord } from "./retention.ts";
import type { StopAction } from "./schema.ts";
import type { TargetExit } from "./target.ts";

/** One thing that happened during a policy run. */
export type PolicyEvent =
  | { type: "started"; pid: number; how: "spawned" | "attached" | "resumed"; from?: string }
  | { type: "checkpoint-started"; reason: string; name: string }
  | { type: "checkpoint-progress"; event: DumpEvent }
  | { type: "checkpoint-done"; checkpoint: CheckpointRecord }
  | { type: "checkpoint-skipped"; reason: string; why: string }
  | { type: "checkpoint-failed"; reason: string; error: unknown }
  | { type: "pruned"; names: string[] }
  | { type: "target-exited"; pid: number; exit: TargetExit; abnormal: boolean }
  | { type: "restore-waiting"; attempt: number; delayMs: number; from: string }
  | { type: "restored"; pid: number; attempt: number; from: string; seconds: number }
  | { type: "restore-failed"; attempt: number; error: unknown }
  | { type: "giving-up"; why: string }
  | { type: "hook-failed"; hook: HookName; error: unknown }
  | { type: "log"; level: LogLevel; message: string }
  | { type: "stopping"; action: StopAction; why: string }
  | { type: "finished"; outcome: RunOutcome }
  /** A pre-dump between checkpoints (`preDump`); `depth` counts those the next checkpoint builds on. */
  | { type: "predump-done"; bytes: number; frozenSeconds: number; depth: number }
  /** Pre-copy gave way: the next checkpoint (or this one) is a plain one. */
  | { type: "predump-fallback"; why: string; error?: unknown };

/** What a run is doing. */
export type RunState =
  | "starting"
  | "running"
  | "checkpointing"
  | "waiting"
  | "restoring"
  | "stopping"
  | "finished";

/** A snapshot of a run, for status lines. */
export interface RunStatus {
  /** The policy's name. */
  policy: string;
  /** What it is doing. */
  state: RunState;
  /** The target's pid, once started. */
  pid?: number;
  /** Checkpoints taken by this run. */
  checkpoints: number;
  /** Restores done by this run (attempts, failed ones included). */
  restores: number;
  /** The policy's `maxRestores`. */
  maxRestores: number;
  /** The newest complete checkpoint. */
  last?: CheckpointRecord;
  /** When the periodic trigger fires next (epoch ms), if armed. */
  nextCheckpointAt?: number;
  /** When the run started (epoch ms). */
  startedAt: number;
}

/** How a run ended. */
export interface RunOutcome {
  /**
   * `exited`: the target ended (normally, or abnormally with no more
   * restores); `stopped`: the runner was asked to stop; `checkpointed`: a
   * checkpoint ended the target (`leaveRunning: false`); `failed`: the
   * runner itself failed.
   */
  reason: "exited" | "stopped" | "checkpointed" | "failed";
  /** How the target ended, when it did. */
  exit?: TargetExit;
  /** The exit code for a CLI: 0, the target's code, or 128 + its signal. */
  exitCode: number;
  /** Checkpoints taken. */
  checkpoints: number;
  /** Restores done. */
  restores: number;
  /** The newest complete checkpoint. */
  last?: CheckpointRecord;
  /** What went wrong (`failed`, or a stop checkpoint that failed). */
  error?: unknown;
}
