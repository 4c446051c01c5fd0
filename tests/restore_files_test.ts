/**
 * Round trip of file descriptors: tests/targets/rt_files.c opens regular
 * files at offsets, dup'd and independent fds of one file, O_APPEND and
 * O_CLOEXEC fds, a directory, /dev/null and /dev/zero, an O_RDWR file and
 * a high fd number; it is dumped, killed and restored with the same pid,
 * then checks every fd itself after the trigger file appears.
 */

import assert from "node:assert/strict";
import { assertChecksPassed } from "./helpers/checks.ts";
import { dumpKillRestore, startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

/** The checks rt_files.c reports. */
const FILE_CHECKS = [
  "fd-set",
  "offset-read",
  "offset-read-data",
  "flags-rdonly",
  "offset-write",
  "flags-wronly",
  "write-continues",
  "dup-offset",
  "dup-shared",
  "independent-open",
  "append-flag",
  "append-writes",
  "cloexec-set",
  "cloexec-clear",
  "dir-fstat",
  "dir-fchdir",
  "dir-openat",
  "dev-null",
  "dev-null-flags",
  "dev-zero",
  "rdwr-write",
  "high-fd",
];

/** The line rt_files prints with its open fds once they are all set up. */
const READY = /^ready pid=(\d+) fds=(.*)$/m;

Deno.test(
  "file descriptors survive dump, kill and restore (offsets, dup, flags, dirs, devices)",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_files", READY, { passWork: true });
    const pid = t.pid;
    await dumpKillRestore(t);
    // The fds seen from outside are the same numbers as before the dump.
    const fds = [...Deno.readDirSync(`/proc/${pid}/fd`)].map((e) => Number(e.name))
      .sort((a, b) => a - b);
    assert.equal(fds.join(" ") + " ", ready[2]);

    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, FILE_CHECKS, await t.wait());
  }),
);
