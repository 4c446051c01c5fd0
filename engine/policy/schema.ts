/**
 * Policies: what a policy file declares (`PolicySpec`), its validation
 * (with zod; every error names the field and what was expected) and the
 * normalized, validated `Policy` that the runner executes.
 *
 * ```ts
 * import { definePolicy } from "./schema.ts";
 * export default definePolicy({
 *   target: { command: ["./simulate", "--steps", "1e9"] },
 *   dir: "/var/lib/cryo/simulate",
 *   every: "5m",
 *   keep: 3,
 *   onExit: "restore",
 * });
 * ```
 *
 * @module
 */

import { z } from "npm:zod@4.6.7";
import { resolve } from "node:path";
import type { FdInfo, Mapping, ProcessImage } from "../model.ts";
import { CryoError } from "../errors.ts";
import { type Duration, DURATION_EXPECTED, tryParseDuration } from "./duration.ts";
import { type Hook, HOOK_NAMES } from "./hooks.ts";
import type { CheckpointRecord } from "./retention.ts";
import type { CommandLaunch, TargetExit } from "./target.ts";
import { TRIGGER_SIGNALS, type TriggerSignal } from "./signals.ts";

/** A target cryo starts: the program and its arguments, with optional cwd, env and stdio files. */
export interface CommandTargetSpec {
  /** The program (a path, or a name looked up in $PATH) and its arguments. */
  command: string[];
  /** Working directory (default: the runner's). */
  cwd?: string;
  /** Variables added to the runner's environment. */
  env?: Record<string, string>;
  /** File for stdin (default `/dev/null`). */
  stdin?: string;
  /** File for stdout, truncated at start (default: the runner's stdout). */
  stdout?: string;
  /** File for stderr (default: the runner's stderr; the stdout path shares stdout's file). */
  stderr?: string;
}

/** An existing process, by pid. */
export interface PidTargetSpec {
  /** Its pid. */
  pid: number;
}

/** An existing process whose pid is in a file (read when the run starts). */
export interface PidFileTargetSpec {
  /** Path of the file holding the pid. */
  pidFile: string;
}

/** What to supervise and checkpoint. */
export type TargetSpec = CommandTargetSpec | PidTargetSpec | PidFileTargetSpec;

/** Predicates choosing parts of the process (return true for the parts they match). */
export interface SelectionSpec {
  /** Called for each memory mapping (except vdso/vvar/vsyscall). */
  mapping?: (mapping: Mapping, process: ProcessImage) => boolean;
  /** Called for each open fd. */
  fd?: (fd: FdInfo, process: ProcessImage) => boolean;
}

/** What to do when the target ends abnormally. */
export type ExitAction = "restore" | "stop";

/** What an `onExit` function is told. */
export interface ExitInfo {
  /** The target's pid. */
  pid: number;
  /** How it ended. */
  exit: TargetExit;
  /** Restores done so far. */
  restores: number;
  /** The policy's `maxRestores`. */
  maxRestores: number;
  /** The newest complete checkpoint, if any. */
  latest?: CheckpointRecord;
}

/** A function deciding what to do when the target ends abnormally. */
export type ExitDecider = (info: ExitInfo) => ExitAction | Promise<ExitAction>;

/** What the runner does with the target when it is stopped (SIGINT/SIGTERM, `stop()`). */
export type StopAction = "kill" | "leave" | "checkpoint";

/** Async functions called around checkpoints and restores (see HookContext). */
export interface PolicyHooks {
  /** Before each checkpoint; returning `false` skips it, throwing fails it. */
  beforeDump?: Hook;
  /** After each complete checkpoint (`ctx.checkpoint` is the new one). */
  afterDump?: Hook;
  /** Before each restore (`ctx.checkpoint` is the one restored from, `ctx.exit` how the target ended). */
  beforeRestore?: Hook;
  /** After each restore (the target runs again, same pid). */
  afterRestore?: Hook;
  /** When a checkpoint, a restore or another hook fails (`ctx.error`, `ctx.during`). */
  onError?: Hook;
}

/** Exponential back-off between restores. */
export interface BackoffSpec {
  /** Delay before the first restore (default `"1s"`). */
  initial?: Duration;
  /** Longest delay (default `"30s"`). */
  max?: Duration;
  /** Factor from one delay to the next (default 2). */
  factor?: number;
}

