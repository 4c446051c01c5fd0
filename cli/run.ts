/**
 * `cryo run <policy.ts>`: load a policy module and execute it, with a live
 * status line on stderr when it is a terminal and one log line per event
 * otherwise; SIGINT/SIGTERM stop the run as the policy says.
 *
 * @module
 */

import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Command } from "npm:@commander-js/extra-typings@15.1.0";
import { definePolicy, isPolicy, type Policy } from "../engine/policy/schema.ts";
import { runPolicy } from "../engine/policy/runner.ts";
import type { PolicyEvent, RunOutcome, RunStatus } from "../engine/policy/events.ts";
import { describeExit } from "../engine/policy/target.ts";
import { CommandFailedError, describeError } from "./errors.ts";
import { humanBytes, humanDuration } from "./format.ts";

/** Loads the policy module at `path`: its default export, validated. */
export async function loadPolicy(path: string): Promise<Policy> {
  const abs = resolve(path);
  try {
    await Deno.stat(abs);
  } catch {
    throw new CommandFailedError(`policy ${path}: no such file`);
  }
  let mod: { default?: unknown };
  try {
    mod = await import(pathToFileURL(abs).href);
  } catch (e) {
    throw new CommandFailedError(`policy ${path}: ${describeError(e)}`);
  }
  if (mod.default === undefined) {
    throw new CommandFailedError(
      `policy ${path} has no default export (expected: export default definePolicy({...}))`,
    );
  }
  if (isPolicy(mod.default)) return mod.default;
  try {
    return definePolicy(mod.default as Parameters<typeof definePolicy>[0]);
  } catch (e) {
    throw new CommandFailedError(`policy ${path}: ${describeError(e)}`);
  }
}

function clock(ms = Date.now()): string {
  return new Date(ms).toISOString().slice(11, 23);
}

function describeTarget(policy: Policy): string {
  const t = policy.target;
  if (t.kind === "command") return `command ${t.launch.command.join(" ")}`;
  if (t.kind === "pid") return `pid ${t.pid}`;
  return `the pid in ${t.pidFile}`;
}

/** What a policy will do, one line per aspect (for `--dry-run`). */
export function describePolicy(policy: Policy): string[] {
  const triggers = [
    ...(policy.everyMs !== undefined ? [`every ${humanDuration(policy.everyMs / 1000)}`] : []),
    ...(policy.preDumpEveryMs !== undefined
      ? [`pre-dump every ${humanDuration(policy.preDumpEveryMs / 1000)}`]
      : []),
    ...policy.onSignal.map((s) => `on ${s}`),
    "on demand (API)",
  ];
  const b = policy.backoff;
  const backoff = b.factor === 1 || b.initialMs === b.maxMs
    ? humanDuration(b.initialMs / 1000)
    : `${humanDuration(b.initialMs / 1000)} x${b.factor} up to ${humanDuration(b.maxMs / 1000)}`;
  const onExit = typeof policy.onExit === "function" ? "decided by a function" : policy.onExit;
  const hooks = Object.keys(policy.hooks).filter((k) =>
    policy.hooks[k as keyof typeof policy.hooks]
  );
  return [
    `policy     ${policy.name}`,
    `target     ${describeTarget(policy)}${policy.resume ? " (resumed from latest if any)" : ""}`,
    `dir        ${policy.dir} (keep ${policy.keep}, "latest" -> newest)`,
    `checkpoint ${triggers.join(", ")}; target ${policy.leaveRunning ? "runs on" : "ends"}`,
    `select     ${policy.select ? "include/exclude predicates" : "everything"}`,
    `on exit    ${onExit} (at most ${policy.maxRestores} restores, back-off ${backoff})`,
    `on stop    ${policy.onStop}`,
    `hooks      ${hooks.length ? hooks.join(", ") : "none"}`,
  ];
}

function attempts(n: number, max: number): string {
  return `attempt ${n} of ${max}`;
}

