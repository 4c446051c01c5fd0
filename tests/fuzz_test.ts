/**
 * Hostile images (seeded, reproducible): a few hundred damaged copies of
 * real images — random bits, truncations, and structure-aware changes to
 * manifests and process descriptions with checksums recomputed — must each
 * end in a one-line refusal or in a plan as good as the original's; never
 * another exception or a hang. `deno task fuzz` runs as many as you like.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { copyImage, mutateImage, Rng } from "../scripts/fuzz/mutate.ts";
import { tryPlan } from "../scripts/fuzz/run.ts";
import { tempDir } from "./helpers/fs.ts";
import { tempImageDir } from "./helpers/roundtrip.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";

const CASES_PER_IMAGE = 150;
const CASE_TIMEOUT_MS = 20_000;

async function fuzzImage(base: string, seed: number): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const bugs: string[] = [];
  const work = await tempDir("cryo-fuzz-");
  const rng = new Rng(seed);
  for (let i = 0; i < CASES_PER_IMAGE; i++) {
    const dir = `${work}/case-${i}`;
    await copyImage(base, dir);
    const what = await mutateImage(dir, rng);
    if (what === null) {
      counts.set("skipped", (counts.get("skipped") ?? 0) + 1);
      await Deno.remove(dir, { recursive: true });
      continue;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      tryPlan(dir),
      new Promise<{ kind: "hang" }>((r) =>
        timer = setTimeout(() => r({ kind: "hang" }), CASE_TIMEOUT_MS)
      ),
    ]);
    clearTimeout(timer);
    counts.set(outcome.kind, (counts.get(outcome.kind) ?? 0) + 1);
    if (outcome.kind === "bug" || outcome.kind === "hang") {
      const err = outcome.kind === "bug"
        ? String((outcome.error as Error)?.stack ?? outcome.error)
        : "hang";
      bugs.push(`seed ${seed} case ${i} (${what}): ${err.split("\n").slice(0, 3).join(" | ")}`);
    }
    await Deno.remove(dir, { recursive: true });
  }
  assert.deepEqual(bugs, [], `${bugs.length} cases ended in neither a refusal nor a plan`);
  return counts;
}

Deno.test(
  "fuzz: damaged images of a sleeping process end in a one-line refusal or a sound plan",
  withTargets(async () => {
    const t = await startTarget("sleeper", ["600"]);
    await t.waitFor(/^ready pid=/m);
    const base = await tempImageDir();
    await checkpoint(t.pid, { dir: base });
    await t.wait();
    const counts = await fuzzImage(base, 0xc0ffee);
    assert.ok((counts.get("refused") ?? 0) > CASES_PER_IMAGE / 2, JSON.stringify([...counts]));
  }),
);

Deno.test(
  "fuzz: damaged images with fds, deleted files and a memfd end in a refusal or a sound plan",
  withTargets(async () => {
    const work = await tempDir("cryo-fuzz-ghost-");
    const t = await startTarget("rt_ghost", [work]);
    await t.waitFor(/^ready pid=/m);
    const base = await tempImageDir();
    await checkpoint(t.pid, { dir: base });
    await t.wait();
    const counts = await fuzzImage(base, 0xbadf00d);
    assert.ok((counts.get("refused") ?? 0) > CASES_PER_IMAGE / 2, JSON.stringify([...counts]));
  }),
);
