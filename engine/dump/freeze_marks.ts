/**
 * TEMPORARY instrumentation (not to be committed): marks with wall and thread CPU.
 *
 * @module
 */
import { clockNowNs } from "../../ffi/clock.ts";

const out = Deno.env.get("CRYO_MARKS");
const marks: [string, number, number][] = [];

/** Records a mark. */
export function fmark(what: string): void {
  if (!out) return;
  if (what === "start") marks.length = 0;
  marks.push([what, performance.now(), Number(clockNowNs(3)) / 1e6]);
}

/** Writes the marks (appends one JSON line). */
export function fmarkFlush(): void {
  if (!out || !marks.length) return;
  const t0 = marks[0][1], c0 = marks[0][2];
  const rows = marks.map(([w, t, c]) => [w, +(t - t0).toFixed(3), +(c - c0).toFixed(3)]);
  Deno.writeTextFileSync(out, JSON.stringify(rows) + "\n", { append: true });
  marks.length = 0;
}
