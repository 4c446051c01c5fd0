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
import { anonRunLength, keptApart } from "../engine/restore/anon_runs.ts";
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
      let runs = 0, members = 0, apart = 0;
      for (let i = 0; i < mappings.length; i++) {
        if (i > 0 && keptApart(mappings[i - 1], mappings[i])) apart++;
        const n = anonRunLength(mappings, i);
        if (n === 0) continue;
        runs++;
        members += n;
        i += n - 1;
      }
      assert.ok(runs >= 10 && members >= 40 && apart >= 5, `${runs} runs, ${members}, ${apart}`);
      await t.kill();
      await restore(dir);
      t.resetAfterRestore();
      await Deno.writeTextFile(trigger, "");
      assertChecksPassed(t, ["areas", "content"], await t.wait(30000), { what: "rt_anon_runs" });
    }),
  );
}