/** What a policy file declares: `export default definePolicy({...})`. */
export interface PolicySpec {
  /** A name for logs (default: derived from the target). */
  name?: string;
  /** The process to supervise: `{ command }` (cryo starts it), `{ pid }` or `{ pidFile }`. */
  target: TargetSpec;
  /** Directory of the checkpoints: one subdirectory each, and a `latest` symlink. */
  dir: string;
  /** Checkpoint periodically: this long after the previous checkpoint (or the start). */
  every?: Duration;
  /** Checkpoint when the runner receives this signal (or any of these). */
  onSignal?: TriggerSignal | TriggerSignal[];
  /** How many complete checkpoints to keep (default 3). */
  keep?: number;
  /** Let the target run on after each checkpoint (default true); false ends it with the first. */
  leaveRunning?: boolean;
  /** Only these parts are saved (left-out mappings come back empty, left-out fds closed). */
  include?: SelectionSpec;
  /** These parts are left out of the images. */
  exclude?: SelectionSpec;
  /** When the target ends abnormally: `"stop"` (default), `"restore"`, or a function deciding. */
  onExit?: ExitAction | ExitDecider;
  /** Most restores in one run (default 3). */
  maxRestores?: number;
  /** Delay before each restore: a fixed duration, or an exponential back-off. */
  backoff?: Duration | BackoffSpec;
  /** Start from the latest checkpoint of `dir`, if there is one, instead of running the command. */
  resume?: boolean;
  /** What to do with the target when the runner stops: kill (default for commands), leave (default for pids), checkpoint then end it. */
  onStop?: StopAction;
  /** How long `kill` waits after SIGTERM before SIGKILL (default `"5s"`). */
  stopTimeout?: Duration;
  /** Verify the image checksums before restoring (default true). */
  verifyChecksums?: boolean;
  /** Functions called around checkpoints and restores. */
  hooks?: PolicyHooks;
  /** Pre-copy: pre-dump this often between checkpoints, so each freezes only for the dirty set. */
  preDump?: { every: Duration };
}

/** The target of a validated policy. */
export type PolicyTarget =
  | { kind: "command"; launch: CommandLaunch }
  | { kind: "pid"; pid: number }
  | { kind: "pidFile"; pidFile: string };

/** A validated policy with every default filled in, as {@link definePolicy} returns it. */
export interface Policy {
  /** Marks a validated policy. */
  readonly kind: "cryo-policy";
  /** Its name. */
  readonly name: string;
  /** The target. */
  readonly target: PolicyTarget;
  /** Absolute checkpoint directory. */
  readonly dir: string;
  /** Period of checkpoints in ms, if periodic. */
  readonly everyMs?: number;
  /** Signals that trigger a checkpoint. */
  readonly onSignal: readonly TriggerSignal[];
  /** Checkpoints kept. */
  readonly keep: number;
  /** Whether the target runs on after a checkpoint. */
  readonly leaveRunning: boolean;
  /** The include/exclude predicates combined, as `checkpoint()` takes them. */
  readonly select?: {
    mapping?: (m: Mapping, p: ProcessImage) => boolean;
    fd?: (f: FdInfo, p: ProcessImage) => boolean;
  };
  /** What to do when the target ends abnormally. */
  readonly onExit: ExitAction | ExitDecider;
  /** Most restores. */
  readonly maxRestores: number;
  /** Back-off between restores, in ms. */
  readonly backoff: { readonly initialMs: number; readonly maxMs: number; readonly factor: number };
  /** Whether to start from the latest checkpoint. */
  readonly resume: boolean;
  /** What to do with the target on stop. */
  readonly onStop: StopAction;
  /** SIGTERM-to-SIGKILL delay of `kill`, ms. */
  readonly stopTimeoutMs: number;
  /** Whether restores verify checksums. */
  readonly verifyChecksums: boolean;
  /** The hooks. */
  readonly hooks: Readonly<PolicyHooks>;
  /** The spec it was made from. */
  readonly spec: Readonly<PolicySpec>;
  /** Period of pre-dumps between checkpoints in ms, if pre-copy is on (engine/policy/predump.ts). */
  readonly preDumpEveryMs?: number;
}

/** One problem found in a policy. */
export interface PolicyIssue {
  /** Dotted path of the field (`"target.command"`, `"hooks.afterDump"`); empty for the whole policy. */
  field: string;
  /** What was expected (and what was found). */
  message: string;
}

/**
 * A policy that does not validate; the message lists every problem with its field.
 *
 * ```ts
 * try {
 *   definePolicy({ target: { command: ["./sim"] }, dir: "/tmp/ck", evry: "1s" } as never);
 * } catch (e) {
 *   if (e instanceof PolicyError) console.log(e.issues); // [{ field: "evry", message: "unknown field — did you mean \"every\"? ..." }]
 * }
 * ```
 */
