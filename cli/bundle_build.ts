/**
 * Building the start-up bundle of `cryo dump` and `cryo restore` (see
 * cli/bundle.ts, which loads this module only when a command finds its
 * bundle missing or stale): `deno info` for the files whose code it holds,
 * `deno bundle`, the eager rewrite (cli/bundle_eager.ts), the manifest.
 *
 * @module
 */

import {
  BUNDLED_COMMANDS,
  FORMAT,
  type Manifest,
  ownedByUs,
  ROOT,
  ROOT_PATH,
  sameStamps,
  stamp,
} from "./bundle.ts";

/** A file must be this much older than the stat that records it (see the module doc). */
export const SETTLE_MS = 2000;

/** Modules loaded on demand (engine/modules.ts `importModule`) that a bundle may carry ({@link ON_DEMAND_OF}). */
export const ON_DEMAND: readonly string[] = [
  "engine/pidns/mod.ts",
  "engine/pidns/extras.ts",
  "engine/image/chain.ts",
  "engine/memory/lazy_serve.ts",
];

/**
 * The modules of {@link ON_DEMAND} each command's bundle carries: those its
 * own graph may ask for (tests/cli_startup_test.ts checks every
 * `importModule` of a bundle's graph against it). A dump never serves a lazy
 * restore nor flattens a chain, so its bundle goes without those (~37 KB).
 */
export const ON_DEMAND_OF: Readonly<Record<string, readonly string[]>> = {
  dump: ["engine/pidns/mod.ts", "engine/pidns/extras.ts"],
  restore: ON_DEMAND,
};

/**
 * Modules loaded on demand that a bundle leaves to be loaded from their
 * source: each imports no module of cryo (tests/cli_startup_test.ts checks),
 * so none is then evaluated twice, and carrying it would cost every start
 * (cli-progress: ~20 ms).
 */
export const FROM_SOURCE: readonly string[] = ["cli/progress_bar.ts"];

/**
 * The functions each command's typical runs call (scripts/bundle_hot.ts
 * writes it): only those are made eager in its bundle (cli/bundle_eager.ts).
 */
const HOT_FILE = "cli/bundle_hot.json";

/** The hot functions of `command` (a set of names), or undefined (then every function is made eager). */
function hotFunctions(command: string): Set<string> | undefined {
  try {
    const all = JSON.parse(Deno.readTextFileSync(ROOT_PATH + HOT_FILE));
    const names = all?.[command];
    return Array.isArray(names) ? new Set(names.map(String)) : undefined;
  } catch {
    return undefined;
  }
}

/** Files that decide what a bundle holds without being in its module graph. */
const ALSO_TRACKED = [
  "deno.json",
  "deno.lock",
  "cli/bundle.ts",
  "cli/bundle_build.ts",
  "cli/bundle_eager.ts",
  HOT_FILE,
];

/**
 * The bundle's rewrite (cli/bundle_eager.ts), loaded only by a build:
 * every command imports this module, and most never build.
 */
const EAGER_MODULE = "./bundle_eager.ts";

async function hex(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The entry module of a command's bundle: every module it carries, registered by path. */
export function entrySource(command: string): string {
  const paths = ["cli/program.ts", BUNDLED_COMMANDS[command], ...ON_DEMAND_OF[command]];
  const url = (p: string) => JSON.stringify(new URL(p, ROOT).href);
  return [
    `import { installBundle } from ${url("engine/modules.ts")};`,
    ...paths.map((p, i) => `import * as m${i} from ${url(p)};`),
    `installBundle(${JSON.stringify(ROOT.href)}, new Map<string, unknown>([`,
    ...paths.map((p, i) => `  [${JSON.stringify(p)}, m${i}],`),
    `]), ${JSON.stringify(FROM_SOURCE)});`,
    `export const main = m0.main;`,
    ``,
  ].join("\n");
}

/** How long a `deno info` or `deno bundle` may take before the command runs from source. */
const BUILD_TIMEOUT_MS = 120_000;

/** Runs `deno <args>`: its stdout, or undefined if it failed or took too long. */
async function run(args: string[]): Promise<string | undefined> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
    env: { NO_COLOR: "1" },
    signal: AbortSignal.timeout(BUILD_TIMEOUT_MS),
  }).output();
  return out.success ? new TextDecoder().decode(out.stdout) : undefined;
}

/** What `deno info --json` says of one module. */
interface InfoModule {
  specifier: string;
  dependencies?: { code?: { specifier?: string }; type?: unknown }[];
}

/**
 * The local files whose code `entry` runs (relative to the root; undefined
 * if any is outside it): the modules reachable from `entry` through
 * imports of code. A module imported only for its types (`import type`,
 * `typeof import(...)`) is erased from the bundle, so it is not a key of
 * it: an edit that makes its code matter changes the importing file, which
 * is one. An import that names code but uses only types (`import { T }`)
 * still counts.
 */
