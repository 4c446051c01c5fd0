/**
 * `deno run -A scripts/bench/plan_steps.ts <image dir> [--rounds N] [--base <tree>]`:
 * the restore plan's three steps timed cold, each round in a fresh process
 * (as a `cryo restore` runs them once): the image read and its structure
 * checked (`verifyImageDir` without checksums: the notes' decode, the
 * mapping rows among them), `validateImage`, and `compileTree` (every
 * restore program), through `planRestore`'s step callback. Times are CPU:
 * cryo's main thread (CLOCK_THREAD_CPUTIME_ID) per step and in all, and the
 * whole process (CLOCK_PROCESS_CPUTIME_ID: V8's compiles and collector
 * threads too), in ms. With `--base`, the rounds alternate between that
 * tree (another worktree, "A") and this one ("B"), the same image each time.
 * Prints the medians per tree as JSON, and each round's figures with
 * `--each`.
 *
 * @module
 */

const CHILD = "--child";

/** One round's figures, ms: read, validate, compile, the main thread in all, the process. */
type Round = [number, number, number, number, number];

if (Deno.args[0] === CHILD) {
  // A fresh process: the tree's own engine, timed by its own clock.
  const [, tree, dir] = Deno.args;
  const clock: typeof import("../../ffi/clock.ts") = await import(`${tree}/ffi/clock.ts`);
  const mod: typeof import("../../engine/restore/mod.ts") = await import(
    `${tree}/engine/restore/mod.ts`
  );
  const ms = (id: number) => Number(clock.clockNowNs(id)) / 1e6;
  const THREAD = 3, PROCESS = 2;
  const marks: number[] = [];
  const c0 = ms(THREAD), p0 = ms(PROCESS);
  await mod.planRestore(dir, { verifyChecksums: false }, () => marks.push(ms(THREAD)));
  const c1 = ms(THREAD), p1 = ms(PROCESS);
  const round: Round = [marks[0] - c0, marks[1] - marks[0], marks[2] - marks[1], c1 - c0, p1 - p0];
  console.log(JSON.stringify(round));
  Deno.exit(0);
}

const args = [...Deno.args];
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i < 0 ? undefined : args.splice(i, 2)[1];
};
const rounds = Number(flag("--rounds") ?? 10);
const base = flag("--base");
const each = args.includes("--each");
const dir = args.find((a) => !a.startsWith("--"));
if (!dir || !(rounds > 0)) {
  console.error("usage: plan_steps.ts <image dir> [--rounds N] [--base <tree>] [--each]");
  Deno.exit(2);
}
const here = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const trees: [string, string][] = base ? [["A", base], ["B", here]] : [["B", here]];
const figures = new Map<string, Round[]>(trees.map(([name]) => [name, []]));
const self = new URL(import.meta.url).pathname;

for (let r = 0; r < rounds; r++) {
  for (const [name, tree] of trees) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", self, CHILD, tree, dir],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
    if (!out.success || !text.startsWith("[")) {
      console.error(`${name} round ${r} failed: ${new TextDecoder().decode(out.stderr)}`);
      Deno.exit(1);
    }
    const round = JSON.parse(text) as Round;
    figures.get(name)!.push(round);
    if (each) console.log(name, round.map((x) => x.toFixed(2)).join(" "));
  }
}

/** The median of `xs`. */
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const keys = ["read", "validate", "compile", "mainThread", "process"] as const;
const result: Record<string, unknown> = { dir, rounds };
for (const [name, tree] of trees) {
  const rs = figures.get(name)!;
  result[name] = {
    tree,
    ...Object.fromEntries(
      keys.map((k, i) => [k, Math.round(median(rs.map((x) => x[i])) * 100) / 100]),
    ),
  };
}
console.log(JSON.stringify(result, null, 1));
