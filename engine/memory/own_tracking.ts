/**
 * Whether a mapping's "uw" VmFlag is cryo's own dirty tracking
 * (engine/dump/tracking.ts), asked by engine/memory/flags.ts. The tracking
 * module registers its answer when it loads: that state only exists once it
 * ran, and a restore, which never tracks, then does not load the dump's
 * pre-copy modules through flags.ts (its start-up bundle is smaller).
 *
 * @module
 */

/** The check engine/dump/tracking.ts registered (none loaded: nothing is tracked). */
let check: (pid: number, start: number, end: number) => boolean = () => false;

/** Called once by engine/dump/tracking.ts with its `isOwnTrackingFlag`. */
export function registerOwnTrackingCheck(
  f: (pid: number, start: number, end: number) => boolean,
): void {
  check = f;
}

/** Whether the "uw" VmFlag of mapping [start, end) of `pid` is cryo's own tracking. */
export function isOwnTrackingFlag(pid: number, start: number, end: number): boolean {
  return check(pid, start, end);
}