export class PolicyError extends CryoError {
  /** The problems, one per field. */
  readonly issues: PolicyIssue[];
  /** Makes the error from the problems found. */
  constructor(issues: PolicyIssue[]) {
    super(
      `invalid policy: ${
        issues.map((i) => (i.field ? `${i.field}: ${i.message}` : i.message)).join("; ")
      }`,
    );
    this.name = "PolicyError";
    this.issues = issues;
  }
}

// ---------------------------------------------------------------------------------------------
// The schema

const isFunction = (v: unknown) => typeof v === "function";

function fn<T>(signature: string) {
  return z.custom<T>(isFunction, { error: `expected a function ${signature}` });
}

function text(what: string) {
  return z.string({ error: `expected ${what} (a string)` }).min(1, {
    error: `expected ${what} (a non-empty string)`,
  });
}

function duration(positive: boolean) {
  return z.custom<Duration>((v) => {
    const ms = tryParseDuration(v);
    return ms !== undefined && (!positive || ms > 0);
  }, { error: positive ? `${DURATION_EXPECTED}, above zero` : DURATION_EXPECTED });
}

function integer(min: number, what: string) {
  const error = `expected ${what} (an integer >= ${min})`;
  return z.number({ error }).int({ error }).min(min, { error });
}

function boolean() {
  return z.boolean({ error: "expected true or false" });
}

const COMMAND_ONLY = ["cwd", "env", "stdin", "stdout", "stderr"] as const;
const TARGET_KINDS = ["command", "pid", "pidFile"] as const;

const TARGET_SHAPE = {
  command: z.array(z.string({ error: "expected a string" }), {
    error: 'expected the program and its arguments, e.g. ["./simulate", "--steps", "100"]',
  }).min(1, { error: "expected at least the program" }).optional(),
  cwd: text("a directory").optional(),
  env: z.record(z.string(), z.string({ error: "expected a string value" }), {
    error: 'expected environment variables as { NAME: "value" }',
  }).optional(),
  stdin: text("a file path").optional(),
  stdout: text("a file path").optional(),
  stderr: text("a file path").optional(),
  pid: integer(1, "a process id").optional(),
  pidFile: text("the path of a file holding a pid").optional(),
};

const TARGET = z.strictObject(TARGET_SHAPE, {
  error: "expected { command: [...] }, { pid } or { pidFile }",
}).superRefine((t, ctx) => {
  const given = TARGET_KINDS.filter((k) => t[k] !== undefined);
  if (given.length !== 1) {
    ctx.addIssue({
      code: "custom",
      message: given.length === 0
        ? "expected one of command, pid or pidFile"
        : `expected only one of command, pid or pidFile, got ${given.join(" and ")}`,
      params: { complete: true },
    });
  }
  if (t.command === undefined) {
    for (const k of COMMAND_ONLY) {
      if (t[k] !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: [k],
          message: "only applies to a target started by cryo (target.command)",
          params: { complete: true },
        });
      }
    }
  }
});

const SELECTION_SHAPE = {
  mapping: fn<SelectionSpec["mapping"]>("(mapping, process) => boolean").optional(),
  fd: fn<SelectionSpec["fd"]>("(fd, process) => boolean").optional(),
};

const selection = () =>
  z.strictObject(SELECTION_SHAPE, {
    error:
      "expected predicates { mapping?: (mapping, process) => boolean, fd?: (fd, process) => boolean }",
  }).optional();

const HOOKS_SHAPE = Object.fromEntries(
  HOOK_NAMES.map((n) => [n, fn<Hook>("(ctx) => void | Promise<void>").optional()]),
) as Record<typeof HOOK_NAMES[number], z.ZodOptional<z.ZodCustom<Hook, Hook>>>;

const BACKOFF_SHAPE = {
  initial: duration(false).optional(),
  max: duration(false).optional(),
  factor: z.number({ error: "expected a number >= 1" }).min(1, { error: "expected a number >= 1" })
    .optional(),
};

const SIGNALS_EXPECTED = `expected one of ${
  TRIGGER_SIGNALS.map((s) => `"${s}"`).join(", ")
}, or an array of them (SIGINT and SIGTERM stop the runner; SIGUSR1 starts Deno's inspector)`;

const isTriggerSignal = (v: unknown) =>
  typeof v === "string" && (TRIGGER_SIGNALS as readonly string[]).includes(v);

