/**
 * The checksum pass of a lazy restore (checksums on): for an image whose
 * manifest entry has per-block checksums (`pageBlocks`,
 * engine/image/page_blocks.ts), only the parts of the file the restore
 * reads before the tree runs are checked here: the part before the page
 * data (stub) and after it (notes), and the page-data blocks read eagerly
 * (eager mappings' runs and the hot pages of lazy ones). The block table
 * itself is tied to the manifest's whole-file checksum: head + blocks +
 * tail must combine to it. The lazy server checks every other block when
 * it first reads it (engine/memory/lazy_blocks.ts). Images without the
 * field are checked whole, as an eager restore does (./verify_inline.ts).
 * Same stepping as {@link ImageVerifier}: a window per step.
 *
 * @module
 */

import { crc32 } from "../image/crc32.ts";
import { MappedFile } from "../../ffi/file_window.ts";
import type { Manifest, PageBlocks } from "../model.ts";
import { formatChecksum } from "../image/checksum.ts";
import { decodeBlockCrcs, wholeFromParts } from "../image/page_blocks.ts";
import { ImageFormatError } from "../image/errors.ts";
import { RestoreError } from "../errors.ts";
import { hotPages } from "../memory/lazy.ts";
import type { RestoreUnit } from "./session.ts";
import { type ImageToVerify, ImageVerifier } from "./verify_inline.ts";

/** Bytes checked per step (as ./verify_inline.ts). */
const WINDOW = 8 << 20;

/** One image checked by parts. */
interface ByParts {
  path: string;
  checksum: string;
  blocks: PageBlocks;
  /** Blocks the restore reads before the tree runs, ascending. */
  eager: number[];
}

/** The steps of the pass, for one file: [start, end) ranges and what their CRC is. */
interface Piece {
  start: number;
  end: number;
  /** "head", "tail", or the block index. */
  what: "head" | "tail" | number;
}

/**
 * The blocks of `blocks` that the restore of `unit` reads before the tree
 * runs: every run of an eager mapping, the hot pages of the lazy ones.
 */
export function eagerBlocks(unit: RestoreUnit, blocks: PageBlocks): number[] {
  const lazy = new Set((unit.compiled.lazy ?? []).map((r) => r.start));
  const hot = lazy.size ? [...hotPages(unit.image)] : [];
  const out = new Set<number>();
  const add = (fileOffset: number, length: number) => {
    const lo = Math.max(fileOffset, blocks.offset);
    const hi = Math.min(fileOffset + length, blocks.offset + blocks.length);
    for (
      let at = lo;
      at < hi;
      at = (Math.floor((at - blocks.offset) / blocks.size) + 1) * blocks.size + blocks.offset
    ) {
      out.add(Math.floor((at - blocks.offset) / blocks.size));
    }
  };
  for (const m of unit.image.mappings) {
    const isLazy = lazy.has(BigInt(m.start));
    for (const r of m.pages) {
      if (r.parent !== undefined) continue; // another file (a chain is flattened before a restore)
      if (!isLazy) {
        add(r.fileOffset, r.length);
        continue;
      }
      const addr = BigInt(r.addr);
      for (const page of hot) {
        if (page >= addr && page < addr + BigInt(r.length)) {
          add(r.fileOffset + Number(page - addr), 4096);
        }
      }
    }
  }
  return [...out].sort((a, b) => a - b);
}

/** Verifies a lazy restore's images by parts; see the module doc. Same interface as {@link ImageVerifier}. */
export class LazyImageVerifier {
  readonly #whole: ImageVerifier;
  readonly #parts: ByParts[];
  #index = 0;
  #pieces: Piece[] = [];
  #piece = 0;
  #offset = 0;
  #crc = 0;
  #head = 0;
  #tail = 0;
  #tailLength = 0;
  #file: MappedFile | undefined;
  #crcs: Uint32Array | undefined;
  #problem: Error | undefined;

