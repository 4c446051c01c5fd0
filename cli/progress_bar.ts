/**
 * The terminal progress bar itself (cli-progress on stderr), loaded by
 * cli/progress.ts only when stderr is a terminal: cli-progress is CommonJS
 * and loading it costs tens of milliseconds that a dump into a pipe or a
 * file never needs.
 *
 * @module
 */

import process from "node:process";
import cliProgress from "npm:cli-progress@3.12.0";

/** The part of cli-progress's bar that cli/progress.ts uses. */
export interface Bar {
  /** Shows the bar at `value` of `total`, with its payload. */
  start(total: number, value: number, payload: Record<string, string>): void;
  /** Changes the total. */
  setTotal(total: number): void;
  /** Moves the bar to `value`, with its payload. */
  update(value: number, payload: Record<string, string>): void;
  /** Removes the bar. */
  stop(): void;
}

/** A byte bar on stderr labelled `label`, showing `{doneText}/{totalText}`. */
export function makeBar(label: string): Bar {
  return new cliProgress.SingleBar({
    format: `${label} [{bar}] {percentage}% {doneText}/{totalText}`,
    stream: process.stderr,
    hideCursor: true,
    clearOnComplete: true,
  }, cliProgress.Presets.shades_classic);
}
