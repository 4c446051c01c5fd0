/**
 * The merge of a received pre-copy chain into one image, done while the
 * tree it holds already runs (`cryo receive --lazy`): the O(memory) copy
 * of every page into one file leaves the migration's switch window.
 *
 * {@link StreamingFlatten.prepare} writes each process's flat image file
 * with every page run reserved but only the pages a restore reads itself
 * copied in: those of the mappings restored eagerly and the hot pages of
 * the lazy ones (engine/memory/lazy.ts); the other pages of the lazy
 * mappings are holes, which nothing reads before they are copied:
 * {@link StreamingFlatten.ensure} (the lazy server's
 * {@link LazyEnsure}, asked before every read of the image) copies the
 * pages asked for from the chain first. {@link StreamingFlatten.complete}
 * copies what is left, syncs, records the checksums and renames the
 * directory into place. The manifest written by `prepare` records no
 * checksums (the image is restored without checking them: every file of
 * the chain was checked as it arrived, and its frames were authenticated).
 *
 * @module
 */

import { resolve } from "node:path";
import type { Manifest, PageRun, ProcessImage } from "../model.ts";
import { IMAGE_FORMAT_VERSION } from "../model.ts";
import { CryoError } from "../errors.ts";
import { appendPageRun, resolveChain } from "../image/chain.ts";
import { MANIFEST_FILE, writeManifest } from "../image/manifest.ts";
import { checksumFile, ImageWriter } from "../image/writer.ts";
import { readImageFile } from "../image/reader.ts";
import { hotPages, lazyRegions } from "../memory/lazy.ts";
import type { LazyEnsure } from "../memory/lazy_serve.ts";

const PAGE = 4096;

/** A piece of the flat file and where its bytes are in the chain. */
interface Piece {
  /** Offset in the flat file. */
  at: number;
  length: number;
  /** Chain depth of the source image (0: the head) and offset in it. */
  depth: number;
  from: number;
}

/** One process's flat file being filled. */
interface FlatFile {
  pid: number;
  path: string;
  /** Open for writing only while pages are copied (an image open for writing cannot be exec'd). */
  out?: Deno.FsFile;
  /** Source files by chain depth. */
  sources: Map<number, Deno.FsFile>;
  /** Pieces in file order. */
  pieces: Piece[];
  /** Pages of the page region copied in, by (offset - pagesStart) / PAGE. */
  done: Uint8Array;
  pagesStart: number;
}

/** A chain being merged into one image while its tree may already run. */
export class StreamingFlatten {
  /** The directory being written (restore from it; renamed to the target by {@link complete}). */
  readonly dir: string;
  readonly #target: string;
  readonly #files = new Map<number, FlatFile>();
  #manifest: Manifest;
  readonly #buf = new Uint8Array(1 << 20);
  /** Bytes of pages copied in after {@link prepare} (while the tree may run). */
  deferredBytes = 0;
  #prepared = false;

  private constructor(dir: string, target: string, manifest: Manifest) {
    this.dir = dir;
    this.#target = target;
    this.#manifest = manifest;
  }

