/**
 * The pre-copy (engine/dump/precopy.ts) with its page copy on two lanes:
 * from {@link NATIVE_LANE_MIN_BYTES}, at every size, the second lane is a
 * syscall table on one of Deno's blocking-pool threads
 * (engine/dump/native_lane.ts), which costs no isolate. Where tables cannot
 * run, a tree of {@link LANE_MIN_BYTES} or more copies with a worker lane
 * (engine/dump/copy_lanes.ts), started before the pre-copy's freeze so that
 * it has loaded by the time the copy begins.
 *
 * `CRYO_COPY_LANES=1` in the environment keeps the copy on one lane,
 * `CRYO_COPY_LANES=2` uses two (cryo's thread and a worker) whatever the
 * size, `CRYO_COPY_LANES=native` cryo's thread and a syscall table
 * whatever the size and the load (tests, measurements).
 *
 * @module
 */

import { Precopy } from "./precopy.ts";
import { CopyLanes, LANE_MIN_BYTES } from "./copy_lanes.ts";
import { copyOnNativeLane, NATIVE_LANE_MIN_BYTES, nativeLaneAvailable } from "./native_lane.ts";
import type { FrozenTree } from "./freeze.ts";
import { laneDeathAt } from "./lane_claims.ts";
import { releaseUffdOnTable } from "./uffd_release.ts";
import { listTids, treePidsOrRoot } from "../proc/tasks.ts";
import { readStatus } from "../proc/status.ts";

/** Resident anonymous and shmem bytes of the tree of `root` (what a pre-copy copies, roughly). */
export function residentBytes(root: number): number {
  const pids = treePidsOrRoot(root);
  let bytes = 0;
  for (const pid of pids) {
    try {
      const f = readStatus(pid).fields;
      bytes += (parseInt(f.RssAnon ?? "0", 10) + parseInt(f.RssShmem ?? "0", 10)) * 1024;
    } catch { /* gone */ }
  }
  return bytes;
}

/**
 * From this many threads in the root, a pre-copy without a table lane
 * rehearses the collect on the helper before its first freeze rather than
 * in its barrier's freeze ({@link precopyTree}).
 */
export const HELPER_FIRST_MIN_THREADS = 8;

/** Threads of `pid`, 0 when it cannot be read. */
function threadCount(pid: number): number {
  try {
    return listTids(pid).length;
  } catch {
    return 0;
  }
}

/** What ran beside the syscall table's copy in this process so far: the light warm-up or the helper's rehearsal (tests). */
export const besideStats = { light: 0, helper: 0 };

/**
 * Whether a syscall table copies beside cryo's thread (from
 * {@link NATIVE_LANE_MIN_BYTES}): with two CPUs or more, whatever their
 * load. A table copies a MiB for about half the CPU of cryo's own lane,
 * and cryo's thread, after a short warm-up, only waits while tables copy;
 * with one lane it copied in JavaScript and rehearsed the collect in the
 * barrier's freeze: on a busy machine (CPU pressure 50 to 65%) that cost
 * 20 to 60 ms more wall and 16 to 47 ms more CPU at 64 to 256 MiB
 * (docs/PERFORMANCE.md, "Small dumps, fifteenth pass"; the copy lanes'
 * load rule, copy_lanes.ts `lanesAvailable`, still decides for a worker).
 */
export function tableLaneWanted(): boolean {
  return (navigator.hardwareConcurrency ?? 1) >= 2;
}

/** The `CRYO_COPY_LANES` override: 1, 2, "native", or undefined. */
export function lanesOverride(): 1 | 2 | "native" | undefined {
  let v: string | undefined;
  try {
    v = Deno.env.get("CRYO_COPY_LANES");
  } catch {
    return undefined; // no env permission
  }
  return v === "1" ? 1 : v === "2" ? 2 : v === "native" ? "native" : undefined;
}

/**
 * The collect's rehearsal (engine/dump/rehearsal.ts), run by
 * {@link precopyTree} where it costs the least wall time.
 */
export interface PrecopyRehearsal {
  /** In the pin barrier's freeze, on the frozen tree. */
  inBarrier(tree: FrozenTree): void;
  /**
   * Before the first freeze when the rehearsal is in the barrier (the
   * parsers the freezes use compiled first); beside the copy the helper's
   * rehearsal (or {@link besideLight}) warms them, and the first freeze
   * reads little.
   */
  warmUp?: () => void;
  /**
   * On cryo's thread while a syscall table copies (the tree running, on a
   * process of cryo's own) a root of {@link HELPER_FIRST_MIN_THREADS}
   * threads or more, or before the first freeze when no table copies such
   * a root (and the lanes are not forced): the barrier's freeze then
   * rehearses nothing. Never throws.
   */
  beside?: () => unknown;
  /**
   * Instead of {@link beside} while a syscall table copies a root of fewer
   * threads: a warm-up of cryo's own code only (no helper). The first
   * freeze has run most of the collect's code by then, and on two CPUs the
   * helper's rehearsal took the CPU the copy's second lane needs: ~20 ms
   * of cryo's thread to save 1 to 3 ms of the final freeze
   * (docs/PERFORMANCE.md, "Small dumps, fifteenth pass"). Never throws.
   */
  besideLight?: () => unknown;
}

