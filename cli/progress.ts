/**
 * A byte progress bar on stderr, shown only when stderr is a terminal and
 * the work lasts longer than a moment.
 *
 * @module
 */

import process from "node:process";
import cliProgress from "npm:cli-progress@3.12.0";
import { humanBytes } from "./format.ts";

const DELAY_MS = 400;

/** A lazily shown progress bar. */
export class Progress {
  readonly #label: string;
  readonly #started = performance.now();
  // deno-lint-ignore no-explicit-any
  #bar: any;

  constructor(label: string) {
    this.#label = label;
  }

  /** Reports `done` of `total` bytes. */
  update(done: number, total: number): void {
    if (!Deno.stderr.isTerminal()) return;
    if (!this.#bar) {
      if (performance.now() - this.#started < DELAY_MS) return;
      this.#bar = new cliProgress.SingleBar({
        format: `${this.#label} [{bar}] {percentage}% {doneText}/{totalText}`,
        stream: process.stderr,
        hideCursor: true,
        clearOnComplete: true,
      }, cliProgress.Presets.shades_classic);
      this.#bar.start(total, 0, { doneText: "0 B", totalText: humanBytes(total) });
    }
    this.#bar.setTotal(total);
    this.#bar.update(done, { doneText: humanBytes(done), totalText: humanBytes(total) });
  }

  /** Removes the bar. */
  stop(): void {
    this.#bar?.stop();
    this.#bar = undefined;
  }
}
