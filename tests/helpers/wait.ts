/**
 * Test helpers for waiting: a plain sleep and polling for a condition.
 *
 * @module
 */

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * The shortest time any test waits for something to happen before it
 * gives up: on a machine loaded 15 times over its cores, a target's
 * second of work takes many seconds. A deadline only bounds a wait for an
 * event the test needs; it never decides an outcome, so a long one costs
 * nothing when all is well.
 */
export const MIN_WAIT_MS = 60_000;

/** The deadline (a Date.now() value) of a wait of `timeoutMs`, at least {@link MIN_WAIT_MS}. */
export function deadlineIn(timeoutMs: number): number {
  return Date.now() + Math.max(timeoutMs, MIN_WAIT_MS);
}

/**
 * Polls `cond` every 10 ms until it holds; throws naming `what` after
 * `timeoutMs` (at least {@link MIN_WAIT_MS}).
 */
export async function waitUntil(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 10000,
): Promise<void> {
  const deadline = deadlineIn(timeoutMs);
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
