/**
 * tests/targets/rt_memflags.c as the tests see it: its ready line and the
 * checks it reports after a restore.
 *
 * @module
 */

/** rt_memflags's ready line. */
export const MEMFLAGS_READY = /^ready pid=(\d+)$/m;

/** The checks rt_memflags reports (each PASS or FAIL). */
export const MEMFLAGS_CHECKS = [
  "maps-and-flags",
  "vmlck",
  "contents",
  "guard-pages",
  "growsdown-grows",
  "thp-disable",
  "ksm-merge-any",
  "fork-flags",
  "mlock-future",
];