/** The log line of an event, or undefined for events that only feed the status line. */
export function describeEvent(e: PolicyEvent, policy: Policy): string | undefined {
  switch (e.type) {
    case "started":
      if (e.how === "spawned") return `started pid ${e.pid}: ${describeTarget(policy)}`;
      if (e.how === "resumed") return `resumed pid ${e.pid} from ${e.from}`;
      return `attached to pid ${e.pid}`;
    case "checkpoint-started":
      return `checkpoint ${e.name} (${e.reason})`;
    case "checkpoint-progress":
      return undefined;
    case "checkpoint-done": {
      const c = e.checkpoint;
      return `checkpoint ${c.name} done (${c.reason}): ${humanBytes(c.stats.imageBytes)} in ` +
        `${humanDuration(c.stats.dumpSeconds)}, target frozen ${
          humanDuration(c.stats.freezeSeconds)
        }`;
    }
    case "checkpoint-skipped":
      return `checkpoint (${e.reason}) skipped: ${e.why}`;
    case "checkpoint-failed":
      return `checkpoint (${e.reason}) failed: ${describeError(e.error)}`;
    case "pruned":
      return `removed old checkpoint${e.names.length === 1 ? "" : "s"} ${e.names.join(", ")}`;
    case "target-exited":
      return `target pid ${e.pid} ${describeExit(e.exit)}`;
    case "restore-waiting":
      return `restoring from ${e.from} in ${humanDuration(e.delayMs / 1000)} (${
        attempts(e.attempt, policy.maxRestores)
      })`;
    case "restored":
      return e.attempt === 0
        ? `restored pid ${e.pid} from ${e.from} in ${humanDuration(e.seconds)}`
        : `restored pid ${e.pid} from ${e.from} in ${humanDuration(e.seconds)} (${
          attempts(e.attempt, policy.maxRestores)
        })`;
    case "restore-failed":
      return `restore failed (${attempts(e.attempt, policy.maxRestores)}): ${
        describeError(e.error)
      }`;
    case "giving-up":
      return `giving up: ${e.why}`;
    case "hook-failed":
      return `hook ${e.hook} failed: ${describeError(e.error)}`;
    case "log":
      return e.level === "info" ? e.message : `${e.level}: ${e.message}`;
    case "stopping": {
      const what = { kill: "ending the target", leave: "leaving the target running" }[
        e.action as "kill" | "leave"
      ] ?? "checkpointing the target, then ending it";
      return `stopping (${e.why}): ${what}`;
    }
    case "finished":
      return `finished: ${describeOutcome(e.outcome)}`;
    case "predump-done":
      return undefined;
    case "predump-fallback":
      return `pre-copy: ${e.why}${e.error !== undefined ? `: ${describeError(e.error)}` : ""}`;
  }
}

/** One phrase for how a run ended. */
export function describeOutcome(o: RunOutcome): string {
  const counts = `${o.checkpoints} checkpoint${o.checkpoints === 1 ? "" : "s"}, ${o.restores} ` +
    `restore${o.restores === 1 ? "" : "s"}`;
  const saved = o.last?.reason === "stop" && o.last.leftRunning === false;
  const exit = saved
    ? `target saved in ${o.last?.name} and ended`
    : o.exit
    ? `target ${describeExit(o.exit)}`
    : "target left running";
  const what = {
    exited: exit,
    stopped: `stopped, ${exit}`,
    checkpointed: "the final checkpoint ended the target",
    failed: `failed: ${describeError(o.error)}`,
  }[o.reason];
  return `${what} (${counts}; exit code ${o.exitCode})`;
}

/** The live status line: pid, state, checkpoints, last dump, restores, next trigger. */
export function statusLine(s: RunStatus, now = Date.now()): string {
  const parts = [s.policy, s.pid !== undefined ? `pid ${s.pid}` : "no target yet", s.state];
  parts.push(`${s.checkpoints} checkpoint${s.checkpoints === 1 ? "" : "s"}`);
  if (s.last) {
    parts.push(
      `last ${s.last.createdAt.slice(11, 19)} (${humanBytes(s.last.stats.imageBytes)}, ${
        humanDuration(s.last.stats.dumpSeconds)
      })`,
    );
  }
  parts.push(`restores ${s.restores}/${s.maxRestores}`);
  if (s.nextCheckpointAt !== undefined) {
    parts.push(`next in ${humanDuration(Math.max(0, s.nextCheckpointAt - now) / 1000)}`);
  }
  return parts.join(" · ");
}

/** Writes log lines, and on a terminal keeps a status line below them. */
class RunDisplay {
  readonly #enc = new TextEncoder();
  readonly #live = Deno.stderr.isTerminal();
  readonly #policy: Policy;
  #status: (() => RunStatus) | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #drawnAt = 0;
  #progress: { bytes: number; totalBytes: number } | undefined;

