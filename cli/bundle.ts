/**
 * The start-up bundle of `cryo dump` and `cryo restore`: one JavaScript
 * file (`deno bundle`) holding the program, the command's module graph and
 * the modules it may load on demand (engine/modules.ts), kept in a cache
 * directory and used instead of the source files when it is provably built
 * from them. Deno spends most of the start-up of these commands on its
 * per-module work for ~190 modules (resolving, cache look-ups, reading
 * each file twice); one module is loaded much faster (issue 10, "Start-up
 * bundle" in docs/PERFORMANCE.md).
 *
 * Never stale: the manifest next to a bundle lists every local file of
 * its module graph (`deno info`) with its size, inode, mtime and ctime,
 * and every start stats them all (2 to 5 ms) and uses the bundle only if none
 * differs, from a cache directory and files that only the user cryo runs
 * as may write. A file changed in the same millisecond as the stat that
 * recorded it would keep those four values, so a bundle is only built
 * from files whose last change is older than {@link SETTLE_MS}; the files
 * are stat'd before and after `deno bundle` and nothing is kept if they
 * moved. Anything unexpected (cryo run by URL, no cache directory, a
 * failed build, a bundle that uses `import.meta` where it would mean the
 * bundle itself) runs the source files as before. `CRYO_NO_BUNDLE=1`
 * turns it off; `CRYO_CACHE_DIR` moves the cache.
 *
 * This module is what every `dump` and `restore` loads before its bundle:
 * the check and the import. Building a bundle is cli/bundle_build.ts's
 * work, loaded only when a bundle is missing or stale (a module loaded at
 * start costs its source, its emitted code and a code cache look-up).
 *
 * @module
 */

/** Format of the manifest, of the generated entry and of the bundle's form (part of the cache key). */
export const FORMAT = 3;

/** The commands that start from a bundle, with their command module. */
export const BUNDLED_COMMANDS: Readonly<Record<string, string>> = {
  dump: "cli/dump.ts",
  restore: "cli/restore.ts",
};

/** The bundle's builder (cli/bundle_build.ts), loaded only when a bundle must be built. */
const BUILD_MODULE = "./bundle_build.ts";

/** The program a bundle exports: cli/program.ts's `main`. */
export interface BundledProgram {
  /** Runs cryo with `argv`; resolves to the exit code. */
  main(argv: readonly string[]): Promise<number>;
}

/** One tracked file: path (relative to the root), size, inode, mtime and ctime (ms). */
export type Stamp = [string, number, number, number, number];

/** A bundle's manifest: whose it is and the stamps of its keys. */
export interface Manifest {
  format: number;
  deno: string;
  root: string;
  bundle: string;
  files: Stamp[];
}

/** cryo's source root (URL ending in `/`). */
export const ROOT = new URL("../", import.meta.url);
/** The root as a file system path (stat'ing ~200 files by URL would parse ~200 URLs). */
export const ROOT_PATH = ROOT.protocol === "file:" ? decodeURIComponent(ROOT.pathname) : "";

/** The cache directory, or undefined when there is none. */
function cacheDir(): string | undefined {
  const own = Deno.env.get("CRYO_CACHE_DIR");
  if (own) return own;
  const base = Deno.env.get("XDG_CACHE_HOME") ||
    (Deno.env.get("HOME") ? `${Deno.env.get("HOME")}/.cache` : undefined);
  return base ? `${base}/cryo/startup` : undefined;
}

/** The stamp of the file `path` (relative to the root). */
export function stamp(path: string): Stamp {
  const st = Deno.statSync(ROOT_PATH + path);
  return [path, st.size, st.ino ?? -1, st.mtime?.getTime() ?? -1, st.ctime?.getTime() ?? -1];
}

/** True when two lists of stamps are the same. */
export function sameStamps(a: readonly Stamp[], b: readonly Stamp[]): boolean {
  return a.length === b.length && a.every((s, i) => s.every((v, j) => v === b[i][j]));
}

/** FNV-1a (32 bits) of `text`, in hex: names a cache entry (the manifest says whose it is). */
function fnv(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0");
}

/**
 * True when `path` belongs to the user cryo runs as and nobody else may
 * write it: cryo runs as root, and whoever can write its cache decides
 * the code it runs.
 */
export function ownedByUs(path: string): boolean {
  const st = Deno.statSync(path);
  return st.uid === Deno.uid() && ((st.mode ?? 0o777) & 0o022) === 0;
}

/** The bundle file named by a valid manifest, or undefined. */
function verified(manifestPath: string, dir: string): string | undefined {
  let m: Manifest;
  try {
    if (!ownedByUs(dir) || !ownedByUs(manifestPath)) return undefined;
    m = JSON.parse(Deno.readTextFileSync(manifestPath));
  } catch {
    return undefined;
  }
  if (
    m.format !== FORMAT || m.deno !== Deno.version.deno || m.root !== ROOT.href ||
    !Array.isArray(m.files)
  ) {
    return undefined;
  }
  try {
    if (!sameStamps(m.files, m.files.map((f) => stamp(f[0])))) return undefined;
    if (!ownedByUs(`${dir}/${m.bundle}`)) return undefined;
  } catch {
    return undefined;
  }
  return `${dir}/${m.bundle}`;
}

/**
 * The bundled program for `argv`'s command (dump or restore), building
 * its bundle if there is none or the sources changed; undefined when the
 * command has no bundle or it cannot be used (the caller then loads the
 * source files).
 */
export async function loadBundle(argv: readonly string[]): Promise<BundledProgram | undefined> {
  const command = argv.find((a) => !a.startsWith("-"));
  if (!command || !Object.hasOwn(BUNDLED_COMMANDS, command)) return undefined;
  if (ROOT.protocol !== "file:" || Deno.env.get("CRYO_NO_BUNDLE")) return undefined;
  const dir = cacheDir();
  if (!dir) return undefined;
  let path: string | undefined;
  try {
    const key = `${command}-${fnv(`${FORMAT}\0${Deno.version.deno}\0${ROOT.href}\0${command}`)}`;
    path = verified(`${dir}/${key}.json`, dir);
    if (!path) {
      const { build }: typeof import("./bundle_build.ts") = await import(BUILD_MODULE);
      path = await build(command, dir, key);
    }
  } catch {
    return undefined;
  }
  return path ? await importBundle(path) : undefined;
}

/**
 * Imports the bundle `path`; undefined when its file is gone: another cryo's
 * build removed it (cli/bundle_build.ts `pruneOthers`) after this start
 * checked it, and the caller runs the source files. (Nothing of a module
 * that was not found ran; once imported, a bundle is not read again.)
 */
export async function importBundle(path: string): Promise<BundledProgram | undefined> {
  try {
    return await import(`file://${encodeURI(path)}`);
  } catch (e) {
    try {
      Deno.lstatSync(path);
    } catch {
      return undefined;
    }
    throw e;
  }
}
