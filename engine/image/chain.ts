/**
 * Pre-copy chains of images (`dump --parent`): an image with a parent
 * stores only its own pages; a page run with `parent: k` is in the image
 * k steps up the chain, same pid's file, same file offset. The manifest
 * names its parent by absolute directory and the SHA-256 of the parent's
 * manifest.json (which itself holds the checksum of every image file), so
 * a parent that is missing or changed is refused.
 *
 * {@link flattenImage} merges a chain into one self-contained image; a
 * restore of a chained image restores such a flattened copy.
 *
 * @module
 */

import { basename, dirname, resolve } from "../path.ts";
import { IMAGE_FORMAT_VERSION, type Manifest, type PageRun } from "../model.ts";
import { CryoError } from "../errors.ts";
import { MANIFEST_FILE, readManifest, verifyImageDir, writeManifest } from "./manifest.ts";
import { checksumWithBlocks } from "./page_blocks.ts";
import { ImageWriter } from "./writer.ts";
import { readImageFile } from "./reader.ts";

/**
 * Appends the run of `length` bytes at `addr`, written at `fileOffset` of
 * a new image, to `pages`: runs adjacent in memory and in the file become
 * one (one read at restore).
 */
export function appendPageRun(
  pages: PageRun[],
  addr: string,
  length: number,
  fileOffset: number,
): void {
  const last = pages[pages.length - 1];
  if (
    last && BigInt(last.addr) + BigInt(last.length) === BigInt(addr) &&
    last.fileOffset + last.length === fileOffset
  ) {
    last.length += length;
  } else {
    pages.push({ addr, length, fileOffset });
  }
}

/** One image of a chain. */
export interface ChainLink {
  /** Absolute directory. */
  dir: string;
  manifest: Manifest;
}

