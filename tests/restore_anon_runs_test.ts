/**
 * Runs of adjacent private anonymous mappings (engine/restore/anon_runs.ts)
 * on pseudo-random layouts (tests/targets/rt_anon_runs.c): one-page
 * mappings side by side with random protections, pages touched or not,
 * madvise flags, some moved into place by mremap; after the restore the
 * region has the same areas (bounds, protections, VmFlags, in order) and
 * every page the same content. Three seeds, each checked to make runs of
 * several members and areas kept apart.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { anonRunLength, keptApart, reservedRunLength } from "../engine/restore/anon_runs.ts";
import { SPLIT_MIN } from "../engine/restore/page_loads.ts";
import type { Mapping } from "../engine/model.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) areas=(\d+)$/m;
const PAGES = 600;

for (const seed of [1, 7, 2026]) {
  Deno.test(
    `anonymous runs: a random layout of ${PAGES} one-page mappings comes back area for area (seed ${seed})`,
    withTargets(async () => {
      const { t, trigger } = await startTriggered("rt_anon_runs", READY, {
        extra: [String(PAGES), String(seed)],
      });
      const dir = await tempImageDir();
      await checkpoint(t.pid, { dir, leaveRunning: true, precopy: false });
      const { mappings } = (await readImageFile(`${dir}/${t.pid}.elf`)).process;
      let runs = 0, members = 0, apart = 0, reserved = 0, reservedMembers = 0;
      for (let i = 0; i < mappings.length; i++) {
        if (i > 0 && keptApart(mappings[i - 1], mappings[i])) apart++;
        const n = anonRunLength(mappings, i);
        // As the compile looks: a reserved run where no run starts (PROT_NONE areas among them).
        const r = n === 0 ? reservedRunLength(mappings, i) : 0;
        if (n === 0 && r === 0) continue;
        if (n > 0) runs++, members += n;
        else reserved++, reservedMembers += r;
        i += n + r - 1;
      }
      const found = `${runs} runs, ${members}, ${apart}; ${reserved} reserved, ${reservedMembers}`;
      assert.ok(runs >= 10 && members >= 40 && apart >= 5, found);
      assert.ok(reserved >= 3 && reservedMembers >= 6, found);
      console.log(found);
      await t.kill();
      await restore(dir);
      t.resetAfterRestore();
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, ["areas", "content"], await t.wait(30000), { what: "rt_anon_runs" });
    }),
  );
}

Deno.test(
  "reserved runs: thread stacks, their guards, arenas and a hand-made PROT_NONE region come back area for area",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_stack_runs", /^ready pid=(\d+) areas=(\d+)$/m);
    const dir = await tempImageDir();
    await checkpoint(t.pid, { dir, leaveRunning: true, precopy: false });
    const { mappings } = (await readImageFile(`${dir}/${t.pid}.elf`)).process;
    // Where the compile makes them (no ordinary run starting there), with and without "nh".
    let members = 0, nh = 0, nr = 0, opened = 0, largest = 0;
    for (let i = 0; i < mappings.length; i++) {
      const n = anonRunLength(mappings, i) === 0 ? reservedRunLength(mappings, i) : 0;
      if (n === 0) continue;
      members += n;
      const run = mappings.slice(i, i + n);
      largest = Math.max(largest, run.reduce((a, m) => a + pagesOf(m), 0));
      for (const m of run) {
        if (m.vmFlags.includes("nh")) nh++;
        if (m.vmFlags.includes("nr")) nr++;
        if (m.perms === "rw-p" && m.pages.length > 0) opened++;
      }
      i += n - 1;
    }
    // The region alone is 21 members with "nh", the stacks and their guards beside it 16 or
    // more, the arenas 2 each ("nr"); 12 stacks and 5 pieces of the region have pages.
    // The first thread's arena: 3 MiB of pages, loaded by two threads (page_loads.ts SPLIT_MIN).
    const found = `${members} members, ${nh} nh, ${nr} nr, ${opened} with pages, ${largest} bytes`;
    assert.ok(members >= 60 && nh >= 36 && nr >= 20 && opened >= 17, found);
    assert.ok(largest >= SPLIT_MIN, found);
    await t.kill();
    await restore(dir);
    t.resetAfterRestore();
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, ["areas", "region", "threads"], await t.wait(30000), {
      what: "rt_stack_runs",
    });
  }),
);

/** Bytes of pages a mapping's record holds. */
function pagesOf(m: Mapping): number {
  return m.pages.reduce((a, r) => a + r.length, 0);
}
