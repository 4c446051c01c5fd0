/**
 * Turns anything thrown by a command into ONE clear line on stderr
 * (`cryo: <message>`) and an exit code: 2 for usage errors, 1 for
 * everything else. With `--debug` or `CRYO_DEBUG=1` the stack follows.
 *
 * @module
 */

import type { SyscallError } from "../ffi/libc.ts";

/** Exit code of a failed command. */
export const EXIT_FAILURE = 1;
/** Exit code of a command line that could not be parsed (as commander uses for usage). */
export const EXIT_USAGE = 2;

/** A command ran and failed in an expected way; its message is shown as is. */
export class CommandFailedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CommandFailedError";
  }
}

/** A command that this build does not implement yet. */
export class NotAvailableError extends CommandFailedError {
  constructor(command: string) {
    super(`${command}: not available in this build`);
    this.name = "NotAvailableError";
  }
}

/** What common errno names mean, for messages read by people. */
const ERRNO_MEANING: Readonly<Record<string, string>> = {
  EPERM: "operation not permitted",
  ENOENT: "no such file or directory",
  ESRCH: "no such process",
  EINTR: "interrupted",
  EIO: "input/output error",
  EBADF: "bad file descriptor",
  ECHILD: "no child process",
  EAGAIN: "try again",
  ENOMEM: "out of memory",
  EACCES: "permission denied",
  EFAULT: "bad address",
  EBUSY: "busy",
  EEXIST: "already exists",
  EINVAL: "invalid argument",
  ENOSPC: "no space left on device",
  ENOSYS: "not implemented by this kernel",
  EOPNOTSUPP: "not supported",
};

/** Collapses a possibly multi-line message into one line. */
function oneLine(text: string): string {
  return text.split("\n").map((s) => s.trim()).filter(Boolean).join(" ");
}

/**
 * The one-line description of an error, without the `cryo: ` prefix:
 * a {@link SyscallError} names the call and errno (with its meaning),
 * commander's usage errors lose their `error: ` prefix, a `cause` is
 * appended, anything else gives its message.
 */
export function describeError(err: unknown): string {
  if (isSyscallError(err)) {
    const meaning = ERRNO_MEANING[err.code];
    return oneLine(meaning ? `${err.message} (${meaning})` : err.message);
  }
  if (isCommanderError(err)) return oneLine(err.message.replace(/^error:\s*/, ""));
  if (err instanceof Error) {
    const base = oneLine(err.message) || err.name;
    return err.cause === undefined ? base : `${base} (caused by: ${describeError(err.cause)})`;
  }
  return oneLine(String(err));
}

/**
 * Whether `err` is a {@link SyscallError}, recognised by its name and code so
 * that this module does not load ffi/libc.ts (and libc) at start-up.
 */
function isSyscallError(err: unknown): err is SyscallError {
  return err instanceof Error && err.name === "SyscallError" &&
    typeof (err as { code?: unknown }).code === "string";
}

/**
 * Whether `err` is one of commander's errors (`CommanderError` and its
 * subclasses), recognised by the `code` ("commander.*") and `exitCode`
 * every one of them has, so that this module does not load commander
 * (cli/commander_lib.ts).
 */
export function isCommanderError(err: unknown): err is Error & { code: string; exitCode: number } {
  if (!(err instanceof Error)) return false;
  const e = err as { code?: unknown; exitCode?: unknown };
  return typeof e.code === "string" && e.code.startsWith("commander.") &&
    typeof e.exitCode === "number";
}

/** Whether a usage error (bad arguments or options) rather than a failure. */
export function isUsageError(err: unknown): boolean {
  return isCommanderError(err) && err.exitCode !== 0;
}

/** Whether stack traces were asked for: `--debug` anywhere in argv or CRYO_DEBUG=1. */
export function debugRequested(argv: readonly string[]): boolean {
  return argv.includes("--debug") || Deno.env.get("CRYO_DEBUG") === "1";
}

/**
 * Prints `cryo: <message>` (and the stack when `debug`) to stderr and
 * returns the exit code for `err`.
 */
export function reportError(err: unknown, debug: boolean): number {
  console.error(`cryo: ${describeError(err)}`);
  if (debug && err instanceof Error && err.stack) console.error(err.stack);
  return isUsageError(err) ? EXIT_USAGE : EXIT_FAILURE;
}
