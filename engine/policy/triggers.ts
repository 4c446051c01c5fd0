/**
 * Checkpoint triggers of a policy: a period (`every`, counted from the end
 * of the previous checkpoint, or from the start), signals received by the
 * runner (`onSignal`), and requests made through the API. The triggers
 * only request; the runner decides when a checkpoint can run.
 *
 * @module
 */

import type { TriggerSignal } from "./signals.ts";

/** Options of {@link Triggers}. */
export interface TriggerOptions {
  /** Period in milliseconds, if periodic. */
  everyMs?: number;
  /** Signals of the runner that request a checkpoint. */
  signals: readonly TriggerSignal[];
  /** Called with the reason (`"interval"`, `"signal SIGUSR1"`) when a trigger fires. */
  request: (reason: string) => void;
}

/** The timer and signal listeners of one policy run. */
export class Triggers {
  readonly #opts: TriggerOptions;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #nextAt: number | undefined;
  #listeners: [Deno.Signal, () => void][] = [];

  constructor(opts: TriggerOptions) {
    this.#opts = opts;
  }

  /** Installs the signal listeners and arms the period. */
  start(): void {
    for (const sig of this.#opts.signals) {
      const listener = () => this.#opts.request(`signal ${sig}`);
      Deno.addSignalListener(sig, listener);
      this.#listeners.push([sig, listener]);
    }
    this.rearm();
  }

  /**
   * Starts the period afresh from now (after a checkpoint, a restore, or
   * a failure); the period fires once and waits to be re-armed.
   */
  rearm(): void {
    this.pause();
    const every = this.#opts.everyMs;
    if (every === undefined) return;
    this.#nextAt = Date.now() + every;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#nextAt = undefined;
      this.#opts.request("interval");
    }, every);
  }

  /** Stops the period until the next {@link rearm} (e.g. while the target is down). */
  pause(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#nextAt = undefined;
  }

  /** When the period fires next (epoch ms), if armed. */
  get nextAt(): number | undefined {
    return this.#nextAt;
  }

  /** Removes the timer and the signal listeners. */
  dispose(): void {
    this.pause();
    for (const [sig, listener] of this.#listeners) Deno.removeSignalListener(sig, listener);
    this.#listeners = [];
  }
}
