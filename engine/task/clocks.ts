/**
 * The tree's clocks across a restore. CLOCK_MONOTONIC and CLOCK_BOOTTIME
 * count from the host's boot; restored on the same boot they have only
 * moved on (as over a suspend: the tree's timers keep the time they had
 * left, engine/task/timers.ts), but restored after a reboot or on another
 * host they may be behind what the tree last read: it would see time go
 * back, and whatever it computed from them (deadlines, intervals, a
 * runtime's timers) go wrong without a word. The dump records both clocks
 * (the image's host facts) and a restore where either is behind is refused
 * unless asked for (`--allow-clock-backwards`). cryo does not put the tree
 * in a time namespace to hide the difference (CRIU does): a tree in one
 * could not be checkpointed by cryo again.
 *
 * @module
 */

import { clockNowNs } from "../../ffi/clock.ts";
import type { HostFacts, Manifest } from "../model.ts";
import { RestoreError } from "../errors.ts";

const CLOCK_MONOTONIC = 1;
const CLOCK_BOOTTIME = 7;

/** Dump: the clocks as they are now (the tree's state taken). */
export function dumpClocks(): NonNullable<HostFacts["clocks"]> {
  return {
    monotonicNs: String(clockNowNs(CLOCK_MONOTONIC)),
    boottimeNs: String(clockNowNs(CLOCK_BOOTTIME)),
  };
}

/** "3 d 4 h", "5 min 3 s", "250 ms": how far behind, for the message. */
function span(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  if (ms < 1000) return `${ms} ms`;
  const s = Math.floor(ms / 1000);
  const units: [number, string][] = [[86400, "d"], [3600, "h"], [60, "min"], [1, "s"]];
  const parts: string[] = [];
  let left = s;
  for (const [n, name] of units) {
    if (left >= n && parts.length < 2) {
      parts.push(`${Math.floor(left / n)} ${name}`);
      left %= n;
    } else if (parts.length) break;
  }
  return parts.join(" ");
}

/**
 * Restore: refuses (one line) when this host's CLOCK_MONOTONIC or
 * CLOCK_BOOTTIME is behind the image's, unless `allow`. `now` is for tests.
 */
export function checkClocks(
  manifest: Manifest,
  allow = false,
  now: () => NonNullable<HostFacts["clocks"]> = dumpClocks,
): void {
  const then = manifest.host.clocks;
  if (!then || allow) return;
  const cur = now();
  for (
    const [name, was, is] of [
      ["CLOCK_MONOTONIC", then.monotonicNs, cur.monotonicNs],
      ["CLOCK_BOOTTIME", then.boottimeNs, cur.boottimeNs],
    ] as const
  ) {
    if (!/^\d+$/.test(was)) {
      throw new RestoreError(`cannot restore: the image's ${name} is not a number`);
    }
    const behind = BigInt(was) - BigInt(is);
    if (behind > 0n) {
      throw new RestoreError(
        `cannot restore: this host's ${name} is ${span(behind)} behind the image's (dumped on ` +
          `another boot or host): the tree would see its clocks go back; ` +
          `--allow-clock-backwards restores it anyway`,
      );
    }
  }
}
