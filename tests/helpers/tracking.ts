/**
 * The write-tracking traces a dump could leave in a process, for the
 * pre-copy, pre-dump and final-freeze tests (tests/targets/rt_precopy.c).
 *
 * @module
 */

import assert from "node:assert/strict";
import { PM, readPagemap } from "../../engine/proc/pagemap.ts";
import { restore } from "../../engine/restore/mod.ts";
import { assertChecksPassed } from "./checks.ts";
import { adoptPid, type Target } from "./targets.ts";

/** rt_precopy's ready line: pid, its region's address and page count. */
export const RT_PRECOPY_READY = /^ready pid=(\d+) region=0x([0-9a-f]+) pages=(\d+)$/m;
/** The checks rt_precopy reports after its trigger. */
export const RT_PRECOPY_CHECKS = ["pages", "writes", "rewrite"];

const PAGE = 4096;

/**
 * What of a process could betray a dump: its fds, its mappings, how many
 * mappings carry a userfaultfd VmFlag, and how many pages of `pages` at
 * `region` are write-protected.
 */
export function trackingTraces(pid: number, region: bigint, pages: number) {
  const fds = [...Deno.readDirSync(`/proc/${pid}/fd`)].map((e) =>
    `${e.name} ${Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`)}`
  ).sort();
  const maps = Deno.readTextFileSync(`/proc/${pid}/maps`);
  const uffdFlags = Deno.readTextFileSync(`/proc/${pid}/smaps`).split("\n")
    .filter((l) => l.startsWith("VmFlags:") && /\b(uw|um|ui)\b/.test(l)).length;
  const e = readPagemap(pid, region, region + BigInt(pages * PAGE));
  let protectedPages = 0;
  for (let i = 0; i < e.length; i++) if (e.hi(i) & PM.UFFD_WP) protectedPages++;
  return { fds, maps, uffdFlags, protectedPages };
}

/** Asserts that `traces` show no tracking left: no userfaultfd VmFlag, no write-protected page. */
export function assertNoTracking(
  traces: { uffdFlags: number; protectedPages: number },
  what = "",
): void {
  const at = what ? ` (${what})` : "";
  assert.equal(traces.uffdFlags, 0, `no mapping registered with a userfaultfd${at}`);
  assert.equal(traces.protectedPages, 0, `no write-protected page${at}`);
}

/**
 * The end of a leave-running round trip of rt_precopy `t`: the original,
 * triggered, runs on and passes its checks; then the image in `dir`,
 * restored, passes them too (every page is the one of the last freeze).
 */
export async function assertOriginalThenRestored(
  t: Target,
  trigger: string,
  dir: string,
  /** The checks to find (rt_precopy's "threads" mode adds one). */
  checks: readonly string[] = RT_PRECOPY_CHECKS,
): Promise<void> {
  await Deno.writeTextFile(trigger, "");
  assertChecksPassed(t, checks, await t.wait(30000), {
    what: "original after the dump",
  });
  const tree = await restore(dir);
  t.resetAfterRestore();
  for (const pid of tree.pids) if (pid !== t.pid) adoptPid(pid);
  assertChecksPassed(t, checks, await t.wait(30000), { run: 2, what: "restored" });
}
