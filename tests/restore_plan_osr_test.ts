/**
 * The restore's plan of an image of 8,000 mappings runs no loop of its own
 * over them (issue 10, nineteenth pass, branch restmaps): a loop of 8,000
 * rounds run once is compiled by V8 for on-stack replacement while it runs,
 * on its workers, twice, for nothing (engine/find_from.ts). The plan is made
 * in a fresh process with V8's `--trace-osr`, which must name no function;
 * then the image is restored and the target checks its own lines, VmFlags,
 * content, guard page and locks (tests/targets/rt_maps_run.c).
 *
 * @module
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { assertChecksPassed } from "./helpers/checks.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

const READY = /^ready pid=(\d+) start=0x([0-9a-f]+) count=(\d+)$/m;
const CHECKS = ["lines", "vmflags", "content", "guard", "vmlck"];
const COUNT = 8000;

/** The functions V8 started an on-stack compile of while `planRestore(dir)` ran in a fresh process. */
async function osrCompiledInPlan(dir: string): Promise<string[]> {
  const mod = new URL("../engine/restore/mod.ts", import.meta.url).href;
  const code = `const { planRestore } = await import(${JSON.stringify(mod)});
await planRestore(${JSON.stringify(dir)}, { verifyChecksums: false });
console.log("planned");`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--v8-flags=--trace-osr", code],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.ok(out.success && text.includes("planned"), new TextDecoder().decode(out.stderr));
  // Deno's own start-up may compile one of its loops so: only cryo's functions count.
  const names = [...text.matchAll(/OSR - compilation started\. function: ([^,]+)/g)].map((m) =>
    m[1]
  );
  return names.filter((name) => cryoSource().includes(name));
}

/** The text of every module under engine/ and ffi/. */
function cryoSource(): string {
  const root = new URL("..", import.meta.url).pathname;
  const texts: string[] = [];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(dir)) {
      if (e.isDirectory) walk(`${dir}/${e.name}`);
      else if (e.name.endsWith(".ts")) texts.push(Deno.readTextFileSync(`${dir}/${e.name}`));
    }
  };
  for (const top of ["engine", "ffi"]) walk(`${root}${top}`);
  return texts.join("\n");
}

Deno.test(
  "the plan of 8,000 mappings: no function compiled on-stack, and the target comes back whole",
  withTargets(async () => {
    const { t, trigger } = await startTriggered("rt_maps_run", READY, {
      extra: [String(COUNT)],
    });
    const dir = await tempImageDir();
    const dump = await checkpoint(t.pid, { dir });
    await t.wait();
    assert.ok(dump.stats.mappings >= COUNT, `${dump.stats.mappings} mappings`);
    assert.deepEqual(await osrCompiledInPlan(dir), [], "loops compiled on-stack in the plan");
    await restore(dir);
    t.resetAfterRestore();
    await Deno.writeTextFile(trigger, "");
    assertChecksPassed(t, CHECKS, await t.wait(30000), { what: "rt_maps_run" });
  }),
);
