/**
 * The image directory: `manifest.json` plus one `<pid>.elf` per process.
 * Reading, writing (atomically) and verifying it against the image files.
 *
 * @module
 */

import { CHAIN_FORMAT_VERSION, IMAGE_FORMAT_VERSION, type Manifest } from "../model.ts";
import { ImageFormatError } from "./errors.ts";
import { type ImageInfo, readImageFileSync } from "./reader.ts";
import { checksumFile } from "./writer.ts";
import { manifestSchema, schemaProblem } from "./schema.ts";
import { pageBlocksProblem } from "./page_blocks.ts";

/** File name of the manifest inside an image directory. */
export const MANIFEST_FILE = "manifest.json";

/** Image file name of a process: `<pid>.elf`. */
export function imageFileName(pid: number): string {
  return `${pid}.elf`;
}

const isInt = (x: unknown): boolean => Number.isSafeInteger(x);
const isObj = (x: unknown): x is Record<string, unknown> =>
  typeof x === "object" && x !== null && !Array.isArray(x);

/** Checks the shape of a parsed manifest; returns a reason, or undefined when fine. */
export function manifestShapeError(x: unknown): string | undefined {
  if (!isObj(x)) return "not an object";
  if (x.kind !== "cryo-image") return `kind is ${JSON.stringify(x.kind)}, expected "cryo-image"`;
  const problem = schemaProblem(manifestSchema, x);
  if (problem) return problem;
  if (!isInt(x.formatVersion)) return "formatVersion is not an integer";
  if (!isInt(x.rootPid)) return "rootPid is not an integer";
  if (!isObj(x.host)) return "host missing";
  if (!Array.isArray(x.processes) || x.processes.length === 0) return "no processes";
  for (const [i, p] of x.processes.entries()) {
    if (!isObj(p) || !isInt(p.pid) || !isInt(p.ppid) || !isInt(p.size)) {
      return `process ${i} lacks pid/ppid/size`;
    }
    if (typeof p.file !== "string" || p.file === "" || p.file.includes("/") || p.file === "..") {
      return `process ${i} has a bad file name`;
    }
    if (typeof p.checksum !== "string") return `process ${i} lacks checksum`;
  }
  if (!x.processes.some((p) => isObj(p) && p.pid === x.rootPid)) {
    return `root pid ${x.rootPid} is not among the processes`;
  }
  return undefined;
}

/** Whether `path` names a directory (following links). */
function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/** Reads and validates `<dir>/manifest.json`; throws {@link ImageFormatError}. */
export async function readManifest(dir: string): Promise<Manifest> {
  return await Promise.resolve().then(() => readManifestSync(dir));
}

/** {@link readManifest} with a synchronous read (a small file: no round trip through the blocking pool). */
export function readManifestSync(dir: string): Manifest {
  const path = `${dir}/${MANIFEST_FILE}`;
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotADirectory) {
      throw new ImageFormatError(dir, "not a directory (an image is the directory a dump wrote)");
    }
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    if (!isDirectory(dir)) throw new ImageFormatError(dir, "no such image directory");
    throw new ImageFormatError(path, "no manifest.json");
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new ImageFormatError(
      path,
      `not valid JSON (${(e as Error).message.replace(/\s+/g, " ")})`,
    );
  }
  const err = manifestShapeError(parsed);
  if (err) throw new ImageFormatError(path, err);
  const m = parsed as Manifest;
  const chained = m.formatVersion === CHAIN_FORMAT_VERSION && m.parent !== undefined;
  if (m.formatVersion !== IMAGE_FORMAT_VERSION && !chained) {
    throw new ImageFormatError(
      path,
      `image format version ${m.formatVersion}, this cryo reads version ${IMAGE_FORMAT_VERSION}`,
    );
  }
  return m;
}

/** Writes `<dir>/manifest.json` atomically (temp file, fsync unless `sync` is false, rename). */
export async function writeManifest(dir: string, manifest: Manifest, sync = true): Promise<void> {
  const path = `${dir}/${MANIFEST_FILE}`;
  const tmp = `${path}.partial`;
  {
    using f = await Deno.open(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
    const bytes = new TextEncoder().encode(JSON.stringify(manifest, null, 2) + "\n");
    let done = 0;
    while (done < bytes.length) done += await f.write(bytes.subarray(done));
    if (sync) await f.syncData();
  }
  await Deno.rename(tmp, path);
}

/**
 * {@link writeManifest} of an image that is not synced, with synchronous
 * file ops: after a dump's image is complete every async op was a hand-off
 * to another thread and back before the command could exit.
 */
export function writeManifestNoSync(dir: string, manifest: Manifest): void {
  const path = `${dir}/${MANIFEST_FILE}`;
  const tmp = `${path}.partial`;
  {
    using f = Deno.openSync(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
    const bytes = new TextEncoder().encode(JSON.stringify(manifest, null, 2) + "\n");
    let done = 0;
    while (done < bytes.length) done += f.writeSync(bytes.subarray(done));
  }
  Deno.renameSync(tmp, path);
}

/** Options of {@link verifyImageDir}. */
export interface VerifyOptions {
  /** Recompute and compare every image's SHA-256 (default true). */
  checksums?: boolean;
}

/** A verified image directory. */
export interface VerifiedImageDir {
  manifest: Manifest;
  /** One entry per manifest process, same order. */
  images: ImageInfo[];
}

/**
 * Reads the manifest and every image it lists, checking sizes, checksums
 * and that each image describes the pid the manifest says. Throws
 * {@link ImageFormatError} on the first problem.
 */
export async function verifyImageDir(
  dir: string,
  opts: VerifyOptions = {},
): Promise<VerifiedImageDir> {
  const manifest = readManifestSync(dir);
  const images: ImageInfo[] = [];
  for (const p of manifest.processes) {
    const path = `${dir}/${p.file}`;
    let size: number;
    try {
      size = Deno.statSync(path).size;
    } catch {
      throw new ImageFormatError(path, `image of pid ${p.pid} listed in the manifest is missing`);
    }
    if (size !== p.size) {
      throw new ImageFormatError(path, `size ${size} differs from the manifest's ${p.size}`);
    }
    if (opts.checksums !== false && p.checksum !== "") {
      const sum = await checksumFile(path);
      if (sum !== p.checksum) {
        throw new ImageFormatError(
          path,
          `checksum ${sum} differs from the manifest's ${p.checksum}`,
        );
      }
    }
    const info = readImageFileSync(path);
    if (info.process.pid !== p.pid) {
      throw new ImageFormatError(
        path,
        `image describes pid ${info.process.pid}, manifest says ${p.pid}`,
      );
    }
    const blocks = p.pageBlocks && pageBlocksProblem(p.pageBlocks, info.pagesSection, size);
    if (blocks) throw new ImageFormatError(path, blocks);
    images.push(info);
  }
  return { manifest, images };
}
