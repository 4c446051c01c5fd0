/**
 * The worker side of {@link CopyLanes} (copy_lanes.ts): a second copy lane
 * with its own page-aligned buffer, FFI handles and file descriptors. For
 * each request it claims segments from the back (lane_claims.ts)
 * until none is left, copies each, and answers each with its result or its error (after
 * an error it sets the stop flag and claims no more).
 *
 * It also releases a pre-copy's userfaultfd after the dump's thaw
 * ({@link CopyLanes.release}), while cryo's thread writes the notes.
 *
 * Test hook: with `CRYO_TEST_LANE_DIE=<n>` in the environment the worker
 * dies in its n-th segment (after the segment's first piece, 1-based):
 * the segment is left half written and unanswered, and an uncaught error
 * ends the worker (tests/copy_lanes_test.ts); with `release` it dies on its
 * first release request, its copy of the fd left open (tests/precopy_test.ts).
 *
 * @module
 */

import type { LaneReleaseRequest, LaneReply, LaneRequest } from "./copy_lanes.ts";
import { claimSegment, laneDeathAt, laneDeathInRelease } from "./lane_claims.ts";
import { copySegment, newLane } from "./precopy_copy.ts";

// deno-lint-ignore no-explicit-any
const scope = self as any;
const reply = (m: LaneReply) => scope.postMessage(m);

/** The test hook's error: the worker dies of it. */
class LaneDeath extends Error {}

const dieAt = laneDeathAt();
let copied = 0;

scope.onmessage = async (e: MessageEvent<LaneRequest | LaneReleaseRequest>) => {
  if ("release" in e.data) {
    const { call, release: { uffd, ranges, chunkBytes } } = e.data;
    if (laneDeathInRelease()) throw new LaneDeath("copy lane: test death in a release");
    // Loaded when first needed: not on the way to the copy's start (3 more modules). The
    // worker always runs from its source files (CopyLanes starts it by sourceURL), and a
    // specifier in a variable is not loaded with this module.
    const release = new URL("./uffd_release.ts", import.meta.url).href;
    const { releaseUffd } = await import(release) as typeof import("./uffd_release.ts");
    releaseUffd(uffd, ranges, chunkBytes);
    reply({ call, released: true });
    return;
  }
  const { call, segments, control } = e.data;
  const ctl = new Int32Array(control);
  const lane = newLane();
  try {
    while (Atomics.load(ctl, 1) === 0) {
      const index = claimSegment(ctl, true);
      if (index < 0) break;
      const die = ++copied === dieAt
        ? () => {
          throw new LaneDeath(`copy lane: test death in segment ${index}`);
        }
        : undefined;
      try {
        reply({ call, index, result: await copySegment(segments[index], lane, die) });
      } catch (err) {
        if (err instanceof LaneDeath) {
          setTimeout(() => {
            throw err;
          });
          return;
        }
        Atomics.store(ctl, 1, 1);
        reply({ call, index, error: err instanceof Error ? err.message : String(err) });
        break;
      }
    }
  } finally {
    lane.files.close();
  }
};

reply({ ready: true });
