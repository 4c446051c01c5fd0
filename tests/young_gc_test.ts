/**
 * engine/dump/young_gc.ts: the scavenge made to happen before the freeze of
 * a process of many mappings.
 *
 * - `scavengeNow` makes V8 collect its young generation each time it says
 *   it did: a child `deno` run with `--trace-gc` prints one more
 *   "Scavenge" line per call at least (counted against a run without the
 *   calls);
 * - a dump of rt_maps with 2,500 mappings runs it before its freeze; one of
 *   300 mappings does not.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { YOUNG_GC_MIN_MAPPINGS, youngGcStats } from "../engine/dump/young_gc.ts";
import { startRtMaps } from "./helpers/vmflags_mode.ts";
import { withTargets } from "./helpers/targets.ts";
import { tempDir } from "./helpers/fs.ts";

const CALLS = 6;

/** Scavenge lines of a child that keeps 20,000 objects live and calls scavengeNow `calls` times. */
async function scavengesOf(calls: number): Promise<{ lines: number; said: boolean[] }> {
  const module = new URL("../engine/dump/young_gc.ts", import.meta.url).href;
  const script = `
    import { scavengeNow } from ${JSON.stringify(module)};
    const live = [];
    for (let i = 0; i < 20000; i++) live.push({ i, s: "x" + i });
    const said = [];
    for (let k = 0; k < ${calls}; k++) said.push(scavengeNow());
    console.log("SAID " + JSON.stringify(said) + " " + live.length);
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--trace-gc", "-"],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const w = out.stdin.getWriter();
  await w.write(new TextEncoder().encode(script));
  await w.close();
  const { code, stdout } = await out.output();
  assert.equal(code, 0);
  const text = new TextDecoder().decode(stdout);
  const said = JSON.parse(text.match(/^SAID (\[.*\]) 20000$/m)![1]);
  return { lines: text.split("\n").filter((l) => /: Scavenge/.test(l)).length, said };
}

Deno.test("young gc: scavengeNow collects the young generation each time it says so", async () => {
  const none = await scavengesOf(0);
  const some = await scavengesOf(CALLS);
  assert.deepEqual(some.said, Array(CALLS).fill(true), "each call saw its collection");
  assert.ok(
    some.lines - none.lines >= CALLS,
    `${some.lines} scavenges with ${CALLS} calls, ${none.lines} without`,
  );
});

Deno.test(
  "young gc: a dump of many mappings collects before its freeze, one of few does not",
  withTargets(async () => {
    const dir = await tempDir("cryo-younggc-");
    for (const [count, runs] of [[YOUNG_GC_MIN_MAPPINGS + 500, 1], [300, 0]]) {
      const { t } = await startRtMaps(count);
      const before = youngGcStats.runs;
      await checkpoint(t.pid, { dir: `${dir}/${count}`, leaveRunning: true, sync: false });
      assert.equal(youngGcStats.runs - before, runs, `${count} mappings`);
    }
  }),
);