/** SHA-256 (hex) of `dir`/manifest.json. */
export async function manifestSha256(dir: string): Promise<string> {
  const bytes = await Deno.readFile(`${dir}/${MANIFEST_FILE}`);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The chain of `dir`: itself first, then its parent, up to the image with
 * no parent. Throws a one-line {@link CryoError} on a missing or changed
 * parent.
 */
export async function resolveChain(dir: string): Promise<ChainLink[]> {
  const out: ChainLink[] = [{ dir: resolve(dir), manifest: await readManifest(dir) }];
  for (;;) {
    const cur = out[out.length - 1];
    const p = cur.manifest.parent;
    if (!p) return out;
    if (out.length > 64) throw new CryoError(`${cur.dir}: parent chain longer than 64 images`);
    let sum: string;
    try {
      sum = await manifestSha256(p.dir);
    } catch {
      throw new CryoError(`${cur.dir}: its parent image ${p.dir} is missing`);
    }
    if (sum !== p.manifestSha256) {
      throw new CryoError(
        `${cur.dir}: its parent image ${p.dir} has changed (manifest checksum differs)`,
      );
    }
    out.push({ dir: resolve(p.dir), manifest: await readManifest(p.dir) });
  }
}

/** A page run of an image of a chain, resolved to the file holding its data. */
export interface ChainRun {
  addr: number;
  length: number;
  /** Steps up the chain from the image that lists it (0: itself). */
  depth: number;
  fileOffset: number;
}

/** The page runs of process `pid` in image `link` (every mapping), sorted by address. */
export async function processRuns(link: ChainLink, pid: number): Promise<ChainRun[]> {
  const entry = link.manifest.processes.find((p) => p.pid === pid);
  if (!entry) return [];
  const info = await readImageFile(`${link.dir}/${entry.file}`);
  const runs: ChainRun[] = [];
  for (const m of info.process.mappings) {
    for (const r of m.pages) {
      runs.push({
        addr: Number(BigInt(r.addr)),
        length: r.length,
        depth: r.parent ?? 0,
        fileOffset: r.fileOffset,
      });
    }
  }
  return runs.sort((a, b) => a.addr - b.addr);
}

/** Bytes copied at a time by {@link flattenImage}. */
const COPY_CHUNK = 1 << 20;

/**
 * Writes into `out` (must not exist) one self-contained image with the
 * content of chained image `dir`: the same processes, every page copied
 * from the image of the chain that holds it. Checks the whole chain
 * (manifests and image checksums) first.
 */
export async function flattenImage(dir: string, out: string): Promise<Manifest> {
  const chain = await resolveChain(dir);
  for (const link of chain) await verifyImageDir(link.dir);
  const target = resolve(out);
  try {
    await Deno.lstat(target);
    throw new CryoError(`${out} already exists`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const tmp = `${dirname(target)}/.${basename(target)}.flatten-${Deno.pid}`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await Deno.mkdir(tmp, { mode: 0o700 });
  try {
    const head = chain[0];
    const processes: Manifest["processes"] = [];
    for (const entry of head.manifest.processes) {
      const info = await readImageFile(`${head.dir}/${entry.file}`);
      const files = new Map<number, Deno.FsFile>();
      const src = async (depth: number) => {
        let f = files.get(depth);
        if (!f) {
          const link = chain[depth];
          if (!link) throw new CryoError(`${head.dir}: page run beyond the end of its chain`);
          const e = link.manifest.processes.find((p) => p.pid === entry.pid);
          if (!e) throw new CryoError(`${link.dir}: has no image of pid ${entry.pid}`);
          f = await Deno.open(`${link.dir}/${e.file}`, { read: true });
          files.set(depth, f);
        }
        return f;
      };
      const blob = new Uint8Array(info.bootstrap.filesz);
      const own = await src(0);
      await own.seek(info.bootstrap.offset, Deno.SeekMode.Start);
      for (let d = 0; d < blob.length;) {
        const n = await own.read(blob.subarray(d));
        if (n === null) throw new CryoError(`${head.dir}/${entry.file}: truncated stub`);
        d += n;
      }
      const writer = await ImageWriter.create(`${tmp}/${entry.file}`, {
        bootstrapStart: info.bootstrap.vaddr,
        bootstrapSize: info.bootstrap.memsz,
        blob,
        entry: info.entry,
      });
      try {
        const buf = new Uint8Array(COPY_CHUNK);
        for (const m of info.process.mappings) {
          const pages: PageRun[] = [];
          for (const r of m.pages) {
            const f = await src(r.parent ?? 0);
            const at = writer.reservePages(r.length);
            for (let done = 0; done < r.length;) {
              const n = Math.min(COPY_CHUNK, r.length - done);
              await f.seek(r.fileOffset + done, Deno.SeekMode.Start);
              for (let d = 0; d < n;) {
                const k = await f.read(buf.subarray(d, n));
                if (k === null) {
                  throw new CryoError(`${head.dir}: page data of pid ${entry.pid} truncated`);
                }
                d += k;
              }
              writer.writePagesAtSync(at + done, buf.subarray(0, n));
              done += n;
            }
            appendPageRun(pages, r.addr, r.length, at);
          }
          m.pages = pages;
        }
        const summary = await writer.finish(info.process, { checksum: false });
        // One read of the new file: its checksum and its own block checksums.
        const sums = await checksumWithBlocks(summary.path, {
          offset: writer.pagesStart,
          size: summary.pagesBytes,
        });
        processes.push({ ...entry, size: summary.size, ...sums });
      } catch (e) {
        await writer.abort().catch(() => {});
        throw e;
      } finally {
        for (const f of files.values()) f.close();
      }
    }
    // Other files of the image (deleted files' contents, SysV segments) come along.
    const listed = new Set([MANIFEST_FILE, ...head.manifest.processes.map((p) => p.file)]);
    for await (const e of Deno.readDir(head.dir)) {
      if (e.isFile && !listed.has(e.name)) {
        await Deno.copyFile(`${head.dir}/${e.name}`, `${tmp}/${e.name}`);
      } else if (e.isDirectory) {
        await new Deno.Command("cp", { args: ["-a", `${head.dir}/${e.name}`, `${tmp}/`] }).output();
      }
    }
    const { parent: _p, tracking: _t, ...rest } = head.manifest;
    const manifest: Manifest = { ...rest, formatVersion: IMAGE_FORMAT_VERSION, processes };
    await writeManifest(tmp, manifest);
    await Deno.rename(tmp, target);
    return manifest;
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}

/**
 * For a restore of `dir`: when it has a parent, a flattened copy of its
 * chain in a private directory next to it (the caller removes it);
 * undefined for a self-contained image. A missing or changed parent is
 * refused with a one-line error.
 */
export async function flattenForRestore(dir: string): Promise<string | undefined> {
  let manifest: Manifest;
  try {
    manifest = await readManifest(dir);
  } catch {
    return undefined; // the restore itself says what is wrong
  }
  if (!manifest.parent) return undefined;
  const abs = resolve(dir);
  const out = `${dirname(abs)}/.${basename(abs)}.restore-${Deno.pid}`;
  await Deno.remove(out, { recursive: true }).catch(() => {});
  await flattenImage(abs, out);
  return out;
}