  /**
   * Writes the flat image of chain `head` into `work` (must not exist) with
   * the pages a restore reads itself; {@link complete} later renames it
   * to `target`.
   */
  static async prepare(head: string, work: string, target: string): Promise<StreamingFlatten> {
    const chain = await resolveChain(head);
    const top = chain[0];
    await Deno.mkdir(work, { mode: 0o700 });
    const processes: Manifest["processes"] = [];
    const plans: { pid: number; info: ProcessImage }[] = [];
    const { parent: _p, tracking: _t, ...rest } = top.manifest;
    const sf = new StreamingFlatten(work, resolve(target), {
      ...rest,
      formatVersion: IMAGE_FORMAT_VERSION,
      processes,
    });
    try {
      for (const entry of top.manifest.processes) {
        const info = await readImageFile(`${top.dir}/${entry.file}`);
        const blob = new Uint8Array(info.bootstrap.filesz);
        {
          using own = await Deno.open(`${top.dir}/${entry.file}`, { read: true });
          await own.seek(info.bootstrap.offset, Deno.SeekMode.Start);
          for (let d = 0; d < blob.length;) {
            const n = await own.read(blob.subarray(d));
            if (n === null) throw new CryoError(`${top.dir}/${entry.file}: truncated stub`);
            d += n;
          }
        }
        const path = `${work}/${entry.file}`;
        const writer = await ImageWriter.create(path, {
          bootstrapStart: info.bootstrap.vaddr,
          bootstrapSize: info.bootstrap.memsz,
          blob,
          entry: info.entry,
        });
        const pieces: Piece[] = [];
        try {
          for (const m of info.process.mappings) {
            const pages: PageRun[] = [];
            for (const r of m.pages) {
              const at = writer.reservePages(r.length);
              pieces.push({ at, length: r.length, depth: r.parent ?? 0, from: r.fileOffset });
              appendPageRun(pages, r.addr, r.length, at);
            }
            m.pages = pages;
          }
          const summary = await writer.finish(info.process, { checksum: false, sync: false });
          // The source's block checksums describe its own file, not this one: left out.
          const { pageBlocks: _blocks, ...plain } = entry;
          processes.push({ ...plain, size: summary.size, checksum: "" });
        } catch (e) {
          await writer.abort().catch(() => {});
          throw e;
        }
        const sources = new Map<number, Deno.FsFile>();
        for (const depth of new Set(pieces.map((p) => p.depth))) {
          const link = chain[depth];
          const e = link?.manifest.processes.find((p) => p.pid === entry.pid);
          if (!link || !e) throw new CryoError(`${top.dir}: pid ${entry.pid} missing in its chain`);
          sources.set(depth, await Deno.open(`${link.dir}/${e.file}`, { read: true }));
        }
        const pagesStart = writer.pagesStart;
        const pagesEnd = pieces.reduce((n, p) => Math.max(n, p.at + p.length), pagesStart);
        sf.#files.set(entry.pid, {
          pid: entry.pid,
          path,
          sources,
          pieces,
          done: new Uint8Array((pagesEnd - pagesStart) / PAGE),
          pagesStart,
        });
        plans.push({ pid: entry.pid, info: info.process });
      }
      // Other files of the image (deleted files' contents, SysV segments) come along.
      const listed = new Set([MANIFEST_FILE, ...top.manifest.processes.map((p) => p.file)]);
      for await (const e of Deno.readDir(top.dir)) {
        if (e.isFile && !listed.has(e.name)) {
          await Deno.copyFile(`${top.dir}/${e.name}`, `${work}/${e.name}`);
        } else if (e.isDirectory) {
          await new Deno.Command("cp", { args: ["-a", `${top.dir}/${e.name}`, `${work}/`] })
            .output();
        }
      }
      // What a restore reads itself: everything but the lazy pages that are not hot.
      const images = new Map(plans.map((p) => [p.pid, p.info]));
      for (const { pid, info } of plans) {
        const f = sf.#files.get(pid)!;
        const lazy = new Set<number>();
        for (const region of lazyRegions(info, images)) {
          for (const run of region.runs) {
            for (let k = 0; k < run.length; k += PAGE) lazy.add(run.fileOffset + k);
          }
        }
        for (const page of hotPages(info)) {
          for (const region of lazyRegions(info, images)) {
            for (const run of region.runs) {
              const off = page - run.addr;
              if (off >= 0n && off < BigInt(run.length)) lazy.delete(run.fileOffset + Number(off));
            }
          }
        }
        for (let i = 0; i < f.done.length;) {
          let n = 0;
          while (i + n < f.done.length && !lazy.has(f.pagesStart + (i + n) * PAGE)) n++;
          if (n > 0) sf.#copy(f, f.pagesStart + i * PAGE, n * PAGE);
          i += n + 1;
        }
      }
      for (const f of sf.#files.values()) {
        f.out?.close();
        f.out = undefined;
      }
      await writeManifest(work, sf.#manifest, false);
      sf.#prepared = true;
    } catch (e) {
      sf.close();
      await Deno.remove(work, { recursive: true }).catch(() => {});
      throw e;
    }
    return sf;
  }

  /** Copies the pages of `f` in [at, at + length) that are not in yet, from the chain. */
  #copy(f: FlatFile, at: number, length: number): void {
    const first = Math.max(0, Math.floor((at - f.pagesStart) / PAGE));
    const end = Math.min(f.done.length, Math.ceil((at + length - f.pagesStart) / PAGE));
    for (let i = first; i < end;) {
      if (f.done[i]) {
        i++;
        continue;
      }
      const off = f.pagesStart + i * PAGE;
      const piece = pieceAt(f.pieces, off);
      if (!piece) throw new CryoError(`flat image of ${f.pid}: no source for offset ${off}`);
      // A stretch of pages missing, within this piece, up to the buffer's size.
      let n = 1;
      const limit = Math.min(end - i, this.#buf.length / PAGE);
      while (
        n < limit && !f.done[i + n] && off + (n + 1) * PAGE <= piece.at + piece.length
      ) n++;
      const buf = this.#buf.subarray(0, n * PAGE);
      const src = f.sources.get(piece.depth)!;
      src.seekSync(piece.from + (off - piece.at), Deno.SeekMode.Start);
      for (let d = 0; d < buf.length;) {
        const k = src.readSync(buf.subarray(d));
        if (k === null) throw new CryoError(`page data of pid ${f.pid} truncated in its chain`);
        d += k;
      }
      f.out ??= Deno.openSync(f.path, { write: true });
      f.out.seekSync(off, Deno.SeekMode.Start);
      for (let d = 0; d < buf.length;) d += f.out.writeSync(buf.subarray(d));
      f.done.fill(1, i, i + n);
      if (this.#prepared) this.deferredBytes += buf.length;
      i += n;
    }
  }

  /** The {@link LazyEnsure} of the restore from {@link dir}. */
  readonly ensure: LazyEnsure = (pid, fileOffset, length) => {
    const f = this.#files.get(pid);
    if (!f) throw new CryoError(`flat image: no process ${pid}`);
    this.#copy(f, fileOffset, length);
  };

  /**
   * Copies every page left, syncs, records the checksums in the manifest
   * and renames the directory to the target (which must not exist).
   */
  async complete(): Promise<Manifest> {
    for (const f of this.#files.values()) {
      this.#copy(f, f.pagesStart, f.done.length * PAGE);
      await f.out?.syncData();
    }
    const processes = [];
    for (const p of this.#manifest.processes) {
      processes.push({ ...p, checksum: await checksumFile(`${this.dir}/${p.file}`) });
    }
    this.#manifest = { ...this.#manifest, processes };
    await writeManifest(this.dir, this.#manifest);
    this.close();
    try {
      await Deno.lstat(this.#target);
      throw new CryoError(`${this.#target} exists already`);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    await Deno.rename(this.dir, this.#target);
    return this.#manifest;
  }

  /** Closes every file (idempotent). */
  close(): void {
    for (const f of this.#files.values()) {
      for (const file of [...(f.out ? [f.out] : []), ...f.sources.values()]) {
        try {
          file.close();
        } catch { /* closed */ }
      }
    }
    this.#files.clear();
  }
}

/** The piece holding file offset `off` (binary search; pieces are in file order). */
function pieceAt(pieces: Piece[], off: number): Piece | undefined {
  let lo = 0, hi = pieces.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const p = pieces[mid];
    if (off < p.at) hi = mid - 1;
    else if (off >= p.at + p.length) lo = mid + 1;
    else return p;
  }
  return undefined;
}
