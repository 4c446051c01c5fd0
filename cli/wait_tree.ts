/**
 * Waiting in the foreground for a tree cryo started (restored or launched):
 * the signals a user sends to cryo go on to the tree, and cryo exits with
 * the tree's status.
 *
 * @module
 */

import type { ExitStatus } from "../engine/restore/mod.ts";

/** Signals cryo passes on to the tree it waits for. */
export const FORWARDED_SIGNALS: readonly Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/**
 * Waits for `exited`, passing every signal of {@link FORWARDED_SIGNALS}
 * to `send` meanwhile; sets the exit code to the tree's (128 + signal when
 * it was killed). `ready` runs once the signals are caught (a message that
 * says cryo waits must come after that: a signal sent on seeing it must be
 * forwarded, not kill cryo).
 */
export async function waitForwardingSignals(
  exited: Promise<ExitStatus>,
  send: (sig: Deno.Signal) => void,
  ready?: () => void,
): Promise<void> {
  const handlers = FORWARDED_SIGNALS.map((sig) => {
    const h = () => send(sig);
    Deno.addSignalListener(sig, h);
    return [sig, h] as const;
  });
  try {
    ready?.();
    const status = await exited;
    Deno.exitCode = status.signal !== undefined ? 128 + status.signal : status.code ?? 0;
  } finally {
    for (const [sig, h] of handlers) Deno.removeSignalListener(sig, h);
  }
}
