/**
 * What policy hooks are given: a context with the target's pid, the
 * checkpoint concerned, a logger whose lines become runner events, and
 * helpers to signal the target or run a command; and how hooks are called
 * (errors are caught and reported, never thrown into the runner).
 *
 * @module
 */

import type { CheckpointRecord } from "./retention.ts";
import type { TargetExit } from "./target.ts";
import { signalNumber } from "./signals.ts";

/** The hooks a policy can define, in the order they may run. */
export const HOOK_NAMES = [
  "beforeDump",
  "afterDump",
  "beforeRestore",
  "afterRestore",
  "onError",
] as const;

/** Name of a hook. */
export type HookName = typeof HOOK_NAMES[number];

/** Level of a line logged by a hook. */
export type LogLevel = "info" | "warn" | "error";

/** A logger for hooks: each line becomes a `log` event of the run (the CLI prints it). */
export interface PolicyLogger {
  /** Logs an informational line. */
  info(message: string): void;
  /** Logs a warning. */
  warn(message: string): void;
  /** Logs an error. */
  error(message: string): void;
}

/** The result of {@link HookContext.run}. */
export interface CommandResult {
  /** Exit code (128 + signal when killed by a signal). */
  code: number;
  /** Its standard output, decoded as UTF-8. */
  stdout: string;
  /** Its standard error, decoded as UTF-8. */
  stderr: string;
}

/** What every hook receives. */
export interface HookContext {
  /** The hook being called. */
  hook: HookName;
  /** The policy's name. */
  policy: string;
  /** Pid of the target (the same after a restore). */
  pid: number;
  /** Absolute path of the policy's checkpoint directory. */
  dir: string;
  /** Why the checkpoint is taken (`"interval"`, `"signal SIGUSR1"`, `"api"`, `"stop"`): dump hooks. */
  reason?: string;
  /**
   * The checkpoint concerned: the one just written (`afterDump`), or the
   * one restored from (`beforeRestore`, `afterRestore`).
   */
  checkpoint?: CheckpointRecord;
  /** The newest complete checkpoint, if any. */
  latest?: CheckpointRecord;
  /** How the target ended (`beforeRestore`, `afterRestore`). */
  exit?: TargetExit;
  /** Restore attempt number, from 1 (`beforeRestore`, `afterRestore`). */
  attempt?: number;
  /** The error (`onError`). */
  error?: unknown;
  /** What failed (`onError`): `"checkpoint"`, `"restore"` or a hook name. */
  during?: string;
  /** Checkpoints taken and restores done so far by this run. */
  counts: { checkpoints: number; restores: number };
  /** Logs lines that the runner reports as events. */
  log: PolicyLogger;
  /** Sends a signal (name such as `"SIGUSR1"`, or number) to the target. */
  signal(sig: string | number): void;
  /** Runs a command (not traced; waits for it) and returns its exit code and output. */
  run(command: readonly string[], opts?: { cwd?: string; env?: Record<string, string> }): Promise<
    CommandResult
  >;
}

/** The fields of a context that vary per call. */
export type HookDetails = Omit<HookContext, "hook" | "log" | "signal" | "run">;

/** A hook function as a policy defines it; `beforeDump` may return `false` to skip a checkpoint. */
export type Hook = (ctx: HookContext) => unknown;

/** Runs `command` and collects its exit code and output. */
export async function runCommand(
  command: readonly string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<CommandResult> {
  if (command.length === 0) throw new TypeError("run: empty command");
  const out = await new Deno.Command(command[0], {
    args: command.slice(1),
    cwd: opts.cwd,
    env: opts.env,
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return {
    code: out.signal ? 128 + signalNumber(out.signal) : out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

/** Builds the context of one hook call. */
export function hookContext(
  hook: HookName,
  details: HookDetails,
  io: { log: (level: LogLevel, message: string) => void; signal: (n: number) => void },
): HookContext {
  return {
    ...details,
    hook,
    log: {
      info: (m) => io.log("info", m),
      warn: (m) => io.log("warn", m),
      error: (m) => io.log("error", m),
    },
    signal: (sig) => io.signal(signalNumber(sig)),
    run: runCommand,
  };
}

/** The outcome of calling a hook. */
export type HookOutcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** Calls `hook` (if defined) and awaits it; a throw or rejection is returned, not thrown. */
export async function callHook(hook: Hook | undefined, ctx: HookContext): Promise<HookOutcome> {
  if (!hook) return { ok: true, value: undefined };
  try {
    return { ok: true, value: await hook(ctx) };
  } catch (error) {
    return { ok: false, error };
  }
}