  /** The images of `units` (manifest `manifest`): by parts when they have pageBlocks, whole otherwise. */
  constructor(units: readonly RestoreUnit[], manifest: Manifest) {
    const whole: ImageToVerify[] = [];
    this.#parts = [];
    for (const p of manifest.processes) {
      const unit = units.find((u) => u.image.pid === p.pid)!;
      if (!p.checksum) continue;
      if (p.pageBlocks) {
        this.#parts.push({
          path: unit.path,
          checksum: p.checksum,
          blocks: p.pageBlocks,
          eager: eagerBlocks(unit, p.pageBlocks),
        });
      } else whole.push({ path: unit.path, checksum: p.checksum });
    }
    this.#whole = new ImageVerifier(whole);
  }

  /** Checks the next window; false once everything is checked (or a problem found). */
  step(): boolean {
    if (this.#problem) return false;
    if (this.#index < this.#parts.length) {
      try {
        this.#stepParts();
      } catch (e) {
        this.#closeFile();
        this.#problem = e instanceof ImageFormatError
          ? e
          : new RestoreError(`cannot verify the image: ${(e as Error).message}`);
        return false;
      }
      return true;
    }
    return this.#whole.step();
  }

  /** Checks whatever is left; the first problem, or undefined when everything matches. */
  finish(): Error | undefined {
    while (this.step()) { /* next window */ }
    this.#closeFile();
    return this.#problem ?? this.#whole.finish();
  }

  /** Stops early and releases open files. */
  close(): void {
    this.#closeFile();
    this.#whole.close();
  }

  #stepParts(): void {
    const f = this.#parts[this.#index];
    if (!this.#file) {
      this.#file = MappedFile.open(f.path);
      const crcs = decodeBlockCrcs(f.blocks.crcs);
      if (typeof crcs === "string") throw new ImageFormatError(f.path, `pageBlocks: ${crcs}`);
      this.#crcs = crcs;
      const { offset, length, size } = f.blocks;
      this.#pieces = [
        { start: 0, end: offset, what: "head" },
        { start: offset + length, end: this.#file.size, what: "tail" },
        ...f.eager.map((b) => ({
          start: offset + b * size,
          end: Math.min(offset + (b + 1) * size, offset + length),
          what: b,
        })),
      ];
      this.#tailLength = this.#file.size - offset - length;
      this.#piece = 0;
      this.#offset = 0;
      this.#crc = 0;
    }
    const file = this.#file;
    const p = this.#pieces[this.#piece];
    const at = p.start + this.#offset;
    const n = Math.min(WINDOW, p.end - at);
    if (n > 0) this.#crc = file.withWindow(at, n, (v) => crc32(v, this.#crc));
    this.#offset += n;
    if (p.start + this.#offset < p.end) return;
    const crc = this.#crc >>> 0;
    if (p.what === "head") this.#head = crc;
    else if (p.what === "tail") this.#tail = crc;
    else if (crc !== this.#crcs![p.what]) {
      throw new ImageFormatError(
        f.path,
        `page data block ${p.what} has checksum ${
          formatChecksum(crc)
        }, the manifest's pageBlocks say ${formatChecksum(this.#crcs![p.what])}`,
      );
    }
    this.#piece++;
    this.#offset = 0;
    this.#crc = 0;
    if (this.#piece < this.#pieces.length) return;
    // Every piece read: the block table must combine to the whole-file checksum.
    const got = wholeFromParts(this.#head, f.blocks, this.#crcs!, this.#tail, this.#tailLength);
    if (got !== f.checksum) {
      throw new ImageFormatError(
        f.path,
        `checksum ${got} (from its head, tail and pageBlocks) differs from the manifest's ${f.checksum}`,
      );
    }
    this.#closeFile();
    this.#index++;
  }

  #closeFile(): void {
    this.#file?.close();
    this.#file = undefined;
  }
}
