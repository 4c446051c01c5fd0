/**
 * The start-up bundle of `cryo dump` and `cryo restore` (cli/bundle.ts):
 * built on first use into the cache directory, used while every source
 * file of its graph is unchanged, never once one changed (the changed
 * code runs at once, and the bundle is rebuilt from it), and off with
 * CRYO_NO_BUNDLE. Runs on a copy of the sources, whose files it edits.
 *
 * @module
 */

import assert from "node:assert/strict";
import { repoRoot, runCommand } from "./helpers/commands.ts";
import { pathExists, withTempDir } from "./helpers/fs.ts";
import {
  codeFiles,
  FROM_SOURCE,
  KEEP_OTHERS,
  ON_DEMAND,
  ON_DEMAND_OF,
  selfContained,
  SETTLE_MS,
} from "../cli/bundle_build.ts";
import { importBundle } from "../cli/bundle.ts";
import { eagerFunctions } from "../cli/bundle_eager.ts";
import { functionsRun } from "../scripts/bundle_hot.ts";

/** The list of each command's hot functions (scripts/bundle_hot.ts writes it). */
const HOT = "cli/bundle_hot.json";
import { importModule, installBundle, runningBundled, sourceURL } from "../engine/modules.ts";

const MARK = "cryo-test: ran from the bundle";

/** Makes the bundle `path` print {@link MARK}, to show that a run used it. */
function mark(path: string): void {
  Deno.writeTextFileSync(path, `\nconsole.error(${JSON.stringify(MARK)});\n`, { append: true });
}

/** The bundle and manifest files of `command` in `cache`. */
function cached(cache: string, command: string): { js: string[]; json: string[] } {
  const names = [...Deno.readDirSync(cache)].map((e) => e.name).filter((n) =>
    n.startsWith(`${command}-`)
  );
  return {
    js: names.filter((n) => n.endsWith(".js")).sort(),
    json: names.filter((n) => n.endsWith(".json")),
  };
}

