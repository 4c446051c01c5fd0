/**
 * Presentation helpers shared by the commands: human sizes and durations,
 * JSON output (bigints as hex), argument parsers (tables: cli/table.ts, kept
 * apart so that commands without tables do not load cli-table3).
 *
 * @module
 */

import { commander } from "./commander_lib.ts";

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** A byte count for people: `512 B`, `4 KiB`, `1.5 MiB`, `12.3 GiB`. */
export function humanBytes(bytes: number | bigint): string {
  let v = Number(bytes);
  let u = 0;
  while (Math.abs(v) >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  if (u === 0) return `${v} B`;
  const digits = Math.abs(v) >= 100 || Number.isInteger(v) ? 0 : 1;
  return `${v.toFixed(digits)} ${UNITS[u]}`;
}

/** A duration in seconds for people: `850 µs`, `12 ms`, `2.4 s`, `3 min 5 s`, `2 h 4 min`. */
export function humanDuration(seconds: number): string {
  if (seconds < 0.001) return `${Math.round(seconds * 1e6)} µs`;
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const total = Math.round(seconds);
  if (total < 3600) return `${Math.floor(total / 60)} min ${total % 60} s`;
  return `${Math.floor(total / 3600)} h ${Math.floor((total % 3600) / 60)} min`;
}

/** A throughput for people, e.g. `1.2 GiB/s`. */
export function humanRate(bytes: number, seconds: number): string {
  return seconds > 0 ? `${humanBytes(Math.round(bytes / seconds))}/s` : "-";
}

/** JSON text of `value` (2-space indent); bigints become `0x` hex strings. */
export function toJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_k, v) => typeof v === "bigint" ? `0x${v.toString(16)}` : v,
    2,
  );
}

/**
 * Prints `text` and a newline on stdout with one direct write: `console.log`'s
 * first call in a command ran its formatting code cold (~1.4 ms of the dump's
 * wall, issue 10). A failed write is ignored, as `console.log` ignores one (a
 * closed pipe).
 */
export function printLine(text: string): void {
  const bytes = new TextEncoder().encode(`${text}\n`);
  try {
    for (let done = 0; done < bytes.length;) done += Deno.stdout.writeSync(bytes.subarray(done));
  } catch { /* as console.log: the output's reader is gone */ }
}

/** Prints `value` as JSON on stdout ({@link printLine}). */
export function printJson(value: unknown): void {
  printLine(toJson(value));
}

/**
 * An argument parser for commander accepting a positive integer (a pid);
 * anything else is a usage error naming `what`.
 */
export function positiveInt(what: string): (text: string) => number {
  return (text: string) => {
    const n = Number(text);
    if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(n) || n <= 0) {
      throw new (commander().InvalidArgumentError)(
        `${what} must be a positive integer, got '${text}'`,
      );
    }
    return n;
  };
}
