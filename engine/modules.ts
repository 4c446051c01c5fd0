/**
 * Where cryo's own modules and scripts are, whether cryo runs from its
 * source files or from the CLI's start-up bundle (cli/bundle.ts).
 *
 * Rarely needed modules are loaded on demand with {@link importModule}
 * (a dynamic import through a variable: Deno would load the whole graph
 * behind a literal `import("...")` with the module that contains it), and
 * scripts that run in another Deno process are named with
 * {@link sourceURL}. Both take a path relative to the repository root, so
 * they mean the same file from any module and from a bundle, whose code
 * all shares one `import.meta.url` (the bundle's). A bundle carries every
 * module it may import this way and registers them with
 * {@link installBundle}: a module is then never evaluated twice (once in
 * the bundle, once from source).
 *
 * @module
 */

/** What a start-up bundle registers: cryo's source root and the modules it carries, by path. */
interface Bundled {
  root: string;
  modules: ReadonlyMap<string, unknown>;
  fromSource: readonly string[];
}

const KEY = Symbol.for("cryo.startupBundle");

function bundled(): Bundled | undefined {
  return (globalThis as Record<symbol, Bundled | undefined>)[KEY];
}

/**
 * Called by a start-up bundle before it runs anything: `root` is the
 * source root (URL ending in `/`), `modules` the modules it carries,
 * `fromSource` the modules it leaves to their source files (they import
 * no module of cryo, so none is evaluated twice).
 */
export function installBundle(
  root: string,
  modules: ReadonlyMap<string, unknown>,
  fromSource: readonly string[],
): void {
  (globalThis as Record<symbol, Bundled | undefined>)[KEY] = { root, modules, fromSource };
}

/** True when cryo runs from a start-up bundle. */
export function runningBundled(): boolean {
  return bundled() !== undefined;
}

/** The URL of cryo's file `path` (relative to the repository root, e.g. `engine/pidns/inner.ts`). */
export function sourceURL(path: string): string {
  return new URL(path, bundled()?.root ?? new URL("../", import.meta.url)).href;
}

/**
 * Imports cryo's module `path` (relative to the repository root) on
 * demand. From a bundle, the bundle's own copy (it must carry it or name it
 * as loaded from source: cli/bundle.ts lists them); otherwise the source file.
 */
export function importModule<T>(path: string): Promise<T> {
  const b = bundled();
  if (!b || b.fromSource.includes(path)) return import(sourceURL(path));
  if (!b.modules.has(path)) {
    return Promise.reject(new Error(`internal error: ${path} is not in cryo's start-up bundle`));
  }
  return Promise.resolve(b.modules.get(path) as T);
}
