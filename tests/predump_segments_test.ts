/**
 * A pre-dump of a process with thousands of file mappings alternating with
 * anonymous ones (tests/targets/many_segments.c; zdtm's maps06 found it):
 * its page walk, cut into stretches walked each with a pagemap fd and a
 * thread of its own, makes at most MAX_SCAN_SEGMENTS of them (it made one
 * per stretch: the dump ran out of fds), and the pre-dump leaves the
 * process intact.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { cancelPreDump } from "../engine/dump/chain_dump.ts";
import { MAX_SCAN_SEGMENTS, scanSegments } from "../engine/dump/data_scan.ts";
import { readMaps } from "../engine/proc/maps.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) start=0x([0-9a-f]+) pairs=(\d+)$/m;

Deno.test(
  "a pre-dump walks thousands of alternating mappings in a bounded number of stretches",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("many_segments", READY, {
      passWork: true,
      extra: ["3000"],
    });
    const segments = scanSegments(readMaps(t.pid));
    assert.ok(segments.length <= MAX_SCAN_SEGMENTS, `${segments.length} stretches`);
    await checkpoint(t.pid, { dir: await tempImageDir(), preDump: true });
    assert.equal(cancelPreDump(t.pid), 1, "one tracking fd closed");
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, ["pages"], await t.wait(20000));
  }),
);
