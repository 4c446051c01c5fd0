/**
 * The page copy of a dump frozen once, made ahead on another thread
 * (engine/dump/copy_ahead.ts), on tests/targets/rt_precopy.c (its memory
 * rewritten all the time: a byte read at another moment than the freeze's
 * fails its check after the restore):
 *
 * - a `--leave-running` dump with the writes deferred
 *   (`CRYO_COPY_LANES=native`) takes the plan and the buffers read ahead,
 *   for a plain region, for one mapping per page ("maps": many pieces
 *   merged in a read) and for a root of 13 threads ("threads"); the
 *   original runs on and the image restores exactly;
 * - the same with the table's thread held back (a sleep first): the
 *   streamer reads the buffers the table has not reached itself, the reads
 *   the table makes later land in buffers nothing uses, and the image is
 *   exact;
 * - every buffer read ahead in the freeze: the stream (the buffers' writes,
 *   sums and the page records) runs after the thaw, and the image is still
 *   exact (the target rewrites its memory all the time);
 * - the table paused after its first buffer: the dump's core notes are
 *   encoded while cryo's thread waits for the rest, and are the bytes the
 *   image writer encodes;
 * - an injection into the process waits for the reads ahead first
 *   (injected.ts `beforeInjection`).
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { encodeCoreNotes } from "../engine/image/core_notes.ts";
import { readImageFile } from "../engine/image/mod.ts";
import {
  copyAheadHooks,
  copyAheadRunning,
  copyAheadStats,
  dropCopyAhead,
  startCopyAhead,
} from "../engine/dump/copy_ahead.ts";
import { freezeTree, thawTree } from "../engine/dump/freeze.ts";
import { withInjection } from "../engine/dump/injected.ts";
import { readSmapsFlags } from "../engine/proc/smaps_flags.ts";
import { SYS } from "../ffi/sysno.ts";
import { tablesAvailable } from "../ffi/syscall_table.ts";
import { withTargets } from "./helpers/targets.ts";
import { startTriggered } from "./helpers/roundtrip.ts";
import {
  assertOriginalThenRestored,
  RT_PRECOPY_CHECKS,
  RT_PRECOPY_READY,
} from "./helpers/tracking.ts";
import { tempDir } from "./helpers/fs.ts";

const ignore = !tablesAvailable();

/**
 * Dumps rt_precopy (4 MiB, `mode`) frozen once with deferred writes; asserts the copy ahead was
 * used as `delayMs` (the table held back) says; with `pauseAfterFirstMs` (the table paused after
 * its first buffer), that the core notes were encoded in the wait, the very bytes the writer
 * would have encoded.
 */
async function roundTrip(
  mode: string | undefined,
  delayMs: number,
  pauseAfterFirstMs = 0,
): Promise<void> {
  const { t, trigger } = await startTriggered("rt_precopy", RT_PRECOPY_READY, {
    extra: ["4", ...(mode ? [mode] : [])],
  });
  const dir = `${await tempDir("cryo-copy-ahead-")}/image`;
  const before = { ...copyAheadStats };
  Deno.env.set("CRYO_COPY_LANES", "native");
  copyAheadHooks.delayMs = delayMs;
  copyAheadHooks.pauseAfterFirstMs = pauseAfterFirstMs;
  copyAheadHooks.waitWalk = true; // (else under load it may begin too late, or not at all)
  copyAheadHooks.waitFirst = delayMs === 0; // (else under load the table may be behind)
  const events: string[] = [];
  try {
    const r = await checkpoint(t.pid, {
      dir,
      leaveRunning: true,
      sync: false,
      onEvent: (e) => events.push(e.type),
    });
    assert.equal(r.stats.precopy, undefined, "frozen once");
  } finally {
    Deno.env.delete("CRYO_COPY_LANES");
    copyAheadHooks.delayMs = 0;
    copyAheadHooks.pauseAfterFirstMs = 0;
    copyAheadHooks.waitWalk = false;
    copyAheadHooks.waitFirst = false;
  }
  // Every buffer read ahead in the freeze: the stream (writes, sums, records) after the thaw.
  assert.equal(copyAheadStats.readAll - before.readAll, delayMs === 0 ? 1 : 0, "read whole ahead");
  const pagesAt = events.indexOf("pages"), thawedAt = events.indexOf("thawed");
  if (delayMs === 0) assert.ok(pagesAt > thawedAt, `streamed after the thaw: ${events}`);
  else assert.ok(pagesAt < thawedAt, `streamed in the freeze: ${events}`);
  if (pauseAfterFirstMs > 0) {
    assert.equal(copyAheadStats.workedInWait - before.workedInWait, 1, "notes encoded in the wait");
    const info = await readImageFile(`${dir}/${t.pid}.elf`);
    const section = info.sections.find((s) => s.name === ".note.core")!;
    const written = new Uint8Array(section.size);
    using f = await Deno.open(`${dir}/${t.pid}.elf`);
    await f.seek(section.offset, Deno.SeekMode.Start);
    for (let n = 0; n < written.length;) n += (await f.read(written.subarray(n)))!;
    assert.deepEqual(written, encodeCoreNotes(info.process), "the core notes as the writer's");
  }
  assert.equal(copyAheadStats.started - before.started, 1, "a copy started ahead");
  assert.equal(copyAheadStats.taken - before.taken, 1, "its plan taken");
  const used = copyAheadStats.buffersUsed - before.buffersUsed;
  if (delayMs > 0) assert.equal(used, 0, "the table behind: every buffer read by the streamer");
  else assert.ok(used >= 4, `the buffers read ahead written (${used})`);
  const checks = mode === "threads" ? [...RT_PRECOPY_CHECKS, "threads"] : RT_PRECOPY_CHECKS;
  await assertOriginalThenRestored(t, trigger, dir, checks);
}

for (const mode of [undefined, "maps", "threads"]) {
  Deno.test({
    name: `copy ahead: a dump frozen once (${mode ?? "one region"}) writes the buffers read ` +
      "ahead; the original runs on, the image restores exactly",
    ignore,
    fn: withTargets(() => roundTrip(mode, 0)),
  });
}

Deno.test({
  name: "copy ahead: its table held back, the streamer reads every buffer itself; exact image",
  ignore,
  fn: withTargets(() => roundTrip(undefined, 300)),
});

Deno.test({
  name: "copy ahead: the table paused after its first buffer, the core notes are encoded while " +
    "the dump waits for the rest (13 threads); the same bytes, exact image",
  ignore,
  fn: withTargets(() => roundTrip("threads", 0, 200)),
});

Deno.test({
  name: "copy ahead: an injection into the process waits for the reads ahead",
  ignore,
  fn: withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_precopy", RT_PRECOPY_READY, { extra: ["4"] });
    const tree = freezeTree(t.pid);
    try {
      copyAheadHooks.delayMs = 150;
      startCopyAhead(t.pid, readSmapsFlags(t.pid));
      assert.equal(copyAheadRunning(), true, "reading (held back)");
      let running: boolean | undefined;
      withInjection(t.pid, (s) => {
        running = copyAheadRunning();
        s.call(t.pid, SYS.getpid);
      });
      assert.equal(running, false, "the reads were over when the session opened");
    } finally {
      copyAheadHooks.delayMs = 0;
      dropCopyAhead();
      thawTree(tree);
    }
    await Deno.writeTextFile(trigger, "");
    await t.wait(30000);
  }),
});
