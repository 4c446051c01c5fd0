/**
 * What `cryo dump` and `cryo restore` load at start-up: the module graph
 * of each command module (`deno info --json`; a literal `import("...")`
 * counts, since Deno reads and prepares its graph too, while an import
 * through a variable specifier does not appear) must not contain the modules made lazy for them (issue 10, "Fixed
 * costs: CLI start-up" in docs/PERFORMANCE.md): rare paths, other commands,
 * zod, cli-progress and node: modules, each of which costs milliseconds of
 * every run.
 */

import assert from "node:assert/strict";
import { BUNDLED_COMMANDS } from "../cli/bundle.ts";
import { FROM_SOURCE, ON_DEMAND, ON_DEMAND_OF } from "../cli/bundle_build.ts";
import { COMMANDS } from "../cli/program.ts";

const ROOT = new URL("../", import.meta.url);

interface InfoModule {
  specifier: string;
  dependencies?: { code?: { specifier: string } }[];
}

/** The modules Deno loads with `entry` (relative to the repository), as repository paths or specifiers. */
async function staticGraph(entry: string): Promise<Set<string>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", new URL(entry, ROOT).pathname],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.ok(out.success, `deno info ${entry}`);
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    roots: string[];
    modules: InfoModule[];
  };
  const deps = new Map(info.modules.map((m) => [
    m.specifier,
    (m.dependencies ?? []).filter((d) => d.code).map((d) => d.code!.specifier),
  ]));
  const seen = new Set<string>();
  const todo = [...info.roots];
  while (todo.length) {
    const s = todo.pop()!;
    if (seen.has(s)) continue;
    seen.add(s);
    todo.push(...(deps.get(s) ?? []));
  }
  return new Set([...seen].map((s) => s.replace(ROOT.href, "")));
}

/** The entries of `graph` that start with one of `prefixes`. */
function loaded(graph: Set<string>, prefixes: readonly string[]): string[] {
  return [...graph].filter((m) => prefixes.some((p) => m.startsWith(p)));
}

/** What neither dump nor restore may load at start-up. */
const NEVER = [
  "npm:zod",
  "npm:cli-progress",
  "npm:cli-table3",
  "node:path",
  "node:crypto",
  "node:buffer",
  "node:fs",
  "engine/pidns/mod.ts",
  "engine/pidns/extras.ts",
  "engine/memory/lazy_serve.ts",
  "engine/migrate/",
  "engine/policy/",
  "engine/inspect.ts",
  "cli/progress_bar.ts",
  "cli/show.ts",
  "cli/migrate.ts",
  "cli/receive.ts",
  "cli/run.ts",
  "cli/table.ts",
];

Deno.test("cli start-up: cli.ts loads neither commander nor a command before --version", async () => {
  const g = await staticGraph("cli.ts");
  const engine = loaded(g, ["engine/"]).filter((m) => m !== "engine/version.ts");
  assert.deepEqual([...loaded(g, ["cli/program.ts", "npm:", "cli/dump.ts"]), ...engine], []);
});

Deno.test("cli start-up: the program loads no command module until one runs", async () => {
  const g = await staticGraph("cli/program.ts");
  const commands = [...g].filter((m) => m.startsWith("cli/") && m !== "cli/program.ts");
  const allowed = ["cli/errors.ts", "cli/quick.ts", "cli/commander_lib.ts"];
  assert.deepEqual(commands.filter((m) => !allowed.includes(m)), []);
  const small = ["engine/version.ts", "engine/modules.ts"];
  assert.deepEqual(loaded(g, ["engine/"]).filter((m) => !small.includes(m)), []);
  // engine/modules.ts (importModule) stays a leaf: it is in every graph.
  assert.deepEqual([...await staticGraph("engine/modules.ts")], ["engine/modules.ts"]);
});

Deno.test("cli start-up: a bundle carries neither commander nor any node: module", async () => {
  // Either loads Deno's Node compatibility layer: ~50 to 60 ms of CPU at every start
  // (issue 10, second pass). commander is imported on demand (cli/commander_lib.ts).
  for (const command of Object.values(BUNDLED_COMMANDS)) {
    for (const entry of ["cli/program.ts", command, ...ON_DEMAND]) {
      const g = await staticGraph(entry);
      assert.deepEqual(loaded(g, ["npm:", "node:", "jsr:"]), [], entry);
    }
  }
});

