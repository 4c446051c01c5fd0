/**
 * The policy runner: starts or attaches to the target, checkpoints it when
 * a trigger asks, keeps the newest checkpoints, restores the target when
 * it dies abnormally, and stops as the policy says.
 *
 * Everything happens in one loop, one step at a time: a checkpoint, a
 * restore, a stop, or a look at whether the target still runs. The target
 * is never polled with wait4 while a checkpoint traces it, and a stop
 * request waits for a checkpoint in progress to finish.
 *
 * The runner makes its process a child subreaper: what it starts and what
 * it restores are its children, reaped by pid; orphans of a dead target
 * tree come back to it and are cleared before a restore needs their pids.
 *
 * @module
 */

import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { waitPid, WNOHANG } from "../../ffi/wait.ts";
import { checkpoint, type DumpEvent } from "../dump/mod.ts";
import { restore } from "../restore/mod.ts";
import { readStat } from "../proc/stat.ts";
import type { Manifest } from "../model.ts";
import { TargetError } from "../errors.ts";
import type { PolicyEvent, RunOutcome, RunState, RunStatus } from "./events.ts";
import {
  callHook,
  hookContext,
  type HookDetails,
  type HookName,
  type HookOutcome,
} from "./hooks.ts";
import { type CheckpointRecord, CheckpointStore } from "./retention.ts";
import { definePolicy, isPolicy, type Policy, type PolicySpec } from "./schema.ts";
import {
  describeExit,
  exitCodeOf,
  isAbnormalExit,
  type TargetExit,
  TargetProcess,
} from "./target.ts";
import { Triggers } from "./triggers.ts";
import { PreDumpChain } from "./predump.ts";

/** Options of {@link runPolicy}. */
export interface RunOptions {
  /** Receives every event of the run (the engine never prints). */
  onEvent?: (event: PolicyEvent) => void;
  /** Aborting it stops the run (as {@link PolicyRun.stop}). */
  signal?: AbortSignal;
  /** How often to look at the target, in ms (default 50). */
  pollIntervalMs?: number;
}

/** A running policy. */
export interface PolicyRun {
  /** The validated policy. */
  readonly policy: Policy;
  /**
   * Resolves with how the run ended; rejects when it could not start
   * (target missing or not startable, directory not writable, resume failed).
   */
  readonly done: Promise<RunOutcome>;
  /** A snapshot of the run. */
  status(): RunStatus;
  /**
   * Asks for a checkpoint now (after one in progress, if any); resolves
   * with it, with `undefined` when `beforeDump` skipped it, rejects when
   * it failed.
   */
  checkpoint(): Promise<CheckpointRecord | undefined>;
  /** Stops the run: finishes a checkpoint in progress, then treats the target as `onStop` says. */
  stop(why?: string): Promise<RunOutcome>;
}

interface Request {
  reason: string;
  resolve: (r: CheckpointRecord | undefined) => void;
  reject: (e: unknown) => void;
}

const PR_SET_CHILD_SUBREAPER = 36;

/**
 * Thrown at pending requests when the run ends before serving them.
 *
 * ```ts
 * await run.checkpoint().catch((e) => {
 *   if (!(e instanceof RunEndedError)) throw e;
 * });
 * ```
 */
export class RunEndedError extends Error {
  constructor() {
    super("the policy run ended");
    this.name = "RunEndedError";
  }
}

class PolicyRunner {
  readonly policy: Policy;
  readonly #onEvent: (e: PolicyEvent) => void;
  readonly #pollMs: number;
  readonly #triggers: Triggers;
  readonly #startedAt = Date.now();
  #store: CheckpointStore | undefined;
  #target: TargetProcess | undefined;
  #state: RunState = "starting";
  #checkpoints = 0;
  #restores = 0;
  #last: CheckpointRecord | undefined;
  #queue: Request[] = [];
  #stopWhy: string | undefined;
  #wake: (() => void) | undefined;
  /** The pre-copy chain, with `preDump` (engine/policy/predump.ts). */
  #preDump: PreDumpChain | undefined;
  #nextPreDumpAt: number | undefined;

