/**
 * The page plan's PAGEMAP_SCAN walked ahead on another thread
 * (engine/dump/scan_ahead.ts): the regions it gives equal a walk on cryo's
 * thread, also when its buffer fills (continued on cryo's thread) and when
 * its call fails on the other thread (made again on cryo's thread); a dump
 * of tests/targets/rt_maps.c whose plan took the walk ahead restores every
 * mapping with its content (the target checks them). A collect called
 * directly (a library user, no plan after it) starts no walk and leaves no
 * pagemap fd open; one that starts a walk has it closed by `dropScansAhead`,
 * and a dump closes every walk it started.
 *
 * @module
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import {
  dropScansAhead,
  SCAN_AHEAD_END,
  scanAheadStats,
  startScanAhead,
  takeScanAhead,
} from "../engine/dump/scan_ahead.ts";
import { restore } from "../engine/restore/mod.ts";
import { PagemapScanner } from "../engine/proc/pagemap_scan.ts";
import { freezeTree, thawTree } from "../engine/dump/freeze.ts";
import { collectProcess, pipeTopology, readFds } from "../engine/dump/process.ts";
import { Refusals } from "../engine/support.ts";
import { loadVmaIterator } from "../engine/proc/vma_flags_bpf.ts";
import { tablesAvailable } from "../ffi/syscall_table.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import { startRtMaps, withVmFlagsMode } from "./helpers/vmflags_mode.ts";

const CHECKS = ["lines", "vmflags", "content", "file-untouched"];
const ignore = !tablesAvailable();

Deno.test({
  name: "scan ahead: equal to a walk here; a full buffer continued here; a failed call redone",
  ignore,
  fn: withTargets(async () => {
    const { t } = await startRtMaps(300);
    const tree = freezeTree(t.pid);
    try {
      const here = (() => {
        using s = new PagemapScanner(t.pid);
        return s.dataRegions(0, SCAN_AHEAD_END);
      })();
      assert.ok(here.length > 100, `${here.length} regions`);
      for (const capacity of [4096, 7]) {
        const was = { ...scanAheadStats };
        startScanAhead(t.pid, capacity);
        assert.deepEqual(takeScanAhead(t.pid, 0, SCAN_AHEAD_END), here, `capacity ${capacity}`);
        assert.equal(scanAheadStats.used - was.used, 1, "taken");
      }
      const was = { ...scanAheadStats };
      scanAheadStats.failNext = true;
      startScanAhead(t.pid, 4096);
      assert.deepEqual(takeScanAhead(t.pid, 0, SCAN_AHEAD_END), here, "redone");
      assert.equal(scanAheadStats.redone - was.redone, 1, "the failed call redone here");
      assert.equal(scanAheadStats.used - was.used, 0);
      // Not started, or not covering the range: the caller walks itself.
      assert.equal(takeScanAhead(t.pid, 0, SCAN_AHEAD_END), undefined);
      startScanAhead(t.pid, 4096);
      assert.equal(takeScanAhead(t.pid, 0, SCAN_AHEAD_END + 4096), undefined);
    } finally {
      thawTree(tree);
      await t.kill();
    }
  }),
});

Deno.test({
  name: "scan ahead: a --leave-running dump planned from the walk ahead restores every mapping",
  ignore: ignore || !loadVmaIterator(),
  fn: withTargets(async () => {
    const { t, trigger } = await startRtMaps(300);
    const dir = await tempImageDir();
    const was = { ...scanAheadStats };
    await withVmFlagsMode(
      "bpf",
      () => checkpoint(t.pid, { dir, leaveRunning: true, precopy: false, sync: false }),
    );
    assert.equal(scanAheadStats.used - was.used, 1, "the plan took the walk ahead");
    assert.equal(scanAheadStats.started - was.started, 1, "one walk ahead started");
    await t.kill();
    const tree = await restore(dir);
    t.resetAfterRestore();
    assert.equal(tree.rootPid, t.pid);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, CHECKS, await t.wait(30000), { what: "rt_maps" });
  }),
});

Deno.test({
  name: "scan ahead: none for a pre-copied dump (its validation walks); the image restores",
  ignore: ignore || !loadVmaIterator(),
  fn: withTargets(async () => {
    const { t, trigger } = await startRtMaps(300);
    const dir = await tempImageDir();
    const was = { ...scanAheadStats };
    const r = await withVmFlagsMode(
      "bpf",
      () => checkpoint(t.pid, { dir, leaveRunning: true, precopy: true, sync: false }),
    );
    assert.ok((r.stats.precopy?.reusedBytes ?? 0) > 0, "pages kept from the pre-copy");
    assert.equal(scanAheadStats.started - was.started, 0, "no walk ahead started");
    assert.equal(pagemapFds(t.pid), 0, "the dump left a pagemap fd open");
    await t.kill();
    const tree = await restore(dir);
    t.resetAfterRestore();
    assert.equal(tree.rootPid, t.pid);
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, CHECKS, await t.wait(30000), { what: "rt_maps" });
  }),
});

/** cryo's own fds open on the pagemap of `pid`. */
function pagemapFds(pid: number): number {
  let n = 0;
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${e.name}`) === `/proc/${pid}/pagemap`) n++;
    } catch { /* closed meanwhile (the directory's own fd) */ }
  }
  return n;
}

Deno.test({
  name: "scan ahead: a collect without a plan leaves no pagemap fd open; a dump closes its walks",
  ignore: ignore || !loadVmaIterator(),
  fn: withTargets(async () => {
    const { t } = await startRtMaps(300);
    const tree = freezeTree(t.pid);
    try {
      const p = tree.processes[0];
      const fds = readFds(p.pid);
      const collect = (scanAhead?: boolean) =>
        collectProcess(
          p.pid,
          p.threads,
          p.children,
          fds,
          pipeTopology([{ pid: p.pid, fds }]),
          new Refusals(),
          undefined,
          undefined,
          undefined,
          scanAhead,
        );
      // A library user's collect: no plan follows, no walk may stay behind it.
      collect();
      assert.equal(pagemapFds(t.pid), 0, "a direct collect left a pagemap fd open");
      // The dump's collect starts one (its plan takes it); not taken, it is dropped and closed.
      collect(true);
      assert.equal(pagemapFds(t.pid), 1, "the walk ahead started");
      dropScansAhead();
      assert.equal(pagemapFds(t.pid), 0, "dropped and closed");
      assert.equal(takeScanAhead(t.pid, 0, SCAN_AHEAD_END), undefined, "nothing left to take");
    } finally {
      thawTree(tree);
    }
    // A whole dump: its walk taken by the plan, nothing open afterwards.
    const dir = await tempImageDir();
    const was = { ...scanAheadStats };
    await withVmFlagsMode(
      "bpf",
      () => checkpoint(t.pid, { dir, leaveRunning: true, precopy: false, sync: false }),
    );
    assert.equal(scanAheadStats.used - was.used, 1, "the plan took the walk ahead");
    assert.equal(pagemapFds(t.pid), 0, "the dump left a pagemap fd open");
    await t.kill();
  }),
});