export function codeFiles(
  modules: readonly InfoModule[],
  entry: string,
  root: string,
): string[] | undefined {
  const byUrl = new Map(modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>([entry]);
  const queue = [entry];
  while (queue.length > 0) {
    for (const dep of byUrl.get(queue.pop()!)?.dependencies ?? []) {
      const next = dep.code?.specifier;
      if (next === undefined || seen.has(next) || !next.startsWith("file:")) continue;
      seen.add(next);
      queue.push(next);
    }
  }
  seen.delete(entry);
  const files: string[] = [];
  for (const url of seen) {
    if (!url.startsWith(root)) return undefined;
    files.push(decodeURIComponent(url.slice(root.length)));
  }
  return files;
}

/** The local files of `entry`'s bundle ({@link codeFiles}), relative to the root. */
async function graphFiles(entry: string, config: string[]): Promise<string[] | undefined> {
  const text = await run(["info", "--json", ...config, entry]);
  if (text === undefined) return undefined;
  const info = JSON.parse(text) as { modules: InfoModule[] };
  return codeFiles(info.modules, new URL(`file://${entry}`).href, ROOT.href);
}

/**
 * True when `code` (a bundle) never means the bundle file where its source
 * meant its own file: the only `import.meta` outside comments are
 * engine/modules.ts's fallback (which a bundle does not reach) and the
 * `require` of bundled CommonJS packages, which must load only `node:`
 * modules.
 */
export function selfContained(code: string): boolean {
  const allowed = [
    'bundled()?.root ?? new URL("../", import.meta.url)',
    "var __require = __deno_internal_createRequire(import.meta.url);",
  ];
  for (const line of code.split("\n")) {
    if (!line.includes("import.meta")) continue;
    const t = line.trim();
    if (t.startsWith("*") || t.startsWith("//")) continue;
    if (!allowed.some((a) => t.includes(a))) return false;
  }
  const required = [...code.matchAll(/__require\(([^)]*)\)/g)].map((m) => m[1]);
  return required.every((r) => /^"node:[a-z_/]+"$/.test(r));
}

/**
 * Creates the lock file of a build; false if another build holds it (one
 * older than two build time-outs is taken over: its builder is gone).
 */
function takeLock(lock: string): boolean {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      Deno.writeTextFileSync(lock, `${Deno.pid}\n`, { createNew: true, mode: 0o600 });
      return true;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) return false;
      const age = Date.now() - (Deno.statSync(lock).mtime?.getTime() ?? 0);
      if (age < 2 * BUILD_TIMEOUT_MS) return false;
      Deno.removeSync(lock);
    }
  }
  return false;
}

/** The flags that make `deno info` and `deno bundle` use cryo's config and lock file. */
export function configArgs(): string[] {
  return [
    "--config",
    new URL("deno.json", ROOT).pathname,
    "--lock",
    new URL("deno.lock", ROOT).pathname,
    "--frozen-lockfile",
  ];
}

/** The arguments of `deno` that bundle `entry` into `out` the way a start-up bundle is built. */
export function bundleArgs(config: readonly string[], out: string, entry: string): string[] {
  return ["bundle", "--quiet", "--platform", "deno", ...config, "-o", out, entry];
}

/** Builds the bundle of `command` into `dir`; its path, or undefined when it cannot be trusted. */
export async function build(
  command: string,
  dir: string,
  key: string,
): Promise<string | undefined> {
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!ownedByUs(dir)) return undefined;
  const lock = `${dir}/${key}.lock`;
  if (!takeLock(lock)) return undefined; // another cryo is building it: run from source
  const tmp = `${dir}/${key}.${Deno.pid}.${Date.now()}`;
  const entry = `${tmp}.entry.ts`;
  const out = `${tmp}.js`;
  try {
    Deno.writeTextFileSync(entry, entrySource(command));
    const config = configArgs();
    const graph = await graphFiles(entry, config);
    if (!graph) return undefined;
    const paths = [...new Set([...graph, ...ALSO_TRACKED])].sort();
    const now = Date.now();
    const before = paths.map(stamp);
    if (before.some((s) => s[3] > now - SETTLE_MS || s[4] > now - SETTLE_MS)) return undefined;
    const bundled = await run(bundleArgs(config, out, entry));
    if (bundled === undefined) return undefined;
    const code = Deno.readTextFileSync(out);
    if (!selfContained(code)) return undefined;
    const { eagerFunctions }: typeof import("./bundle_eager.ts") = await import(EAGER_MODULE);
    const eager = eagerFunctions(code, hotFunctions(command));
    Deno.writeTextFileSync(out, eager);
    if (!sameStamps(before, paths.map(stamp))) return undefined;
    const name = `${key}-${(await hex(eager)).slice(0, 16)}.js`;
    Deno.chmodSync(out, 0o644);
    Deno.renameSync(out, `${dir}/${name}`);
    const manifest: Manifest = {
      format: FORMAT,
      deno: Deno.version.deno,
      root: ROOT.href,
      bundle: name,
      files: before,
    };
    Deno.writeTextFileSync(`${tmp}.json`, JSON.stringify(manifest));
    Deno.chmodSync(`${tmp}.json`, 0o644);
    Deno.renameSync(`${tmp}.json`, `${dir}/${key}.json`);
    for (const e of Deno.readDirSync(dir)) {
      if (e.name.startsWith(`${key}-`) && e.name !== name) Deno.removeSync(`${dir}/${e.name}`);
    }
    pruneOthers(dir, command, key);
    return `${dir}/${name}`;
  } finally {
    for (const f of [entry, out, `${tmp}.json`, lock]) {
      try {
        Deno.removeSync(f);
      } catch { /* gone already */ }
    }
  }
}

