/**
 * Typed errors of the /proc readers, and the translation of raw file-system
 * errors into them.
 *
 * A read of `/proc/<pid>/...` can fail because the process is gone (reaped,
 * or a zombie whose memory and files are already released), because one
 * entry vanished while the process lives on (an fd was closed, a thread
 * exited), or because we lack permission. Callers get one of the classes
 * below, never a bare `Deno.errors.*`.
 *
 * @module
 */

import { ERRNO_NAMES } from "../../ffi/errno.ts";

/** Base class of every error raised by the /proc readers. */
export class ProcError extends Error {
  /** The process the read was about. */
  readonly pid: number;
  /** The /proc path that failed. */
  readonly path: string;

  constructor(pid: number, path: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ProcError";
    this.pid = pid;
    this.path = path;
  }
}

/**
 * The process does not exist (never existed, exited and was reaped, or is a
 * zombie whose state is already released).
 */
export class ProcessGoneError extends ProcError {
  /** True when the pid still exists as a zombie (exited, not yet reaped). */
  readonly zombie: boolean;

  constructor(pid: number, path: string, zombie = false, options?: ErrorOptions) {
    super(
      pid,
      path,
      `process ${pid} is gone${zombie ? " (zombie)" : ""} (reading ${path})`,
      options,
    );
    this.name = "ProcessGoneError";
    this.zombie = zombie;
  }
}

/** Reading a /proc entry was refused (EACCES/EPERM). */
export class ProcPermissionError extends ProcError {
  constructor(pid: number, path: string, options?: ErrorOptions) {
    super(pid, path, `permission denied reading ${path}`, options);
    this.name = "ProcPermissionError";
  }
}

/**
 * One entry is missing while the process itself still lives: an fd that was
 * closed, a thread that exited, a file this kernel does not provide.
 */
export class ProcEntryNotFoundError extends ProcError {
  constructor(pid: number, path: string, options?: ErrorOptions) {
    super(pid, path, `${path} does not exist (process ${pid} is alive)`, options);
    this.name = "ProcEntryNotFoundError";
  }
}

/** A /proc file had content this parser does not understand. */
export class ProcFormatError extends ProcError {
  constructor(pid: number, path: string, detail: string) {
    super(pid, path, `unexpected content in ${path}: ${detail}`);
    this.name = "ProcFormatError";
  }
}

/** Liveness of a pid as seen in /proc. */
export type Liveness = "alive" | "zombie" | "gone";

/**
 * Tells whether `pid` is alive, a zombie (exited, not reaped, no other live
 * thread) or gone. Never throws.
 */
export function liveness(pid: number): Liveness {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return "gone";
  }
  const state = text.charAt(text.lastIndexOf(")") + 2);
  if (state !== "Z" && state !== "X") return "alive";
  // A zombie thread-group leader may still have live threads.
  try {
    for (const e of Deno.readDirSync(`/proc/${pid}/task`)) {
      if (e.name !== String(pid)) return "alive";
    }
  } catch {
    return "gone";
  }
  return "zombie";
}

function errorCode(err: unknown): string | undefined {
  if (err instanceof Deno.errors.NotFound) return "ENOENT";
  if (err instanceof Deno.errors.PermissionDenied) return "EACCES";
  const code = (err as { code?: unknown })?.code;
  if (typeof code === "string") return code;
  // Deno leaves `code` unset for some errnos (ESRCH): fall back to "(os error N)".
  const m = /\(os error (\d+)\)/.exec(String((err as { message?: unknown })?.message ?? ""));
  return m ? ERRNO_NAMES[Number(m[1])] : undefined;
}

/**
 * Converts an error thrown while reading `path` about `pid` (and optionally
 * thread `tid`) into a typed {@link ProcError}.
 */
export function translateProcError(
  err: unknown,
  pid: number,
  path: string,
  tid?: number,
): ProcError {
  if (err instanceof ProcError) return err;
  const code = errorCode(err);
  const options = { cause: err };
  if (code === "ENOENT" || code === "ESRCH") {
    const state = liveness(pid);
    if (state !== "alive") return new ProcessGoneError(pid, path, state === "zombie", options);
    return new ProcEntryNotFoundError(pid, path, options);
  }
  if (code === "EACCES" || code === "EPERM") return new ProcPermissionError(pid, path, options);
  // Other errors from a process that died meanwhile (mountinfo of a zombie is EINVAL).
  const state = liveness(pid);
  if (state !== "alive") return new ProcessGoneError(pid, path, state === "zombie", options);
  const what = tid === undefined ? `process ${pid}` : `thread ${tid} of process ${pid}`;
  return new ProcError(pid, path, `reading ${path} (${what}) failed: ${String(err)}`, options);
}

/**
 * Throws {@link ProcessGoneError} when `pid` is not alive. Used when a read
 * returned nothing, which is also what the kernel gives for a zombie's maps,
 * auxv, cmdline and pagemap.
 */
export function assertAlive(pid: number, path: string): void {
  const state = liveness(pid);
  if (state !== "alive") throw new ProcessGoneError(pid, path, state === "zombie");
}