/** What the bundle `path` registers: its root, the modules it leaves to source, its modules' exports. */
async function carriedBy(path: string): Promise<{
  root: string;
  fromSource: string[];
  modules: Record<string, string[]>;
}> {
  const probe = await runCommand([
    Deno.execPath(),
    "eval",
    `await import(${JSON.stringify(`file://${path}`)});
const b = globalThis[Symbol.for("cryo.startupBundle")];
const modules = Object.fromEntries([...b.modules].map(([k, v]) => [k, Object.keys(v)]));
console.log(JSON.stringify({ root: b.root, fromSource: b.fromSource, modules }));`,
  ]);
  assert.equal(probe.code, 0, probe.stderr);
  return JSON.parse(probe.stdout);
}

Deno.test("cli bundle: built once, used while the sources are unchanged, never after a change", async () => {
  await withTempDir("cryo-bundle-", async (dir) => {
    const src = `${dir}/src`;
    const cache = `${dir}/cache`;
    Deno.mkdirSync(src);
    for (const f of ["cli.ts", "deno.json", "deno.lock", "cli", "engine", "ffi"]) {
      const r = await runCommand(["cp", "-r", `${repoRoot}${f}`, `${src}/`]);
      assert.equal(r.code, 0, r.stderr);
    }
    const env = { NO_COLOR: "1", CRYO_DEBUG: "0", CRYO_CACHE_DIR: cache };
    const dump = (extra: Record<string, string> = {}) =>
      runCommand([
        Deno.execPath(),
        "run",
        "-A",
        `${src}/cli.ts`,
        "dump",
        "999999",
        "--dir",
        `${dir}/img`,
      ], {
        env: { ...env, ...extra },
      });
    const settle = () => new Promise((r) => setTimeout(r, SETTLE_MS + 200));

    // Files changed within SETTLE_MS are not bundled: the copy runs from source.
    let r = await dump();
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr, "cryo: no process with pid 999999\n");
    assert.equal(cached(cache, "dump").js.length, 0);

    await settle();
    r = await dump();
    assert.equal(r.stderr, "cryo: no process with pid 999999\n");
    const first = cached(cache, "dump");
    assert.equal(first.js.length, 1);
    assert.equal(first.json.length, 1);
    // It carries the program, the command and every module loaded on demand, registered by path.
    const carried = await carriedBy(`${cache}/${first.js[0]}`);
    assert.equal(carried.root, `file://${src}/`);
    assert.deepEqual(carried.fromSource, FROM_SOURCE);
    assert.deepEqual(
      Object.keys(carried.modules).sort(),
      ["cli/dump.ts", "cli/program.ts", ...ON_DEMAND_OF.dump].sort(),
    );
    const has = (path: string, name: string) =>
      assert.ok(carried.modules[path].includes(name), `${path} ${name}`);
    has("cli/program.ts", "main");
    has("cli/dump.ts", "register");
    has("engine/pidns/mod.ts", "checkpointInNamespace");
    has("engine/pidns/mod.ts", "restoreInNamespace");
    has("engine/pidns/extras.ts", "collectNamespaceExtras");
    // Its hot top-level functions are eager (moved up as parenthesised expressions), the
    // others are not.
    const eagerNames = Deno.readTextFileSync(`${cache}/${first.js[0]}`).split("\n")
      .map((l) => /^var ([\w$]+) = \((async )?function\*? \(/.exec(l)?.[1])
      .filter((n) => n !== undefined);
    assert.ok(eagerNames.length > 300, `${eagerNames.length} eager functions`);
    const hotDump = new Set(JSON.parse(Deno.readTextFileSync(`${src}/${HOT}`)).dump);
    for (const n of eagerNames) assert.ok(hotDump.has(n), `${n} is eager but not hot`);
    // Every module the bundle holds is a key of it; type-only imports are not.
    const tracked = new Set(
      (JSON.parse(Deno.readTextFileSync(`${cache}/${first.json[0]}`)).files as [string][])
        .map((f) => f[0]),
    );
    // (Each module's code follows a comment naming it relative to the builder's directory.)
    const held = Deno.readTextFileSync(`${cache}/${first.js[0]}`).split("\n")
      .map((l) => /^\/\/ ([\w/.-]+\.ts)$/.exec(l)?.[1])
      .filter((p) => p !== undefined && !p.endsWith(".entry.ts"))
      .map((p) => new URL(p!, `file://${Deno.cwd()}/`).href)
      .map((u) => u.startsWith(`file://${src}/`) ? u.slice(`file://${src}/`.length) : u);
    assert.ok(held.length > 150, `${held.length} modules`);
    for (const p of held) assert.ok(tracked.has(p), `${p} is not tracked`);
    for (
      const p of [
        "deno.json",
        "deno.lock",
        "cli/bundle.ts",
        "cli/bundle_build.ts",
        "cli/bundle_eager.ts",
        HOT,
      ]
    ) {
      assert.ok(tracked.has(p), p);
    }
    // A marked bundle shows that the next run uses it.
    mark(`${cache}/${first.js[0]}`);
    r = await dump();
    assert.equal(r.stderr, `${MARK}\ncryo: no process with pid 999999\n`);
    r = await dump({ CRYO_NO_BUNDLE: "1" });
    assert.equal(r.stderr, "cryo: no process with pid 999999\n");
    // A bundle others may write is not run (cryo runs as root); it is rebuilt.
    Deno.chmodSync(`${cache}/${first.js[0]}`, 0o666);
    r = await dump();
    assert.equal(r.stderr, "cryo: no process with pid 999999\n");
    const rebuilt = cached(cache, "dump").js;
    assert.equal(rebuilt.length, 1);
    assert.equal(Deno.statSync(`${cache}/${rebuilt[0]}`).mode! & 0o777, 0o644);
    mark(`${cache}/${rebuilt[0]}`);
    r = await dump();
    assert.equal(r.stderr, `${MARK}\ncryo: no process with pid 999999\n`);
    // restore has its own bundle.
    r = await runCommand(
      [Deno.execPath(), "run", "-A", `${src}/cli.ts`, "restore", `${dir}/none`],
      { env },
    );
    assert.equal(r.code, 1);
    assert.equal(cached(cache, "restore").js.length, 1);
    // It carries every module loaded on demand, the dump's none of the restore's alone.
    const restoreCarried = await carriedBy(`${cache}/${cached(cache, "restore").js[0]}`);
    assert.deepEqual(
      Object.keys(restoreCarried.modules).sort(),
      ["cli/program.ts", "cli/restore.ts", ...ON_DEMAND].sort(),
    );
    assert.ok(restoreCarried.modules["engine/image/chain.ts"].includes("flattenForRestore"));
    assert.ok(restoreCarried.modules["engine/memory/lazy_serve.ts"].includes("LazyServer"));
    assert.ok(restoreCarried.modules["engine/pidns/mod.ts"].includes("restoreInNamespace"));
    // The restore graph does not reach the dump's pre-copy modules (engine/memory/own_tracking.ts).
    const restoreFiles = (JSON.parse(
      Deno.readTextFileSync(`${cache}/${cached(cache, "restore").json[0]}`),
    ).files as [string][]).map((f) => f[0]);
    assert.ok(restoreFiles.includes("engine/restore/mod.ts"));
    assert.ok(restoreFiles.includes("engine/memory/own_tracking.ts"));
    for (const p of ["engine/dump/tracking.ts", "engine/dump/precopy.ts", "engine/dump/mod.ts"]) {
      assert.ok(!restoreFiles.includes(p), p);
    }

    // Changing one source file: the next run runs the new code at once (from source) ...
    const mod = `${src}/engine/dump/mod.ts`;
    const text = Deno.readTextFileSync(mod);
    assert.ok(text.includes("`no process with pid ${pid}`"));
    Deno.writeTextFileSync(
      mod,
      text.replace("`no process with pid ${pid}`", "`pid ${pid} is not running`"),
    );
    r = await dump();
    assert.equal(r.stderr, "cryo: pid 999999 is not running\n");
    // ... and once it has settled, from a new bundle built from it.
    await settle();
    r = await dump();
    assert.equal(r.stderr, "cryo: pid 999999 is not running\n");
    const second = cached(cache, "dump");
    assert.equal(second.js.length, 1);
    assert.ok(!second.js.includes(rebuilt[0]));
    assert.ok(Deno.readTextFileSync(`${cache}/${second.js[0]}`).includes("is not running"));
    mark(`${cache}/${second.js[0]}`);
    r = await dump();
    assert.equal(r.stderr, `${MARK}\ncryo: pid 999999 is not running\n`);

    // A file that only decides what is bundled (deno.json) invalidates it too.
    Deno.writeTextFileSync(`${src}/deno.json`, Deno.readTextFileSync(`${src}/deno.json`) + "\n");
    r = await dump();
    assert.equal(r.stderr, "cryo: pid 999999 is not running\n");
    // So does the bundle's rewrite (cli/bundle_eager.ts), once a bundle is in use again.
    await settle();
    r = await dump();
    const third = cached(cache, "dump").js;
    mark(`${cache}/${third[0]}`);
    r = await dump();
    assert.equal(r.stderr, `${MARK}\ncryo: pid 999999 is not running\n`);
    const eagerSrc = `${src}/cli/bundle_eager.ts`;
    Deno.writeTextFileSync(eagerSrc, Deno.readTextFileSync(eagerSrc) + "\n// changed\n");
    r = await dump();
    assert.equal(r.stderr, "cryo: pid 999999 is not running\n");

    // While another cryo builds (its lock file), a run goes from source and builds nothing;
    // a lock left by a builder long gone is taken over.
    await settle();
    const key = cached(cache, "dump").json[0].replace(/\.json$/, "");
    const before = cached(cache, "dump").js;
    Deno.writeTextFileSync(`${cache}/${key}.lock`, "1\n");
    r = await dump();
    assert.equal(r.stderr, "cryo: pid 999999 is not running\n");
    assert.deepEqual(cached(cache, "dump").js, before);
    const old = new Date(Date.now() - 3_600_000);
    Deno.utimeSync(`${cache}/${key}.lock`, old, old);
    r = await dump();
    assert.equal(r.stderr, "cryo: pid 999999 is not running\n");
    const after = cached(cache, "dump").js;
    assert.equal(after.length, 1);
    assert.notDeepEqual(after, before);
    assert.throws(() => Deno.statSync(`${cache}/${key}.lock`), Deno.errors.NotFound);
  });
});

/** Evaluates module `code` (no imports) and returns its `result` export. */
async function evaluate(code: string): Promise<unknown> {
  const url = `data:text/javascript;base64,${btoa(code)}`;
  return (await import(url)).result;
}

Deno.test("cli bundle: eager functions behave as the declarations they replace", async () => {
  const code = [
    "var early = twice(2);",
    "var table = { twice, gen, later };",
    "function twice(x) {",
    "  return 2 * x;",
    "}",
    "",
    "// ../../some/module.ts",
    "function* gen(n) {",
    "  for (let i = 0; i < n; i++) yield i;",
    "}",
    "async function later(x) {",
    "  return await Promise.resolve(x + 1);",
    "}",
    "function fact(n) {",
    "  return n <= 1 ? 1 : n * fact(n - 1);",
    "}",
    "function text() {",
    "  return `one",
    "function fake(a) {",
    "  return a;",
    "}",
    "two`;",
    "}",
    "var doc = `",
    "function alsoFake(b) {",
    "}",
    "`;",
    "function last() { return doc.length; }",
    "var result = {",
    "  early,",
    "  gen: [...table.gen(3)],",
    "  later: await table.later(1),",
    "  fact: fact(5),",
    "  names: [twice.name, gen.name, later.name, fact.name, text.name, last.name],",
    "  text: text(),",
    "  last: last(),",
    "  typeofFake: typeof fake,",
    "};",
    "export { result };",
    "",
  ].join("\n");
  const out = eagerFunctions(code);
  assert.notEqual(out, code);
  for (const name of ["twice", "fact", "last"]) {
    assert.match(out, new RegExp(`^var ${name} = \\(function \\(`, "m"));
  }
  assert.match(out, /^var gen = \(function\* \(/m);
  assert.match(out, /^var later = \(async function \(/m);
  // The lines inside template literals stay where they are, untouched.
  assert.ok(out.includes("`one\nfunction fake(a) {\n  return a;\n}\ntwo`"));
  assert.ok(out.includes("var doc = `\nfunction alsoFake(b) {\n}\n`;"));
  assert.deepEqual(await evaluate(out), await evaluate(code));
  assert.deepEqual(await evaluate(out), {
    early: 4,
    gen: [0, 1, 2],
    later: 2,
    fact: 120,
    names: ["twice", "gen", "later", "fact", "text", "last"],
    text: "one\nfunction fake(a) {\n  return a;\n}\ntwo",
    last: 26,
    typeofFake: "undefined",
  });
  // Nothing that parses as a whole piece: the code is returned as it is.
  const only = "var t = `\nfunction f() {\n}\n`;\nexport { t };\n";
  assert.equal(eagerFunctions(only), only);
});

Deno.test("cli bundle: a declaration holding a multi-line template literal is made eager too", async () => {
  const code = [
    "var early = banner(1);",
    "async function banner(n) {",
    "  const head = `first ${n}",
    "}",
    "function inTemplate() {",
    "last`;",
    "  return head + (await Promise.resolve(`!",
    "`));",
    "}",
    "function after() {",
    "  return 2;",
    "}",
    "var result = { early: await early, name: banner.name, after: after(), ",
    "  late: await banner(3) };",
    "export { result };",
    "",
  ].join("\n");
  const out = eagerFunctions(code);
  assert.match(out, /^var banner = \(async function \(n\) \{$/m);
  assert.match(out, /^var after = \(function \(/m);
  // The template's lines, "}" and a fake declaration included, are untouched.
  assert.ok(out.includes("`first ${n}\n}\nfunction inTemplate() {\nlast`"));
  assert.deepEqual(await evaluate(out), await evaluate(code));
  assert.deepEqual(await evaluate(out), {
    early: "first 1\n}\nfunction inTemplate() {\nlast!\n",
    name: "banner",
    after: 2,
    late: "first 3\n}\nfunction inTemplate() {\nlast!\n",
  });
});

Deno.test("cli bundle: with a list of hot functions, only those are made eager", async () => {
  const code = [
    "var early = [hot(1), cold(2)];",
    "function hot(x) {",
    "  return x + 1;",
    "}",
    "function cold(x) {",
    "  return x + 2;",
    "}",
    "var result = { early, names: [hot.name, cold.name], late: hot(3) + cold(4) };",
    "export { result };",
    "",
  ].join("\n");
  const out = eagerFunctions(code, new Set(["hot", "elsewhere"]));
  assert.match(out, /^var hot = \(function \(/m);
  assert.match(out, /^function cold\(x\) \{$/m);
  assert.deepEqual(await evaluate(out), await evaluate(code));
  assert.equal(eagerFunctions(code, new Set()), code);
  // The committed list names functions of both bundles.
  const hot = JSON.parse(Deno.readTextFileSync(new URL(`../${HOT}`, import.meta.url)));
  assert.ok(hot.dump.includes("checkpoint") && hot.restore.includes("restore"));
});

Deno.test("cli bundle: the functions a V8 log shows running, in one script", () => {
  const log = [
    "script-details,7,file:///b/dump.js,0,0,",
    "script-details,8,file:///other.js,0,0,",
    "function,parse-function,7,10,20,0.1,100,ran",
    "function,first-execution,7,30,40,0,101,alsoRan",
    "function,first-execution-BASELINE,7,30,40,0,101,alsoRan",
    "function,parse,7,50,60,0.1,102,onlyParsed",
    "function,preparse-resolution,7,50,60,0.1,102,onlyParsed",
    "function,first-execution,8,1,2,0,103,elsewhere",
    "function,first-execution,7,1,2,0,104,",
  ].join("\n");
  assert.deepEqual([...functionsRun(log, "file:///b/dump.js")].sort(), ["alsoRan", "ran"]);
});

Deno.test("cli bundle: a bundle that would name itself where its source meant its own file is refused", () => {
  assert.ok(selfContained(`const a = 1;\n// import.meta.url in a comment\n * import.meta.main\n`));
  assert.ok(selfContained(
    `var __require = __deno_internal_createRequire(import.meta.url);\n` +
      `var e = __require("node:events");\n`,
  ));
  assert.ok(!selfContained(`const inner = new URL("./inner.ts", import.meta.url).href;\n`));
  assert.ok(!selfContained(`if (import.meta.main) main();\n`));
  assert.ok(
    !selfContained(
      `var __require = __deno_internal_createRequire(import.meta.url);\n` +
        `var x = __require("./lib/x.js");\n`,
    ),
  );
  assert.ok(!selfContained(`var x = __require(name);\n`));
});

Deno.test("cli bundle: importModule takes the bundle's modules, and refuses one it does not carry", async () => {
  const key = Symbol.for("cryo.startupBundle");
  assert.equal(runningBundled(), false);
  assert.equal(
    sourceURL("engine/pidns/inner.ts"),
    new URL("../engine/pidns/inner.ts", import.meta.url).href,
  );
  const carried = { marker: 1 };
  installBundle("file:///elsewhere/", new Map([["engine/image/chain.ts", carried]]), [
    "engine/version.ts",
  ]);
  try {
    assert.equal(runningBundled(), true);
    assert.equal(sourceURL("engine/pidns/inner.ts"), "file:///elsewhere/engine/pidns/inner.ts");
    assert.equal(await importModule("engine/image/chain.ts"), carried);
    await assert.rejects(importModule("engine/pidns/mod.ts"), /not in cryo's start-up bundle/);
  } finally {
    delete (globalThis as Record<symbol, unknown>)[key];
  }
  assert.equal(runningBundled(), false);
});

Deno.test("cli bundle: the keys of a bundle are the files reached through imports of code", () => {
  const root = "file:///src/";
  const entry = "file:///cache/entry.ts";
  const code = (specifier: string) => ({ code: { specifier } });
  const type = (specifier: string) => ({ type: { specifier } });
  const modules = [
    { specifier: entry, dependencies: [code(`${root}a.ts`)] },
    {
      specifier: `${root}a.ts`,
      dependencies: [code(`${root}b.ts`), type(`${root}t.ts`), code("npm:x@1"), {
        ...code(`${root}c%20d.ts`),
        ...type(`${root}c%20d.ts`),
      }],
    },
    { specifier: `${root}b.ts`, dependencies: [code(`${root}a.ts`), code(`${root}only_b.ts`)] },
    { specifier: `${root}t.ts`, dependencies: [code(`${root}under_t.ts`)] },
    { specifier: `${root}c%20d.ts` },
    { specifier: `${root}only_b.ts` },
    { specifier: `${root}under_t.ts` },
  ];
  assert.deepEqual(codeFiles(modules, entry, root)?.sort(), [
    "a.ts",
    "b.ts",
    "c d.ts",
    "only_b.ts",
  ]);
  // A module of the bundle outside the root: no bundle.
  const outside = [...modules, { specifier: `${root}only_b.ts`, dependencies: [] }];
  outside[2] = { specifier: `${root}b.ts`, dependencies: [code("file:///elsewhere/x.ts")] };
  assert.equal(codeFiles(outside, entry, root), undefined);
});

/** Copies what cryo runs from (cli.ts and its directories) into `src`. */
async function copySources(src: string): Promise<void> {
  Deno.mkdirSync(src);
  for (const f of ["cli.ts", "deno.json", "deno.lock", "cli", "engine", "ffi"]) {
    const r = await runCommand(["cp", "-r", `${repoRoot}${f}`, `${src}/`]);
    assert.equal(r.code, 0, r.stderr);
  }
}

/** Sets the access and modification times of `path` to `minutes` ago. */
function age(path: string, minutes: number): void {
  const t = new Date(Date.now() - minutes * 60_000);
  Deno.utimeSync(path, t, t);
}

Deno.test("cli bundle: a build keeps the command's newest few other bundles; a start that imported a removed one goes on", async () => {
  await withTempDir("cryo-bundle-prune-", async (dir) => {
    const cache = `${dir}/cache`;
    const env = { NO_COLOR: "1", CRYO_DEBUG: "0", CRYO_CACHE_DIR: cache };
    const dump = (src: string) =>
      runCommand(
        [Deno.execPath(), "run", "-A", `${src}/cli.ts`, "dump", "999999", "--dir", `${dir}/img`],
        { env },
      );
    const NO_PID = "cryo: no process with pid 999999\n";
    // The first root builds its bundle.
    const src1 = `${dir}/src1`, src2 = `${dir}/src2`;
    await copySources(src1);
    await copySources(src2);
    await new Promise((r) => setTimeout(r, SETTLE_MS + 200));
    let r = await dump(src1);
    assert.equal(r.stderr, NO_PID);
    const first = cached(cache, "dump");
    assert.equal(first.json.length, 1);
    const firstJs = `${cache}/${first.js[0]}`;

    // Other roots' bundles, as other worktrees leave them: built 10 to 10 + n minutes ago (the
    // oldest last), each root there; one more recent whose root is gone; src1's the oldest.
    const others = KEEP_OTHERS + 3;
    const keys: string[] = [];
    for (let i = 0; i < others; i++) {
      const key = `dump-${(0xa0000000 + i).toString(16)}`;
      const root = `${dir}/root${i}`;
      Deno.mkdirSync(root);
      const bundle = `${key}-${"0123456789abcdef"}.js`;
      Deno.writeTextFileSync(`${cache}/${bundle}`, "export const main = 1;\n", { mode: 0o644 });
      Deno.writeTextFileSync(
        `${cache}/${key}.json`,
        JSON.stringify({
          format: 3,
          deno: Deno.version.deno,
          root: `file://${root}/`,
          bundle,
          files: [],
        }),
        { mode: 0o644 },
      );
      for (const f of [bundle, `${key}.json`]) age(`${cache}/${f}`, 10 + i);
      keys.push(key);
    }
    const goneKey = "dump-b0000000";
    Deno.writeTextFileSync(`${cache}/${goneKey}-0123456789abcdef.js`, "", { mode: 0o644 });
    Deno.writeTextFileSync(
      `${cache}/${goneKey}.json`,
      JSON.stringify({ root: `file://${dir}/gone/`, bundle: `${goneKey}-0123456789abcdef.js` }),
      { mode: 0o644 },
    );
    for (const f of first.js.concat(first.json)) age(`${cache}/${f}`, 60);
    // Not cryo's to remove: a link named as a manifest (to a file outside), a file others may write.
    Deno.writeTextFileSync(`${dir}/outside.json`, "{}");
    Deno.symlinkSync(`${dir}/outside.json`, `${cache}/dump-c0000000.json`);
    Deno.writeTextFileSync(`${cache}/dump-c0000001.json`, "{}");
    Deno.chmodSync(`${cache}/dump-c0000001.json`, 0o666);
    age(`${cache}/dump-c0000001.json`, 120);
    // A dead builder's temporary files (an hour old) go; a running one's stay.
    Deno.writeTextFileSync(`${cache}/dump-c0000002.4242.1700000000000.js`, "", { mode: 0o644 });
    age(`${cache}/dump-c0000002.4242.1700000000000.js`, 60);
    Deno.writeTextFileSync(`${cache}/dump-c0000003.4243.1700000000001.js`, "", { mode: 0o644 });
    Deno.writeTextFileSync(`${cache}/dump-c0000003.lock`, "4243\n", { mode: 0o600 });
    age(`${cache}/dump-c0000003.lock`, 60);
    // The restore's bundles are another command's: untouched.
    Deno.writeTextFileSync(`${cache}/restore-a0000000.json`, "{}", { mode: 0o644 });
    age(`${cache}/restore-a0000000.json`, 600);

    // A cryo that imported src1's bundle before it is removed (it runs it after).
    const holder = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `const p = await import(${JSON.stringify(`file://${firstJs}`)});
console.log("imported");
await new Response(Deno.stdin.readable).text();
Deno.exit(await p.main(["dump", "999999", "--dir", ${JSON.stringify(`${dir}/img`)}]));`,
      ],
      env,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(holder.stderr).text();
    const lines = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
    try {
      assert.equal((await lines.read()).value?.trim(), "imported");
      // The second root's build prunes.
      r = await dump(src2);
      assert.equal(r.stderr, NO_PID);
      assert.ok(!pathExists(firstJs), "src1's bundle removed while the holder runs");
    } finally {
      await holder.stdin.close();
      await lines.cancel();
    }
    assert.equal((await holder.status).code, 1);
    assert.equal(await stderr, NO_PID, "the holder ran the removed bundle's code");

    const now = cached(cache, "dump");
    const kept = now.json.filter((n) => /^dump-[0-9a-f]{8}\.json$/.test(n)).sort();
    // Its own and the newest KEEP_OTHERS others (the gone root's removed though newer).
    const newest = keys.slice(0, KEEP_OTHERS).map((k) => `${k}.json`);
    // (Its own key is a hash of the root's path: it may start with "c" too.)
    const fixtures = ["dump-c0000000.json", "dump-c0000001.json"];
    const own = now.json.filter((n) => !keys.includes(n.slice(0, -5)) && !fixtures.includes(n));
    assert.equal(own.length, 1, JSON.stringify(now));
    assert.deepEqual(kept, [...newest, ...own, ...fixtures].sort());
    for (const k of keys.slice(KEEP_OTHERS)) {
      assert.ok(!now.js.some((n) => n.startsWith(`${k}-`)), `${k}'s bundle removed`);
    }
    for (const k of keys.slice(0, KEEP_OTHERS)) {
      assert.ok(now.js.includes(`${k}-0123456789abcdef.js`), `${k}'s bundle kept`);
    }
    assert.ok(!now.js.some((n) => n.startsWith(goneKey)), "the gone root's bundle removed");
    assert.ok(!now.js.includes(first.js[0]), "src1's bundle removed (the oldest)");
    assert.ok(!now.json.includes(first.json[0]), "src1's manifest removed");
    assert.equal(Deno.readTextFileSync(`${dir}/outside.json`), "{}");
    assert.ok(Deno.lstatSync(`${cache}/dump-c0000000.json`).isSymlink);
    assert.ok(!now.js.includes("dump-c0000002.4242.1700000000000.js"), "a dead build's file");
    assert.ok(now.js.includes("dump-c0000003.4243.1700000000001.js"), "a running build's file");
    assert.ok(Deno.statSync(`${cache}/dump-c0000003.lock`).isFile, "a build's lock");
    assert.ok(Deno.statSync(`${cache}/restore-a0000000.json`).isFile, "the restore's manifest");

    // A start that checked a bundle removed before it imported it runs from source.
    assert.equal(await importBundle(firstJs), undefined);
    // src1 starts again: from source, then builds again.
    r = await dump(src1);
    assert.equal(r.stderr, NO_PID);
  });
});