/**
 * Bundles of one command kept besides the one just built: its other keys
 * (other source roots, such as other git worktrees, or other Deno versions)
 * beyond these, the least recently built first, are removed by the next build.
 */
export const KEEP_OTHERS = 16;

/** A cache entry of another key of the command: its files and when it was last built. */
interface Entry {
  key: string;
  files: string[];
  /** Newest mtime of its files (ms). */
  built: number;
  /** The source root its manifest names, if it has a readable one. */
  root?: string;
}

/**
 * After a build of `key`: removes the command's bundles and manifests of
 * other keys beyond the newest {@link KEEP_OTHERS}, and those whose source
 * root is gone (no start can use them again), and the leftovers of builds
 * that died (their temporary files, older than two build time-outs).
 * Only regular files of this user that nobody else may write are
 * touched, by name (lstat: a symbolic link is left alone, never followed);
 * lock files are left to their builders. A manifest goes before its bundle
 * (a start that reads the manifest then finds the bundle gone builds it
 * again). A start that checked a bundle and has not imported it yet when
 * it goes runs from source (cli/bundle.ts `importBundle`); once imported,
 * a bundle's file is not read again. Never throws.
 */
export function pruneOthers(dir: string, command: string, key: string, now = Date.now()): void {
  const manifest = new RegExp(`^(${command}-[0-9a-f]{8})\\.json$`);
  const bundle = new RegExp(`^(${command}-[0-9a-f]{8})-[0-9a-f]{16}\\.js$`);
  const leftover = new RegExp(
    `^${command}-[0-9a-f]{8}\\.\\d+\\.\\d+(\\.json|\\.js|\\.entry\\.ts)$`,
  );
  const ours = (name: string): Deno.FileInfo | undefined => {
    try {
      const st = Deno.lstatSync(`${dir}/${name}`);
      const mode = st.mode ?? 0o777;
      return st.isFile && st.uid === Deno.uid() && (mode & 0o022) === 0 ? st : undefined;
    } catch {
      return undefined;
    }
  };
  const remove = (name: string) => {
    try {
      Deno.removeSync(`${dir}/${name}`);
    } catch { /* gone already (another build pruned it) */ }
  };
  const entries = new Map<string, Entry>();
  let names: string[];
  try {
    names = [...Deno.readDirSync(dir)].map((e) => e.name);
  } catch {
    return;
  }
  for (const name of names) {
    const k = manifest.exec(name)?.[1] ?? bundle.exec(name)?.[1];
    if (k === undefined) {
      if (leftover.test(name)) {
        const st = ours(name);
        if (st && now - (st.mtime?.getTime() ?? now) > 2 * BUILD_TIMEOUT_MS) remove(name);
      }
      continue;
    }
    if (k === key) continue;
    const st = ours(name);
    if (!st) continue;
    const e = entries.get(k) ?? { key: k, files: [], built: 0 };
    e.files.push(name);
    e.built = Math.max(e.built, st.mtime?.getTime() ?? 0);
    if (name.endsWith(".json")) {
      try {
        const root = JSON.parse(Deno.readTextFileSync(`${dir}/${name}`))?.root;
        if (typeof root === "string") e.root = root;
      } catch { /* unreadable: counted, kept while among the newest */ }
    }
    entries.set(k, e);
  }
  const rootGone = (root: string | undefined): boolean => {
    if (root === undefined || !root.startsWith("file:///")) return false;
    try {
      Deno.statSync(new URL(root));
      return false;
    } catch (e) {
      return e instanceof Deno.errors.NotFound;
    }
  };
  const drop = (e: Entry) => {
    // The manifest first: a start that reads it after finds no bundle, builds its own.
    e.files.sort((a, b) => (a.endsWith(".json") ? -1 : b.endsWith(".json") ? 1 : 0));
    for (const f of e.files) remove(f);
  };
  const live: Entry[] = [];
  for (const e of entries.values()) rootGone(e.root) ? drop(e) : live.push(e);
  live.sort((a, b) => b.built - a.built).slice(KEEP_OTHERS).forEach(drop);
}
