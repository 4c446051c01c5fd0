/**
 * A byte progress bar on stderr, shown only when stderr is a terminal and
 * the work lasts longer than a moment. The bar's library is loaded only
 * when stderr is a terminal (cli/progress_bar.ts), in the background.
 *
 * @module
 */

import { humanBytes } from "./format.ts";
import type { Bar } from "./progress_bar.ts";
import { importModule } from "../engine/modules.ts";

const DELAY_MS = 400;

/**
 * The bar module, named through a variable so that Deno does not load
 * cli-progress with the command (a literal `import()` would).
 */
const BAR_MODULE = "cli/progress_bar.ts";

/** A lazily shown progress bar. */
export class Progress {
  readonly #label: string;
  readonly #started = performance.now();
  #makeBar: ((label: string) => Bar) | undefined;
  #bar: Bar | undefined;

  constructor(label: string) {
    this.#label = label;
    if (Deno.stderr.isTerminal()) {
      importModule<typeof import("./progress_bar.ts")>(BAR_MODULE).then(
        (m) => this.#makeBar = m.makeBar,
        () => {}, // no bar then
      );
    }
  }

  /** Reports `done` of `total` bytes. */
  update(done: number, total: number): void {
    if (!this.#bar) {
      if (!this.#makeBar || performance.now() - this.#started < DELAY_MS) return;
      this.#bar = this.#makeBar(this.#label);
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