const POLICY_SHAPE = {
  name: text("a name").optional(),
  target: TARGET,
  dir: text("the checkpoint directory"),
  every: duration(true).optional(),
  onSignal: z.custom<TriggerSignal | TriggerSignal[]>(
    (v) => isTriggerSignal(v) || (Array.isArray(v) && v.length > 0 && v.every(isTriggerSignal)),
    { error: SIGNALS_EXPECTED },
  ).optional(),
  keep: integer(1, "how many checkpoints to keep").optional(),
  leaveRunning: boolean().optional(),
  include: selection(),
  exclude: selection(),
  onExit: z.custom<ExitAction | ExitDecider>(
    (v) => v === "restore" || v === "stop" || isFunction(v),
    { error: 'expected "restore", "stop" or a function (info) => "restore" | "stop"' },
  ).optional(),
  maxRestores: integer(0, "the most restores").optional(),
  backoff: z.union([
    duration(false),
    z.strictObject(BACKOFF_SHAPE, { error: "expected { initial?, max?, factor? }" }),
  ], { error: `${DURATION_EXPECTED}, or { initial?, max?, factor? }` }).optional(),
  resume: boolean().optional(),
  onStop: z.enum(["kill", "leave", "checkpoint"], {
    error: 'expected "kill", "leave" or "checkpoint"',
  }).optional(),
  stopTimeout: duration(false).optional(),
  verifyChecksums: boolean().optional(),
  hooks: z.strictObject(HOOKS_SHAPE, {
    error: `expected an object of hook functions (${HOOK_NAMES.join(", ")})`,
  }).optional(),
  preDump: z.strictObject({ every: duration(true) }, { error: "expected { every }" }).optional(),
};

const POLICY = z.strictObject(POLICY_SHAPE, {
  error: "expected a policy object: definePolicy({ target, dir, ... })",
});

/** Field names known at each object path, for "unknown field" messages. */
const KNOWN_FIELDS: Readonly<Record<string, readonly string[]>> = {
  "": Object.keys(POLICY_SHAPE),
  target: Object.keys(TARGET_SHAPE),
  include: Object.keys(SELECTION_SHAPE),
  exclude: Object.keys(SELECTION_SHAPE),
  hooks: HOOK_NAMES,
  backoff: Object.keys(BACKOFF_SHAPE),
  preDump: ["every"],
};

// ---------------------------------------------------------------------------------------------
// Error messages

