/**
 * Typed errors of the engine. Each carries a one-line message fit for the
 * CLI to print as is.
 *
 * @module
 */

/** Base class of cryo's own errors (one-line, user-facing message). */
export class CryoError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CryoError";
  }
}

/** The requested target cannot be checkpointed (unknown pid, kernel thread, zombie, ...). */
export class TargetError extends CryoError {
  constructor(message: string) {
    super(message);
    this.name = "TargetError";
  }
}

/** The target uses something cryo cannot save or restore; lists every item. */
export class UnsupportedError extends CryoError {
  /** One entry per unsupported resource. */
  readonly items: string[];
  constructor(what: string, items: string[]) {
    super(`${what}: ${items.join("; ")}`);
    this.name = "UnsupportedError";
    this.items = items;
  }
}

/** A restore step failed (with where and why). */
export class RestoreError extends CryoError {
  constructor(message: string) {
    super(message);
    this.name = "RestoreError";
  }
}
