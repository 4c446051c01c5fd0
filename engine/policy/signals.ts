/**
 * Signal names and numbers as policies use them (x86-64 Linux numbering).
 *
 * @module
 */

/** Signal numbers by name. */
export const SIGNAL_NUMBERS: Readonly<Record<string, number>> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGUSR2: 12,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGWINCH: 28,
};

/**
 * Signals a policy may use as checkpoint triggers (`onSignal`), e.g.
 * `onSignal: ["SIGUSR2", "SIGHUP"]`. SIGINT and
 * SIGTERM stop the runner; SIGUSR1 is not offered because Deno (2.9.2 and
 * later) starts its inspector on 127.0.0.1:9229 when it receives SIGUSR1.
 */
export const TRIGGER_SIGNALS = [
  "SIGHUP",
  "SIGUSR2",
  "SIGQUIT",
  "SIGWINCH",
  "SIGALRM",
] as const;

/** A signal that can trigger a checkpoint. */
export type TriggerSignal = typeof TRIGGER_SIGNALS[number];

/** The signals that stop a runner started from the command line. */
export const STOP_SIGNALS = ["SIGINT", "SIGTERM"] as const;

/** The number of a signal given by name (`"SIGUSR1"`, `"USR1"`) or number; throws on unknown names. */
export function signalNumber(sig: string | number): number {
  if (typeof sig === "number") {
    if (!Number.isInteger(sig) || sig < 1 || sig > 64) {
      throw new RangeError(`invalid signal ${sig}`);
    }
    return sig;
  }
  const name = sig.toUpperCase().startsWith("SIG") ? sig.toUpperCase() : `SIG${sig.toUpperCase()}`;
  const n = SIGNAL_NUMBERS[name];
  if (n === undefined) throw new RangeError(`unknown signal ${JSON.stringify(sig)}`);
  return n;
}

/** The name of signal `n` (`"SIGKILL"`), or `"signal <n>"` for ones without a name here. */
export function signalName(n: number): string {
  return Object.entries(SIGNAL_NUMBERS).find(([, v]) => v === n)?.[0] ?? `signal ${n}`;
}