  constructor(policy: Policy, opts: RunOptions) {
    this.policy = policy;
    this.#pollMs = opts.pollIntervalMs ?? 50;
    this.#onEvent = (e) => {
      try {
        opts.onEvent?.(e);
      } catch {
        // A failing listener must not break supervision.
      }
    };
    this.#triggers = new Triggers({
      everyMs: policy.everyMs,
      signals: policy.onSignal,
      request: (reason) => {
        if (this.#queue.some((r) => r.reason === reason)) return; // already asked
        this.#queue.push({ reason, resolve: () => {}, reject: () => {} });
        this.#poke();
      },
    });
  }

  status(): RunStatus {
    return {
      policy: this.policy.name,
      state: this.#state,
      ...(this.#target ? { pid: this.#target.pid } : {}),
      checkpoints: this.#checkpoints,
      restores: this.#restores,
      maxRestores: this.policy.maxRestores,
      ...(this.#last ? { last: this.#last } : {}),
      ...(this.#triggers.nextAt !== undefined ? { nextCheckpointAt: this.#triggers.nextAt } : {}),
      startedAt: this.#startedAt,
    };
  }

  requestCheckpoint(): Promise<CheckpointRecord | undefined> {
    if (this.#state === "finished") return Promise.reject(new RunEndedError());
    return new Promise((resolve, reject) => {
      this.#queue.push({ reason: "api", resolve, reject });
      this.#poke();
    });
  }

  requestStop(why: string): void {
    this.#stopWhy ??= why;
    this.#poke();
  }

  /** Starts the target, then supervises it until the run ends. */
  async run(): Promise<RunOutcome> {
    try {
      rawSyscall(SYS.prctl, PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
      this.#store = await CheckpointStore.open(this.policy.dir);
      if (this.policy.preDumpEveryMs !== undefined) {
        this.#preDump = await PreDumpChain.open(this.policy.dir);
      }
      // Listen before the target starts: a trigger signal must never find the default action.
      this.#triggers.start();
      await this.#start();
    } catch (e) {
      this.#finishRun();
      throw e;
    }
    this.#state = "running";
    this.#triggers.rearm();
    let outcome: RunOutcome;
    try {
      outcome = await this.#loop();
    } catch (error) {
      outcome = this.#outcome("failed", undefined, 1, error);
    }
    // A target that runs on keeps no tracking of ours.
    await this.#preDump?.close(this.#target?.poll() ? undefined : this.#target?.pid);
    this.#finishRun();
    this.#emit({ type: "finished", outcome });
    return outcome;
  }

  #finishRun(): void {
    this.#state = "finished";
    this.#triggers.dispose();
    for (const r of this.#queue.splice(0)) r.reject(new RunEndedError());
  }

  #emit(e: PolicyEvent): void {
    this.#onEvent(e);
  }

  #poke(): void {
    this.#wake?.();
  }

  /** Sleeps `ms`, or less when a request or a stop arrives. */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }

  async #start(): Promise<void> {
    const t = this.policy.target;
    if (t.kind === "command") {
      const latest = this.policy.resume ? await this.#store!.latest() : undefined;
      if (latest) {
        this.#last = await this.#store!.record(latest);
        const restored = await this.#restoreFrom(this.#last, { attempt: 0 });
        if (!restored.ok) throw restored.error;
        this.#emit({ type: "started", pid: this.#target!.pid, how: "resumed", from: latest });
        return;
      }
      this.#target = TargetProcess.spawn(t.launch);
      this.#emit({ type: "started", pid: this.#target.pid, how: "spawned" });
      return;
    }
    const pid = t.kind === "pid" ? t.pid : await readPidFile(t.pidFile);
    this.#target = TargetProcess.attach(pid);
    this.#emit({ type: "started", pid, how: "attached" });
  }

  async #loop(): Promise<RunOutcome> {
    for (;;) {
      if (this.#stopWhy !== undefined) return await this.#stop(this.#stopWhy);
      const exit = this.#target!.poll();
      if (exit) {
        const end = await this.#onTargetExit(exit);
        if (end) return end;
        continue;
      }
      const request = this.#queue.shift();
      if (request) {
        const end = await this.#checkpoint(request, this.policy.leaveRunning);
        if (end) return end;
        continue;
      }
      if (await this.#maybePreDump()) continue;
      await this.#sleep(this.#pollMs);
    }
  }

  #outcome(
    reason: RunOutcome["reason"],
    exit: TargetExit | undefined,
    exitCode: number,
    error?: unknown,
  ): RunOutcome {
    return {
      reason,
      ...(exit ? { exit } : {}),
      exitCode,
      checkpoints: this.#checkpoints,
      restores: this.#restores,
      ...(this.#last ? { last: this.#last } : {}),
      ...(error !== undefined ? { error } : {}),
    };
  }

  #details(extra: Partial<HookDetails> = {}): HookDetails {
    return {
      policy: this.policy.name,
      pid: this.#target?.pid ?? this.#last?.pid ?? 0,
      dir: this.policy.dir,
      ...(this.#last ? { latest: this.#last } : {}),
      counts: { checkpoints: this.#checkpoints, restores: this.#restores },
      ...extra,
    };
  }

  /** Calls a hook of the policy; a failure is reported (and given to `onError`). */
  async #hook(name: HookName, extra: Partial<HookDetails> = {}): Promise<HookOutcome> {
    const ctx = hookContext(name, this.#details(extra), {
      log: (level, message) => this.#emit({ type: "log", level, message }),
      signal: (n) => this.#target?.signal(n),
    });
    const outcome = await callHook(this.policy.hooks[name], ctx);
    if (!outcome.ok) {
      this.#emit({ type: "hook-failed", hook: name, error: outcome.error });
      if (name !== "onError") await this.#reportError(outcome.error, name);
    }
    return outcome;
  }

  async #reportError(error: unknown, during: string): Promise<void> {
    await this.#hook("onError", { error, during });
  }

  /**
   * Takes one checkpoint. Returns the run's outcome when the checkpoint
   * ended the target (`leaveRunning` false), otherwise undefined.
   */
  /**
   * A command the runner starts shares the runner's terminal, and is
   * restored by the runner onto that terminal again: the shell-job opt-in.
   */
  #optIns(): string[] {
    return this.policy.target.kind === "command" ? ["shell-job"] : [];
  }

  async #checkpoint(req: Request, leaveRunning: boolean): Promise<RunOutcome | undefined> {
    const target = this.#target!;
    const store = this.#store!;
    const { reason } = req;
    this.#state = "checkpointing";
    this.#triggers.pause();
    try {
      const before = await this.#hook("beforeDump", { reason });
      if (!before.ok || before.value === false) {
        const why = before.ok ? "beforeDump returned false" : "beforeDump failed";
        this.#emit({ type: "checkpoint-skipped", reason, why });
        if (before.ok) req.resolve(undefined);
        else req.reject(before.error);
        return undefined;
      }
      if (target.poll()) {
        const why = "the target ended";
        this.#emit({ type: "checkpoint-skipped", reason, why });
        req.reject(new TargetError(`no checkpoint: ${why}`));
        return undefined;
      }
      const name = store.nextName();
      this.#emit({ type: "checkpoint-started", reason, name });
      let record: CheckpointRecord;
      try {
        const result = await this.#dump(target, store.path(name), leaveRunning);
        record = {
          name,
          dir: result.dir,
          createdAt: result.manifest.createdAt,
          reason,
          pid: target.pid,
          stats: result.stats,
          leftRunning: leaveRunning,
        };
        await store.setLatest(name);
      } catch (error) {
        this.#emit({ type: "checkpoint-failed", reason, error });
        await this.#reportError(error, "checkpoint");
        req.reject(error);
        return undefined;
      }
      this.#checkpoints++;
      this.#last = record;
      this.#emit({ type: "checkpoint-done", checkpoint: record });
      try {
        const pruned = await store.prune(this.policy.keep);
        if (pruned.length) this.#emit({ type: "pruned", names: pruned });
      } catch (error) {
        this.#emit({ type: "log", level: "warn", message: `retention failed: ${error}` });
      }
      await this.#hook("afterDump", { reason, checkpoint: record });
      req.resolve(record);
      if (!leaveRunning) {
        // The checkpoint ended the target on purpose: reap it and end the run.
        return this.#outcome("checkpointed", target.poll() ?? { unknown: true }, 0);
      }
      return undefined;
    } finally {
      if (this.#state === "checkpointing") this.#state = "running";
      this.#triggers.rearm();
      this.#nextPreDumpAt = undefined;
    }
  }

  /**
   * The dump of a checkpoint into `dir`: on the latest pre-dump when there
   * is one (flattened into `dir`), falling back to a plain dump when that
   * fails and the target still runs.
   */
  async #dump(target: TargetProcess, dir: string, leaveRunning: boolean) {
    const opts = {
      leaveRunning,
      include: this.policy.select,
      optIns: this.#optIns(),
      onEvent: (event: DumpEvent) => this.#emit({ type: "checkpoint-progress", event }),
    };
    if (this.#preDump?.latest) {
      try {
        return await this.#preDump.checkpoint(target.pid, dir, opts);
      } catch (error) {
        if (target.poll()) throw error;
        this.#emit({
          type: "predump-fallback",
          why: "the checkpoint on the pre-dumps failed; taking a plain one",
          error,
        });
      }
    }
    return await checkpoint(target.pid, { ...opts, dir });
  }

  /**
   * With `preDump`: runs a pre-dump when one is due (the period counts from
   * the previous pre-dump, checkpoint or restore). Returns whether it ran.
   */
  async #maybePreDump(): Promise<boolean> {
    const chain = this.#preDump, every = this.policy.preDumpEveryMs;
    if (!chain || every === undefined || this.#state !== "running") return false;
    this.#nextPreDumpAt ??= Date.now() + every;
    if (Date.now() < this.#nextPreDumpAt) return false;
    const target = this.#target!;
    try {
      const done = await chain.preDump(target.pid, {
        include: this.policy.select,
        optIns: this.#optIns(),
      });
      this.#emit({ type: "predump-done", ...done });
    } catch (error) {
      if (!target.poll()) {
        this.#emit({
          type: "predump-fallback",
          why: "a pre-dump failed; the next checkpoint is a plain one",
          error,
        });
      }
    }
    this.#nextPreDumpAt = Date.now() + every;
    return true;
  }

  /** The target ended: restore it or end the run. */
  async #onTargetExit(exit: TargetExit): Promise<RunOutcome | undefined> {
    const pid = this.#target!.pid;
    if (this.#preDump?.latest) {
      await this.#preDump.close(undefined);
      this.#emit({ type: "predump-fallback", why: "the target ended: its pre-dumps are dropped" });
    }
    this.#nextPreDumpAt = undefined;
    const abnormal = isAbnormalExit(exit);
    this.#triggers.pause();
    this.#emit({ type: "target-exited", pid, exit, abnormal });
    const end = () => this.#outcome("exited", exit, exitCodeOf(exit));
    if (!abnormal) {
      // Finished: with resume, the next run must start afresh, not continue this one.
      if (this.policy.resume) await this.#store!.clearLatest();
      return end();
    }
    const action = await this.#decide(exit);
    if (action === "stop") return end();
    for (;;) {
      if (this.#stopWhy !== undefined) return this.#outcome("stopped", exit, exitCodeOf(exit));
      if (this.#restores >= this.policy.maxRestores) {
        this.#emit({
          type: "giving-up",
          why: `the target ${describeExit(exit)} and all ${this.policy.maxRestores} restores ` +
            `are used up`,
        });
        return end();
      }
      const from = this.#last;
      if (!from) {
        this.#emit({
          type: "giving-up",
          why: `the target ${describeExit(exit)} before any checkpoint was taken`,
        });
        return end();
      }
      const attempt = this.#restores + 1;
      const { initialMs, maxMs, factor } = this.policy.backoff;
      const delayMs = Math.min(maxMs, initialMs * factor ** (attempt - 1));
      this.#state = "waiting";
      this.#emit({ type: "restore-waiting", attempt, delayMs, from: from.name });
      const until = Date.now() + delayMs;
      while (Date.now() < until && this.#stopWhy === undefined) {
        await this.#sleep(until - Date.now());
      }
      if (this.#stopWhy !== undefined) continue;
      this.#restores++;
      const restored = await this.#restoreFrom(from, { attempt, exit });
      if (restored.ok) {
        this.#state = "running";
        this.#triggers.rearm();
        return undefined;
      }
    }
  }

  async #decide(exit: TargetExit): Promise<"restore" | "stop"> {
    const onExit = this.policy.onExit;
    if (typeof onExit !== "function") return onExit;
    try {
      const answer = await onExit({
        pid: this.#target!.pid,
        exit,
        restores: this.#restores,
        maxRestores: this.policy.maxRestores,
        ...(this.#last ? { latest: this.#last } : {}),
      });
      if (answer === "restore" || answer === "stop") return answer;
      this.#emit({
        type: "log",
        level: "warn",
        message: `onExit returned ${JSON.stringify(answer)}, not "restore" or "stop": stopping`,
      });
    } catch (error) {
      this.#emit({ type: "log", level: "error", message: `onExit failed: ${error}; stopping` });
      await this.#reportError(error, "onExit");
    }
    return "stop";
  }

  /** One restore attempt from `from` (attempt 0: resuming at start). */
  async #restoreFrom(
    from: CheckpointRecord,
    info: { attempt: number; exit?: TargetExit },
  ): Promise<{ ok: true } | { ok: false; error: unknown }> {
    this.#state = "restoring";
    const extra = {
      checkpoint: from,
      attempt: info.attempt,
      ...(info.exit ? { exit: info.exit } : {}),
    };
    const before = await this.#hook("beforeRestore", extra);
    if (!before.ok) {
      this.#emit({ type: "restore-failed", attempt: info.attempt, error: before.error });
      return { ok: false, error: before.error };
    }
    try {
      await clearLeftovers(from.dir);
      const tree = await restore(from.dir, {
        verifyChecksums: this.policy.verifyChecksums,
        optIns: this.#optIns(),
      });
      this.#target = TargetProcess.adopt(tree.rootPid);
      this.#emit({
        type: "restored",
        pid: tree.rootPid,
        attempt: info.attempt,
        from: from.name,
        seconds: tree.seconds,
      });
    } catch (error) {
      this.#emit({ type: "restore-failed", attempt: info.attempt, error });
      await this.#reportError(error, "restore");
      return { ok: false, error };
    }
    await this.#hook("afterRestore", extra);
    return { ok: true };
  }

  /** Ends the run as `onStop` says. */
  async #stop(why: string): Promise<RunOutcome> {
    const target = this.#target!;
    const action = this.policy.onStop;
    this.#state = "stopping";
    this.#triggers.pause();
    this.#emit({ type: "stopping", action, why });
    const exit = target.poll();
    if (exit) return this.#outcome("exited", exit, exitCodeOf(exit));
    if (action === "leave") return this.#outcome("stopped", undefined, 0);
    if (action === "kill") {
      return this.#outcome("stopped", await target.terminate(this.policy.stopTimeoutMs), 0);
    }
    let failure: unknown = new Error("the stop checkpoint was skipped");
    const end = await this.#checkpoint({
      reason: "stop",
      resolve: () => {},
      reject: (e) => failure = e,
    }, false);
    if (end) return { ...end, reason: "stopped" };
    return this.#outcome(
      "stopped",
      undefined,
      1,
      new Error(`the target was left running: ${errorText(failure)}`),
    );
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function readPidFile(path: string): Promise<number> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new TargetError(`cannot read pid file ${path}: ${errorText(e)}`);
  }
  const pid = Number(text.trim());
  if (!/^\d+$/.test(text.trim()) || pid <= 0) {
    throw new TargetError(`pid file ${path} does not hold a pid: ${JSON.stringify(text.trim())}`);
  }
  return pid;
}

