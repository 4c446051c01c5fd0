/**
 * A short sleep that blocks the calling thread, for the polling loops that
 * must not yield to the event loop (a frozen tree waits on them; one event
 * loop turn in a fresh Deno costs more than the wait).
 *
 * @module
 */

/** A cell nobody notifies: `Atomics.wait` on it only times out. */
const cell = new Int32Array(new SharedArrayBuffer(4));

/** Blocks this thread for about `ms` milliseconds (fractions allowed). */
export function sleepSync(ms: number): void {
  Atomics.wait(cell, 0, 0, ms);
}