function fieldName(path: readonly PropertyKey[]): string {
  return path.map((p, i) => typeof p === "number" ? `[${p}]` : `${i === 0 ? "" : "."}${String(p)}`)
    .join("");
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let v = input;
  for (const p of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

function describeValue(v: unknown): string {
  if (v === undefined) return "nothing";
  if (typeof v === "function") return "a function";
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (Array.isArray(v)) return v.length === 0 ? "an empty array" : "an array";
  if (v === null) return "null";
  if (typeof v === "object") return "an object";
  return String(v);
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length];
}

function unknownFieldMessage(key: string, known: readonly string[]): string {
  const close = known.filter((k) => editDistance(k.toLowerCase(), key.toLowerCase()) <= 2);
  const hint = close.length ? ` — did you mean ${close.map((k) => `"${k}"`).join(" or ")}?` : "";
  return `unknown field${hint} (expected one of: ${known.join(", ")})`;
}

type Issue = z.core.$ZodIssue;

/** For a union, the branch that got furthest (deepest issue paths) explains best. */
function bestBranch(issue: Issue & { code: "invalid_union" }): Issue[] | undefined {
  let best: Issue[] | undefined;
  let depth = 0;
  for (const branch of issue.errors) {
    const d = Math.max(
      0,
      ...branch.map((i) => i.path.length + (i.code === "invalid_type" ? 0 : 1)),
    );
    if (d > depth) [best, depth] = [branch, d];
  }
  return depth > 1 ? best : undefined;
}

function toIssues(
  issues: readonly Issue[],
  input: unknown,
  base: PropertyKey[] = [],
): PolicyIssue[] {
  const out: PolicyIssue[] = [];
  for (const issue of issues) {
    const path = [...base, ...issue.path];
    if (issue.code === "unrecognized_keys") {
      const known = KNOWN_FIELDS[path.filter((p) => typeof p === "string").join(".")] ?? [];
      for (const key of issue.keys) {
        out.push({ field: fieldName([...path, key]), message: unknownFieldMessage(key, known) });
      }
      continue;
    }
    if (issue.code === "invalid_union") {
      const branch = bestBranch(issue);
      if (branch) {
        out.push(...toIssues(branch, input, path));
        continue;
      }
    }
    // Messages of our own refinements are complete; the others get what was found.
    const complete = issue.code === "custom" && issue.params?.complete === true;
    out.push({
      field: fieldName(path),
      message: complete
        ? issue.message
        : `${issue.message}, got ${describeValue(valueAt(input, path))}`,
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Normalization

function combine<A extends unknown[]>(
  include?: (...args: A) => boolean,
  exclude?: (...args: A) => boolean,
): ((...args: A) => boolean) | undefined {
  if (!include && !exclude) return undefined;
  return (...args: A) =>
    (include ? include(...args) : true) && !(exclude ? exclude(...args) : false);
}

function defaultName(t: z.infer<typeof TARGET>): string {
  if (t.command) return t.command[0].split("/").at(-1) || t.command[0];
  if (t.pid !== undefined) return `pid ${t.pid}`;
  return `pidfile ${t.pidFile}`;
}

function backoffOf(spec: PolicySpec["backoff"]): Policy["backoff"] {
  if (spec === undefined) return { initialMs: 1000, maxMs: 30_000, factor: 2 };
  if (typeof spec === "object") {
    const initialMs = tryParseDuration(spec.initial ?? "1s")!;
    return {
      initialMs,
      maxMs: Math.max(initialMs, tryParseDuration(spec.max ?? "30s")!),
      factor: spec.factor ?? 2,
    };
  }
  const ms = tryParseDuration(spec)!;
  return { initialMs: ms, maxMs: ms, factor: 1 };
}

/**
 * Whether `value` is a policy validated by {@link definePolicy}.
 *
 * ```ts
 * const mod = await import("./my-policy.ts");
 * const policy = isPolicy(mod.default) ? mod.default : definePolicy(mod.default);
 * ```
 */
export function isPolicy(value: unknown): value is Policy {
  return typeof value === "object" && value !== null &&
    (value as { kind?: unknown }).kind === "cryo-policy" && Object.isFrozen(value);
}

/**
 * Validates a policy and fills in its defaults. Throws {@link PolicyError}
 * naming every wrong or unknown field and what was expected.
 *
 * ```ts
 * import { definePolicy } from "./schema.ts";
 * export default definePolicy({
 *   target: { command: ["./simulate"] },
 *   dir: "/var/lib/cryo/simulate",
 *   every: "30s",
 *   onExit: "restore",
 *   hooks: { afterDump: (ctx) => ctx.log.info(`saved ${ctx.checkpoint?.name}`) },
 * });
 * ```
 */
export function definePolicy(spec: PolicySpec): Policy {
  const parsed = POLICY.safeParse(spec);
  if (!parsed.success) throw new PolicyError(toIssues(parsed.error.issues, spec));
  const p = parsed.data;
  const t = p.target;
  const target: PolicyTarget = t.command
    ? {
      kind: "command",
      launch: {
        command: [...t.command],
        ...(t.cwd ? { cwd: resolve(t.cwd) } : {}),
        ...(t.env ? { env: { ...t.env } } : {}),
        ...(t.stdin ? { stdin: resolve(t.stdin) } : {}),
        ...(t.stdout ? { stdout: resolve(t.stdout) } : {}),
        ...(t.stderr ? { stderr: resolve(t.stderr) } : {}),
      },
    }
    : t.pid !== undefined
    ? { kind: "pid", pid: t.pid }
    : { kind: "pidFile", pidFile: resolve(t.pidFile!) };
  const mapping = combine(p.include?.mapping, p.exclude?.mapping);
  const fd = combine(p.include?.fd, p.exclude?.fd);
  const policy: Policy = {
    kind: "cryo-policy",
    name: p.name ?? defaultName(t),
    target,
    dir: resolve(p.dir),
    ...(p.every !== undefined ? { everyMs: tryParseDuration(p.every)! } : {}),
    onSignal: p.onSignal === undefined ? [] : [p.onSignal].flat(),
    keep: p.keep ?? 3,
    leaveRunning: p.leaveRunning ?? true,
    ...(mapping || fd ? { select: { mapping, fd } } : {}),
    onExit: p.onExit ?? "stop",
    maxRestores: p.maxRestores ?? 3,
    backoff: backoffOf(p.backoff),
    resume: p.resume ?? false,
    onStop: p.onStop ?? (target.kind === "command" ? "kill" : "leave"),
    stopTimeoutMs: tryParseDuration(p.stopTimeout ?? "5s")!,
    verifyChecksums: p.verifyChecksums ?? true,
    hooks: Object.freeze({ ...p.hooks }),
    spec: Object.freeze({ ...spec }),
    ...(p.preDump ? { preDumpEveryMs: tryParseDuration(p.preDump.every)! } : {}),
  };
  return Object.freeze(policy);
}
