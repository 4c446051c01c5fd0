/**
 * The pre-copy (engine/dump/precopy.ts) with its page copy on two lanes
 * (engine/dump/copy_lanes.ts) when the tree has enough memory for them to
 * pay: the worker lane is started before the pre-copy's freeze, so that it
 * has loaded by the time the copy begins.
 *
 * `CRYO_COPY_LANES=1` in the environment keeps the copy on one lane,
 * `CRYO_COPY_LANES=2` uses two whatever the size (tests, measurements).
 *
 * @module
 */

import { Precopy } from "./precopy.ts";
import { CopyLanes, LANE_MIN_BYTES } from "./copy_lanes.ts";
import { laneDeathAt } from "./lane_claims.ts";
import { listDescendants } from "../proc/tasks.ts";
import { readStatus } from "../proc/status.ts";

/** Resident anonymous and shmem bytes of the tree of `root` (what a pre-copy copies, roughly). */
export function residentBytes(root: number): number {
  let pids: number[];
  try {
    pids = [...listDescendants(root).keys()];
  } catch {
    pids = [];
  }
  if (!pids.includes(root)) pids.push(root);
  let bytes = 0;
  for (const pid of pids) {
    try {
      const f = readStatus(pid).fields;
      bytes += (parseInt(f.RssAnon ?? "0", 10) + parseInt(f.RssShmem ?? "0", 10)) * 1024;
    } catch { /* gone */ }
  }
  return bytes;
}

/** The `CRYO_COPY_LANES` override: 1, 2, or undefined. */
export function lanesOverride(): 1 | 2 | undefined {
  let v: string | undefined;
  try {
    v = Deno.env.get("CRYO_COPY_LANES");
  } catch {
    return undefined; // no env permission
  }
  return v === "1" ? 1 : v === "2" ? 2 : undefined;
}

/**
 * {@link Precopy.start} (`inBarrier` is its own) then the copy of every process's pages, on two
 * lanes when the tree holds at least {@link LANE_MIN_BYTES} and the machine
 * has two CPUs. A failed copy closes the pre-copy's tracking and throws.
 */
export async function precopyTree(
  root: number,
  dir: string,
  keep: boolean,
  inBarrier?: Parameters<typeof Precopy.start>[3],
): Promise<Precopy> {
  const force = lanesOverride();
  const lanes = force === 2 || (force === undefined && residentBytes(root) >= LANE_MIN_BYTES)
    ? CopyLanes.start(force === 2)
    : undefined;
  let keepLanes = false;
  try {
    const precopy = Precopy.start(root, dir, keep, inBarrier);
    try {
      if (!lanes) await precopy.copy();
      else {
        const procs = [...precopy.processes.values()].filter((p) => p.plannedBytes > 0);
        const results = await lanes.copy(
          procs.map((p) => p.job),
          {
            ...(force === 2 ? { minBytes: 0 } : {}),
            ...(laneDeathAt() ? { mainLane: false } : {}),
          },
        );
        procs.forEach((p, i) => p.copied(results[i]));
      }
    } catch (e) {
      precopy.close();
      throw e;
    }
    if (lanes) keptLanes.set(precopy, lanes);
    keepLanes = lanes !== undefined;
    return precopy;
  } finally {
    if (!keepLanes) lanes?.close();
  }
}

/** The copy lanes of a pre-copy, kept for its release ({@link releasePrecopy}). */
const keptLanes = new WeakMap<Precopy, CopyLanes>();

/**
 * Closes the pre-copy's tracking after the dump's thaw (Precopy.close):
 * when it was copied on two lanes, each process's release runs on the
 * worker's thread while cryo's goes on (the dump writes its notes
 * meanwhile; docs/PERFORMANCE.md "The tracking's release beside the
 * notes"), then the worker stops. Resolves once every fd is closed.
 */
export async function releasePrecopy(precopy: Precopy): Promise<void> {
  const lanes = keptLanes.get(precopy);
  keptLanes.delete(precopy);
  if (!lanes) return precopy.close();
  try {
    for (const p of [...precopy.processes.values()]) {
      await p.closeWith((uffd, ranges, chunk) => lanes.release(uffd, ranges, chunk));
    }
  } finally {
    lanes.close();
    precopy.close(); // anything a failure left (a no-op otherwise)
  }
}

/** Stops the copy lanes kept for `precopy` (a dump that fails before {@link releasePrecopy}). */
export function dropLanes(precopy: Precopy | undefined): void {
  if (!precopy) return;
  keptLanes.get(precopy)?.close();
  keptLanes.delete(precopy);
}
