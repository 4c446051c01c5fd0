/**
 * Which pre-dump is the latest of a tracked tree: the tracking in the tree
 * is only valid against the image it was armed for (each pre-dump protects
 * again what the previous one saw written). cryo keeps that, by root pid
 * and the root's start time, in /run/cryo/tracking/<pid>.json.
 *
 * @module
 */

import { readStat } from "../proc/stat.ts";

/** Directory of the tracking state files. */
export const TRACKING_STATE_DIR = "/run/cryo/tracking";

/** The latest pre-dump of a tree. */
export interface TrackingState {
  /** The root's start time (clock ticks after boot): tells a reused pid. */
  starttime: number;
  /** The generation recorded in that pre-dump's manifest. */
  generation: string;
  /** Its image directory. */
  dir: string;
  /** The tracking fds left in the tree's processes. */
  fds: { pid: number; fd: number }[];
}

function pathOf(root: number): string {
  return `${TRACKING_STATE_DIR}/${root}.json`;
}

function starttimeOf(pid: number): number | undefined {
  try {
    return readStat(pid).starttime;
  } catch {
    return undefined;
  }
}

/** The latest pre-dump of the tree of `root`, if cryo armed one for this very process. */
export function readTrackingState(root: number): TrackingState | undefined {
  let s: TrackingState;
  try {
    s = JSON.parse(Deno.readTextFileSync(pathOf(root)));
  } catch {
    return undefined;
  }
  return s.starttime === starttimeOf(root) ? s : undefined;
}

/** Records `generation` (in `dir`) as the latest pre-dump of the tree of `root`. */
export function writeTrackingState(
  root: number,
  generation: string,
  dir: string,
  fds: TrackingState["fds"],
): void {
  const starttime = starttimeOf(root);
  if (starttime === undefined) return;
  Deno.mkdirSync(TRACKING_STATE_DIR, { recursive: true, mode: 0o700 });
  const tmp = `${pathOf(root)}.${Deno.pid}`;
  Deno.writeTextFileSync(tmp, JSON.stringify({ starttime, generation, dir, fds }));
  Deno.renameSync(tmp, pathOf(root));
}

/** Forgets the tracking of the tree of `root` (closed, or no longer trusted). */
export function removeTrackingState(root: number): void {
  try {
    Deno.removeSync(pathOf(root));
  } catch { /* none */ }
}
