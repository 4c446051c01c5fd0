/**
 * Test helpers for running programs to completion: any command, Deno
 * itself, the cryo CLI (`cli.ts`) and readelf, with assertions on how the
 * CLI exits and what it prints.
 *
 * @module
 */

import assert from "node:assert/strict";

/** The repository root, with a trailing slash. */
export const repoRoot: string = new URL("../../", import.meta.url).pathname;

/** The CLI's entry point. */
const cliPath = `${repoRoot}cli.ts`;

/** The environment the CLI runs with in tests: no colours, no debug output. */
const CLI_ENV = { NO_COLOR: "1", CRYO_DEBUG: "0" };

/** How a command that ran to completion exited and what it printed. */
export interface CommandResult {
  /** Exit code (128 + signal number if a signal killed it). */
  code: number;
  /** Everything it wrote to stdout. */
  stdout: string;
  /** Everything it wrote to stderr. */
  stderr: string;
}

/** Runs `argv` to completion with stdin from /dev/null, capturing stdout and stderr as text. */
export async function runCommand(
  argv: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<CommandResult> {
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: opts.cwd,
    env: opts.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Runs `deno run -A ...args` in `cwd` to completion, without colours. */
export function runDeno(cwd: string, args: string[]): Promise<CommandResult> {
  return runCommand([Deno.execPath(), "run", "-A", ...args], { cwd, env: { NO_COLOR: "1" } });
}

/**
 * The command `deno run -A cli.ts ...args` in the repository root, stdin
 * from /dev/null, stderr piped and stdout piped or discarded; for CLIs
 * that run in the background (see {@link runCli} for one that completes);
 * under `wrapper` (a command and its arguments, such as nsenter) if given.
 */
export function cliCommand(
  args: string[],
  stdout: "piped" | "null" = "piped",
  wrapper: string[] = [],
): Deno.Command {
  const argv = [...wrapper, Deno.execPath(), "run", "-A", cliPath, ...args];
  return new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: repoRoot,
    stdin: "null",
    stdout,
    stderr: "piped",
    env: CLI_ENV,
  });
}

/**
 * Runs `deno run -A cli.ts ...args` in the repository root to completion,
 * under `wrapper` (a command and its arguments, such as setpriv) if given,
 * with `env` added to the environment.
 */
export function runCli(
  args: string[],
  opts: { wrapper?: string[]; env?: Record<string, string> } = {},
): Promise<CommandResult> {
  const argv = [...(opts.wrapper ?? []), Deno.execPath(), "run", "-A", cliPath, ...args];
  return runCommand(argv, { cwd: repoRoot, env: { ...CLI_ENV, ...opts.env } });
}

/** Asserts a successful CLI run (exit 0) that printed nothing on stderr. */
export function assertCliOk(r: CommandResult, what: string): void {
  assert.equal(r.code, 0, `${what}: exit ${r.code}, stderr: ${r.stderr}`);
  assert.equal(r.stderr, "", `${what}: stderr`);
}

/**
 * Asserts a failed CLI run: exit `code`, nothing on stdout, and one line
 * `cryo: ...` matching `re` on stderr.
 */
export function assertOneLineError(r: CommandResult, code: number, re: RegExp, what: string): void {
  assert.equal(r.code, code, `${what}: exit ${r.code}, stderr: ${r.stderr}`);
  assert.equal(r.stdout, "", `${what}: stdout`);
  const lines = r.stderr.split("\n").filter(Boolean);
  assert.equal(lines.length, 1, `${what}: not one line:\n${r.stderr}`);
  assert.match(lines[0], /^cryo: /, what);
  assert.match(lines[0], re, `${what}: ${lines[0]}`);
}

/** Runs `readelf -W <flags...> <path>`, asserting that it exits 0 without a word on stderr. */
export async function readelf(flags: string[], path: string): Promise<string> {
  const r = await runCommand(["readelf", "-W", ...flags, path]);
  assert.equal(r.stderr, "", `readelf ${flags.join(" ")} warned:\n${r.stderr}`);
  assert.equal(r.code, 0, `readelf ${flags.join(" ")} ${path}: exit ${r.code}`);
  return r.stdout;
}
