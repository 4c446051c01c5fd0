/**
 * The claims of the two copy lanes (engine/dump/copy_lanes.ts) on the
 * segments of one copy, in shared memory: this thread's lane takes
 * segments from the front, the worker's from the back, so that they start
 * at opposite ends (of a tree: on different files) and meet.
 *
 * @module
 */

/**
 * Most segments of one copy: the claims are two 16-bit counters in one
 * Int32 ({@link claimSegment}). A larger copy uses larger segments.
 */
export const MAX_SEGMENTS = 0x7fff;

/**
 * Claims the next segment from the front (this thread's lane) or the back
 * (the worker's), or returns -1 when none is left. `ctl[0]` holds the next
 * front segment in its low 16 bits and the end of the unclaimed ones in its
 * high bits: the lanes start at opposite ends (of a tree: on different
 * files) and meet.
 */
export function claimSegment(ctl: Int32Array, back: boolean): number {
  for (;;) {
    const v = Atomics.load(ctl, 0);
    const front = v & 0xffff, end = v >>> 16;
    if (front >= end) return -1;
    const next = back ? ((end - 1) << 16) | front : (end << 16) | (front + 1);
    if (Atomics.compareExchange(ctl, 0, v, next) === v) return back ? end - 1 : front;
  }
}

/** Stops every claim; returns [front, end): the segments nobody claimed. */
export function stopClaims(ctl: Int32Array): [number, number] {
  const v = Atomics.exchange(ctl, 0, 0);
  return [v & 0xffff, v >>> 16];
}

/**
 * The `CRYO_TEST_LANE_DIE` test hook (copy_lane_worker.ts): the worker
 * lane's segment (1-based) in which it dies, or 0. While it is set, cryo's
 * own lane copies only what the worker leaves (so the death is certain).
 */
export function laneDeathAt(): number {
  try {
    return Number(Deno.env.get("CRYO_TEST_LANE_DIE") ?? 0) || 0;
  } catch {
    return 0; // no env permission
  }
}

/**
 * `CRYO_TEST_LANE_DIE=release`: the worker lane dies when asked to release
 * a pre-copy's userfaultfd, before it does anything (copy_lane_worker.ts).
 */
export function laneDeathInRelease(): boolean {
  try {
    return Deno.env.get("CRYO_TEST_LANE_DIE") === "release";
  } catch {
    return false;
  }
}