/**
 * Before a restore: processes of the dead tree that are still around as
 * our children hold pids the restore needs — orphans re-parented to this
 * subreaper, either with a pid of the image, or still in the process group
 * (or session) of one (a pid used as a group id cannot be given to a new
 * process). Those, and only those of our children, are killed and reaped.
 */
async function clearLeftovers(dir: string): Promise<void> {
  const manifest = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`)) as Manifest;
  const pids = new Map(manifest.processes.map((p) => [p.pid, p.comm]));
  const leftovers: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    let stat;
    try {
      stat = readStat(Number(entry.name));
    } catch {
      continue;
    }
    if (stat.ppid !== Deno.pid) continue;
    if (pids.get(stat.pid) === stat.comm || pids.has(stat.pgrp) || pids.has(stat.session)) {
      leftovers.push(stat.pid);
    }
  }
  for (const pid of leftovers) rawSyscall(SYS.kill, pid, 9);
  const deadline = Date.now() + 5000;
  for (const pid of leftovers) {
    while (Date.now() < deadline) {
      let st;
      try {
        st = waitPid(pid, WNOHANG);
      } catch {
        break;
      }
      if (st.kind === "exited" || st.kind === "signaled") break;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/**
 * Runs a policy: starts or attaches to its target, checkpoints it on its
 * triggers, supervises it, and resolves `done` with how the run ended.
 * A spec is validated first (throwing {@link PolicyError}).
 *
 * ```ts
 * import { definePolicy, runPolicy } from "../../mod.ts";
 * const run = runPolicy(definePolicy({
 *   target: { command: ["./simulate"] },
 *   dir: "/tmp/simulate-ck",
 *   every: "10s",
 *   onExit: "restore",
 * }), { onEvent: (e) => console.log(e.type) });
 * const first = await run.checkpoint(); // on demand
 * console.log(first?.name, (await run.done).exitCode);
 * ```
 */
export function runPolicy(policy: Policy | PolicySpec, opts: RunOptions = {}): PolicyRun {
  const validated = isPolicy(policy) ? policy : definePolicy(policy);
  const runner = new PolicyRunner(validated, opts);
  const done = runner.run();
  if (opts.signal) {
    const signal = opts.signal;
    const onAbort = () => runner.requestStop("aborted");
    if (signal.aborted) onAbort();
    else {
      signal.addEventListener("abort", onAbort, { once: true });
      done.finally(() => signal.removeEventListener("abort", onAbort)).catch(() => {});
    }
  }
  return {
    policy: validated,
    done,
    status: () => runner.status(),
    checkpoint: () => runner.requestCheckpoint(),
    stop: (why = "stop requested") => {
      runner.requestStop(why);
      return done;
    },
  };
}
