/**
 * The lazy server's check of the page data it serves
 * (engine/memory/lazy_serve.ts): with the manifest's per-block checksums
 * (`pageBlocks`, engine/image/page_blocks.ts), the first read of any page
 * of a block reads the whole block, computes its CRC-32 and compares it
 * with the recorded one; a mismatch throws (the server then kills the
 * tree: no page of a damaged block is ever served). Each block is read
 * for checking once; the restore ties the block table to the whole-file
 * checksum before the tree runs (engine/restore/verify_blocks.ts).
 *
 * @module
 */

import { crc32 } from "../image/crc32.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { errnoName } from "../../ffi/errno.ts";
import type { PageBlocks } from "../model.ts";
import { decodeBlockCrcs } from "../image/page_blocks.ts";
import { formatChecksum } from "../image/checksum.ts";
import { decodeBase64, encodeBase64 } from "../base64.ts";

/** A {@link BlockChecker}'s state for a hand-over to the background server. */
export interface BlockCheckerState {
  path: string;
  blocks: PageBlocks;
  /** Base64 of one byte per block, 1 = checked. */
  checked: string;
}

/** Checks the blocks of one image file as the server first reads them. */
export class BlockChecker {
  readonly path: string;
  readonly #pb: PageBlocks;
  readonly #crcs: Uint32Array;
  readonly #checked: Uint8Array;
  /** The last block checked (page aligned), and its index (-1: none). */
  #buf: Uint8Array | undefined;
  #cached = -1;
  /** Blocks read and checked so far. */
  blocksChecked = 0;

  /** `blocks` must have passed validation (engine/image/page_blocks.ts `pageBlocksProblem`). */
  constructor(path: string, blocks: PageBlocks, checked?: Uint8Array) {
    const crcs = decodeBlockCrcs(blocks.crcs);
    if (typeof crcs === "string") throw new Error(`${path}: pageBlocks: ${crcs}`);
    this.path = path;
    this.#pb = blocks;
    this.#crcs = crcs;
    this.#checked = checked ?? new Uint8Array(crcs.length);
  }

  /** For {@link BlockChecker.fromState}. */
  state(): BlockCheckerState {
    return { path: this.path, blocks: this.#pb, checked: encodeBase64(this.#checked) };
  }

  /** A checker with the same blocks checked. */
  static fromState(s: BlockCheckerState): BlockChecker {
    return new BlockChecker(s.path, s.blocks, decodeBase64(s.checked));
  }

  /**
   * Checks every block that bytes [fileOffset, fileOffset + length) of the
   * file (open as `fd`) touch and that is not checked yet; throws on a
   * mismatch or a read error. Bytes outside the page data are not its concern.
   */
  check(fd: number, fileOffset: number, length: number): void {
    const { offset, size } = this.#pb;
    const lo = Math.max(fileOffset, offset);
    const hi = Math.min(fileOffset + length, offset + this.#pb.length);
    if (hi <= lo) return;
    for (let b = Math.floor((lo - offset) / size); b <= Math.floor((hi - 1 - offset) / size); b++) {
      if (!this.#checked[b]) this.#checkBlock(fd, b);
    }
  }

  /** File offset where the block holding byte `fileOffset` ends (Infinity outside the page data). */
  blockEnd(fileOffset: number): number {
    const { offset, size, length } = this.#pb;
    if (fileOffset < offset || fileOffset >= offset + length) return Infinity;
    return Math.min(
      offset + length,
      offset + (Math.floor((fileOffset - offset) / size) + 1) * size,
    );
  }

  /**
   * {@link check}, then the bytes themselves when they lie in the block
   * checked last (its buffer, page aligned: no second read); undefined
   * otherwise (the caller reads them).
   */
  view(fd: number, fileOffset: number, length: number): Uint8Array | undefined {
    this.check(fd, fileOffset, length);
    const { offset, size } = this.#pb;
    const b = Math.floor((fileOffset - offset) / size);
    if (fileOffset < offset || b !== this.#cached) return undefined;
    const from = fileOffset - (offset + b * size);
    if (from + length > Math.min(size, this.#pb.length - b * size)) return undefined;
    return this.#buf!.subarray(from, from + length);
  }

  #checkBlock(fd: number, b: number): void {
    const { offset, size } = this.#pb;
    const at = offset + b * size;
    const len = Math.min(size, this.#pb.length - b * size);
    if (!this.#buf) {
      const raw = new Uint8Array(size + 4096);
      const addr = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(raw)));
      const skip = (4096 - (addr % 4096)) % 4096;
      this.#buf = raw.subarray(skip, skip + size);
    }
    this.#cached = -1;
    const got = rawSyscall(SYS.pread64, fd, this.#buf, len, at);
    if (got !== BigInt(len)) {
      throw new Error(
        `image ${this.path}: reading page data block ${b} failed: ${
          got < 0n ? errnoName(Number(-got)) : "short read"
        }`,
      );
    }
    const crc = crc32(this.#buf.subarray(0, len)) >>> 0;
    if (crc !== this.#crcs[b]) {
      throw new Error(
        `image ${this.path}: page data block ${b} (file bytes ${at}..${at + len}) has checksum ${
          formatChecksum(crc)
        }, the manifest's pageBlocks say ${formatChecksum(this.#crcs[b])}: damaged image`,
      );
    }
    this.#checked[b] = 1;
    this.#cached = b;
    this.blocksChecked++;
  }
}
