/**
 * The image fuzzer, for as many cases as you like:
 *
 *   deno task fuzz --image <dir> [--cases 10000] [--seed 1]
 *
 * `<dir>` is an image whose processes are gone (so a sound plan can pass
 * the pid checks). Each case damages a copy (scripts/fuzz/mutate.ts) and
 * plans its restore (scripts/fuzz/run.ts); it prints the counts, and every
 * case that ended in neither a one-line refusal nor a plan, with its seed
 * and what was done, and exits 1 if there was one.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { copyImage, mutateImage, Rng } from "./fuzz/mutate.ts";
import { tryPlan } from "./fuzz/run.ts";

const { values } = parseArgs({
  options: {
    image: { type: "string" },
    cases: { type: "string", default: "1000" },
    seed: { type: "string", default: "1" },
  },
});
if (!values.image) {
  console.error("usage: deno task fuzz --image <dir> [--cases N] [--seed S]");
  Deno.exit(2);
}
const rng = new Rng(Number(values.seed));
const work = await Deno.makeTempDir({ prefix: "cryo-fuzz-" });
const counts: Record<string, number> = {};
let bugs = 0;
try {
  for (let i = 0; i < Number(values.cases); i++) {
    const dir = `${work}/case`;
    await copyImage(values.image, dir);
    const what = await mutateImage(dir, rng);
    const outcome = what === null ? { kind: "skipped" as const } : await tryPlan(dir);
    counts[outcome.kind] = (counts[outcome.kind] ?? 0) + 1;
    if (outcome.kind === "bug") {
      bugs++;
      console.log(
        `case ${i} (seed ${values.seed}): ${what}\n  ${
          String((outcome.error as Error)?.stack ?? outcome.error)
        }`,
      );
    }
    await Deno.remove(dir, { recursive: true });
  }
} finally {
  await Deno.remove(work, { recursive: true }).catch(() => {});
}
console.log(JSON.stringify(counts));
Deno.exit(bugs ? 1 : 0);
