/**
 * Whether a pre-copy (engine/dump/precopy.ts) can pay for its own freeze.
 *
 * The pre-copy freezes the tree once more to set up write tracking; what it
 * saves is the copy of the pages not written since, which the dump's freeze
 * then skips. With little resident memory, or memory spread over many
 * small mappings (where the freeze goes to collecting the mappings, not to
 * copying), the extra freeze costs more than it saves: such a tree is
 * frozen once. Decided from /proc before anything is frozen.
 *
 * @module
 */

import { treePidsOrRoot } from "../proc/tasks.ts";
import { readStatus } from "../proc/status.ts";
import { countMappings } from "../proc/maps.ts";

/** Below this much resident anonymous and shared memory, the tree is copied frozen. */
export const PRECOPY_MIN_BYTES = 32 * 1024 * 1024;
/** Below this many resident bytes per mapping on average, the tree is copied frozen. */
export const PRECOPY_MIN_BYTES_PER_MAPPING = 64 * 1024;

/** What {@link precopyPays} measured. */
export interface PrecopyEstimate {
  /** Resident anonymous and shmem bytes of the tree (RssAnon + RssShmem). */
  bytes: number;
  /** Mappings of the tree. */
  mappings: number;
  /** Whether the pre-copy is worth its freeze. */
  pays: boolean;
  /**
   * The tree's processes as listed for the estimate (the root first), for
   * the warm-ups before the freeze that would list them again (a listing
   * reads every thread's children file); the freeze lists them itself.
   */
  pids: number[];
  /** Each listed process's own figures, index for index with `pids` (engine/dump/snapshot_choice.ts). */
  each: { bytes: number; mappings: number }[];
}

/**
 * Estimates, from /proc, whether pre-copying the tree of `root` shortens
 * its freeze (see the module doc). A process that cannot be read counts as
 * nothing (the dump itself will tell).
 */
export function precopyPays(
  root: number,
  /** How a process's children are read (engine/proc/tasks.ts `readChildren` unless given). */
  readKids?: (pid: number) => number[],
): PrecopyEstimate {
  let bytes = 0;
  let mappings = 0;
  const pids = treePidsOrRoot(root, readKids);
  const each = pids.map((pid) => {
    try {
      const f = readStatus(pid).fields;
      const own = {
        bytes: (parseInt(f.RssAnon ?? "0", 10) + parseInt(f.RssShmem ?? "0", 10)) * 1024,
        mappings: countMappings(pid),
      };
      bytes += own.bytes;
      mappings += own.mappings;
      return own;
    } catch {
      return { bytes: 0, mappings: 0 }; // gone
    }
  });
  const pays = bytes >= PRECOPY_MIN_BYTES &&
    bytes >= PRECOPY_MIN_BYTES_PER_MAPPING * Math.max(mappings, 1);
  return { bytes, mappings, pays, pids, each };
}