/**
 * {@link Precopy.start} (`afterBarrier` is its own) then the copy of every process's pages, with
 * a syscall table as the second lane from {@link NATIVE_LANE_MIN_BYTES} on two CPUs or more
 * ({@link tableLaneWanted}; where tables cannot run: a worker lane from {@link LANE_MIN_BYTES},
 * two CPUs and one idle).
 * A failed copy closes the pre-copy's tracking and throws.
 */
export async function precopyTree(
  root: number,
  dir: string,
  keep: boolean,
  /**
   * Run once the pin barrier's freeze is over (the VmFlags check, engine/dump/vm_flags.ts:
   * its load of the BPF iterator took 14 to 60 ms of that freeze on a loaded machine).
   */
  afterBarrier?: Parameters<typeof Precopy.start>[4],
  /** The image will not be synced: the syscall table's lane may preallocate (native_lane.ts). */
  noSync = false,
  /**
   * The collect's rehearsal: beside the copy when a syscall table copies
   * (the barrier's freeze is then only the pins' settle), else in the barrier.
   */
  rehearsal?: PrecopyRehearsal,
  /** The tree's resident bytes when the caller read them (precopy_policy.ts's estimate). */
  residentKnown?: number,
): Promise<Precopy> {
  const force = lanesOverride();
  const resident = force === undefined ? residentKnown ?? residentBytes(root) : 0;
  // The syscall table is the second lane at every size where it can run: from 1 GiB
  // (a tree of 3 x 512 MiB, 2 GiB) the worker lane cost more CPU and wall (its
  // isolate, the JavaScript per MiB): docs/PERFORMANCE.md, "The large workloads,
  // seventh pass". The worker is left for a machine where tables cannot run.
  const tables = nativeLaneAvailable();
  const lanes = force === 2 ||
      (force === undefined && !tables && resident >= LANE_MIN_BYTES)
    ? CopyLanes.start(force === 2)
    : undefined;
  const native = !lanes && tables &&
    (force === "native" ||
      (force === undefined && resident >= NATIVE_LANE_MIN_BYTES && tableLaneWanted()));
  let keepLanes = false;
  try {
    const beside = native && rehearsal?.beside !== undefined;
    // A root of few threads gets the light warm-up beside the table (besideLight's doc).
    const light = beside && rehearsal?.besideLight !== undefined &&
      threadCount(root) < HELPER_FIRST_MIN_THREADS;
    if (beside) besideStats[light ? "light" : "helper"]++;
    // Without a table lane, a root of many threads is rehearsed on the helper first: in
    // the barrier the per-thread code would run cold for each of its threads with the tree
    // frozen, the dump's longest freeze (docs/PERFORMANCE.md, "The threads-64 freeze,
    // fifth wave"). Forced lanes keep the rehearsal in the barrier.
    const first = !beside && force === undefined && rehearsal?.beside !== undefined &&
      threadCount(root) >= HELPER_FIRST_MIN_THREADS;
    if (first) await rehearsal!.beside!();
    else if (!beside) rehearsal?.warmUp?.();
    const precopy = Precopy.start(root, dir, keep, (tree) => {
      if (!beside && !first) rehearsal?.inBarrier(tree);
    }, afterBarrier);
    try {
      const procs = [...precopy.processes.values()].filter((p) => p.plannedBytes > 0);
      if (native) {
        const results = await copyOnNativeLane(procs.map((p) => p.job), {
          preallocate: noSync,
          ...(beside ? { beside: light ? rehearsal!.besideLight : rehearsal!.beside } : {}),
        });
        procs.forEach((p, i) => p.copied(results[i]));
      } else if (!lanes) await precopy.copy();
      else {
        const results = await lanes.copy(
          procs.map((p) => p.job),
          {
            ...(force === 2 ? { minBytes: 0 } : {}),
            ...(laneDeathAt() ? { mainLane: false } : {}),
          },
        );
        procs.forEach((p, i) => p.copied(results[i]));
      }
      await precopy.dropGone(); // exited during the copy: not pre-copied
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
 * each process's release runs on a syscall table's thread of its own (all
 * at once), or, when it was
 * copied with a worker lane, on the worker's thread, while cryo's goes on
 * (the dump writes its notes meanwhile; docs/PERFORMANCE.md "The
 * tracking's release beside the notes"), then the worker stops. Resolves
 * once every fd is closed.
 */
export async function releasePrecopy(precopy: Precopy): Promise<void> {
  const lanes = keptLanes.get(precopy);
  keptLanes.delete(precopy);
  if (!lanes) {
    // On a syscall table's thread (engine/dump/uffd_release.ts), the notes written meanwhile.
    try {
      // One table per process, all at once: each takes its own mm's lock, so on a tree
      // they run side by side (one after the other, the last ended 17 to 37 ms after the notes).
      const done = await Promise.allSettled(
        [...precopy.processes.values()].map((p) => p.closeWith(releaseUffdOnTable)),
      );
      const failed = done.find((d) => d.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
    } finally {
      precopy.close(); // anything a failure left (a no-op otherwise)
    }
    return;
  }
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