  constructor(policy: Policy) {
    this.#policy = policy;
  }

  #write(text: string): void {
    Deno.stderr.writeSync(this.#enc.encode(text));
  }

  start(status: () => RunStatus): void {
    this.#status = status;
    if (this.#live) this.#timer = setInterval(() => this.#redraw(), 500);
  }

  #redraw(force = true): void {
    if (!this.#live || !this.#status) return;
    const now = Date.now();
    if (!force && now - this.#drawnAt < 100) return; // progress events come in bursts
    this.#drawnAt = now;
    const status = this.#status();
    let line = statusLine(status, now);
    if (status.state === "checkpointing" && this.#progress) {
      line += ` · saving ${humanBytes(this.#progress.bytes)}/${
        humanBytes(this.#progress.totalBytes)
      }`;
    }
    try {
      const cols = Deno.consoleSize().columns;
      if (line.length >= cols) line = `${line.slice(0, cols - 2)}…`;
    } catch { /* keep it whole */ }
    this.#write(`\r\x1b[2K${line}`);
  }

  event(e: PolicyEvent): void {
    if (e.type === "checkpoint-started") this.#progress = undefined;
    if (e.type === "checkpoint-progress" && e.event.type === "pages") {
      this.#progress = { bytes: e.event.bytes, totalBytes: e.event.totalBytes };
    }
    const text = describeEvent(e, this.#policy);
    if (text !== undefined) {
      this.line(`${clock()} ${this.#policy.name}: ${text}`);
    } else this.#redraw(false);
  }

  line(text: string): void {
    this.#write(this.#live ? `\r\x1b[2K${text}\n` : `${text}\n`);
    this.#redraw();
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#live) this.#write("\r\x1b[2K");
  }
}

const STOP_SIGNALS: Deno.Signal[] = ["SIGINT", "SIGTERM"];

/** Runs `policy` until it ends; returns the exit code. */
export async function executePolicy(policy: Policy): Promise<number> {
  const display = new RunDisplay(policy);
  const run = runPolicy(policy, { onEvent: (e) => display.event(e) });
  display.start(() => run.status());
  let stopping = false;
  const listeners = STOP_SIGNALS.map((sig) => {
    const listener = () => {
      if (stopping) {
        display.line(`${clock()} ${policy.name}: already stopping (${sig} ignored)`);
        return;
      }
      stopping = true;
      void run.stop(sig);
    };
    Deno.addSignalListener(sig, listener);
    return [sig, listener] as const;
  });
  try {
    const outcome = await run.done;
    if (outcome.reason === "failed") throw outcome.error;
    if (outcome.error !== undefined) display.line(`cryo: ${describeError(outcome.error)}`);
    return outcome.exitCode;
  } finally {
    for (const [sig, listener] of listeners) Deno.removeSignalListener(sig, listener);
    display.stop();
  }
}

/** Registers `run` on the program. */
export function register(program: Command): void {
  program
    .command("run")
    .description("run a policy script: when and what to checkpoint, and what to do on failure")
    .argument("<policy>", "TypeScript module whose default export is definePolicy({...})")
    .option("--dry-run", "validate the policy and print what it would do, without running it")
    .addHelpText(
      "after",
      `
A policy names its target (a command to start, a pid or a pidfile), when to
checkpoint (interval, signal, on demand), where images go and how many to
keep, hooks around dump and restore, and whether to restore the target
from its latest image when it dies. Stop with Ctrl-C (SIGINT) or SIGTERM:
a checkpoint in progress finishes, then the target is killed, left running
or checkpointed, as the policy's onStop says.

On a terminal a status line shows the target, its checkpoints and the next
trigger; otherwise every event is one line on stderr. The exit code is 0
when the target exits 0 or the run is stopped, and the target's status
(128 + signal when killed) when it ended for good. See docs/POLICIES.md.

Examples:
  cryo run scripts/policy-batch.ts
  cryo run --dry-run scripts/policy-service.ts`,
    )
    .action(async (path, opts) => {
      const policy = await loadPolicy(path);
      if (opts.dryRun) {
        for (const line of describePolicy(policy)) console.log(line);
        return;
      }
      Deno.exitCode = await executePolicy(policy);
    });
}