Deno.test("cli start-up: cli.ts loads the start-up bundle's loader alone", async () => {
  assert.deepEqual([...await staticGraph("cli/bundle.ts")], ["cli/bundle.ts"]);
});

Deno.test("cli start-up: modules a bundle leaves to their source import no module of cryo", async () => {
  for (const path of FROM_SOURCE) {
    const g = await staticGraph(path);
    assert.deepEqual(loaded(g, ["engine/", "cli/", "ffi/"]), [path], path);
  }
});

Deno.test("cli start-up: every module loaded on demand is carried by the bundles or left to its source", async () => {
  const known = new Set([
    ...ON_DEMAND,
    ...FROM_SOURCE,
    ...Object.values(BUNDLED_COMMANDS),
    ...COMMANDS.map((c) => `cli/${c.name.replace("-", "_")}.ts`),
  ]);
  const named: string[] = [];
  for (const dir of ["engine", "cli"]) {
    for await (const f of walkTs(new URL(`${dir}/`, ROOT))) {
      const text = await Deno.readTextFile(f);
      if (!/\bimportModule\b|\bloadCommand\(/.test(text)) continue;
      if (/\/(engine\/modules|cli\/bundle(_build)?)\.ts$/.test(f.pathname)) continue; // the mechanism
      // Repository paths in the module, but for scripts started with sourceURL().
      const paths = text.replace(/sourceURL\("[^"]*"\)/g, "")
        .matchAll(/"((?:engine|cli|ffi)\/[\w/.-]+\.ts)"/g);
      named.push(...[...paths].map((m) => m[1]));
    }
  }
  assert.ok(named.includes("engine/pidns/mod.ts") && named.includes("cli/dump.ts"));
  assert.deepEqual(named.filter((p) => !known.has(p)), []);
});

Deno.test("cli start-up: each bundle carries every module its own graph loads on demand", async () => {
  assert.deepEqual([...new Set(Object.values(ON_DEMAND_OF).flat())].sort(), [...ON_DEMAND].sort());
  assert.deepEqual(Object.keys(ON_DEMAND_OF).sort(), Object.keys(BUNDLED_COMMANDS).sort());
  for (const [name, command] of Object.entries(BUNDLED_COMMANDS)) {
    const carried = ON_DEMAND_OF[name];
    const graph = new Set<string>();
    for (const entry of ["cli/program.ts", command, ...carried]) {
      for (const m of await staticGraph(entry)) graph.add(m);
    }
    const asked: string[] = [];
    for (const m of graph) {
      // program.ts names every command; a bundle runs only its own (cli/bundle.ts loadBundle).
      if (!/^(engine|cli)\//.test(m) || m === "cli/program.ts") continue;
      if (m === "engine/modules.ts" || m === "cli/bundle.ts") continue;
      const text = Deno.readTextFileSync(new URL(m, ROOT));
      if (!/\bimportModule\b/.test(text)) continue;
      const paths = text.replace(/sourceURL\("[^"]*"\)/g, "")
        .matchAll(/"((?:engine|cli|ffi)\/[\w/.-]+\.ts)"/g);
      asked.push(...[...paths].map((p) => p[1]));
    }
    assert.ok(asked.includes("engine/pidns/mod.ts"), name);
    const known = new Set([...carried, ...FROM_SOURCE, command]);
    assert.deepEqual(asked.filter((p) => !known.has(p)), [], name);
  }
});

/** The .ts files under `dir`, recursively. */
async function* walkTs(dir: URL): AsyncGenerator<URL> {
  for await (const e of Deno.readDir(dir)) {
    const u = new URL(e.isDirectory ? `${e.name}/` : e.name, dir);
    if (e.isDirectory) yield* walkTs(u);
    else if (e.name.endsWith(".ts")) yield u;
  }
}

Deno.test("cli start-up: dump loads neither the restore engine nor rare paths", async () => {
  const g = await staticGraph("cli/dump.ts");
  assert.ok(g.has("engine/dump/mod.ts"));
  assert.deepEqual(loaded(g, [...NEVER, "engine/restore/mod.ts", "cli/restore.ts"]), []);
});

Deno.test("cli start-up: restore loads neither the dump engine nor rare paths", async () => {
  const g = await staticGraph("cli/restore.ts");
  assert.ok(g.has("engine/restore/mod.ts"));
  const dumpOnly = ["engine/dump/mod.ts", "cli/dump.ts", "engine/image/chain.ts"];
  assert.deepEqual(loaded(g, [...NEVER, ...dumpOnly]), []);
});
