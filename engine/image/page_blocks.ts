/**
 * Per-block checksums of an image's page data (manifest
 * `processes[].pageBlocks`, docs/IMAGE-FORMAT.md): the CRC-32 of each
 * fixed-size block of `.cryo.pages`, so that a lazy restore checks the
 * pages it serves block by block instead of the whole file before the
 * tree runs. Encoding, validation against the image's page section, the
 * tie to the whole-file checksum, and a one-pass computation for writers
 * that read the file back (flatten).
 *
 * @module
 */

import { crc32 } from "./crc32.ts";
import { decodeBase64, encodeBase64 } from "../base64.ts";
import { crc32Combine, formatChecksum } from "./checksum.ts";
import type { PageBlocks } from "../model.ts";

/** The block size the dumper writes (1 MiB). */
export const PAGE_BLOCK_SIZE = 1 << 20;

/** Blocks of a page region of `length` bytes. */
export function blockCount(length: number, size: number): number {
  return Math.ceil(length / size);
}

/** Base64 of the CRCs as little-endian u32s. */
export function encodeBlockCrcs(crcs: ArrayLike<number>): string {
  const out = new Uint8Array(crcs.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < crcs.length; i++) dv.setUint32(i * 4, crcs[i] >>> 0, true);
  return encodeBase64(out);
}

/** The CRCs of `crcs` (base64 of little-endian u32s), or a reason when it does not decode. */
export function decodeBlockCrcs(crcs: string): Uint32Array | string {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(crcs)) return "its crcs are not base64";
  let bytes: Uint8Array;
  try {
    bytes = decodeBase64(crcs);
  } catch {
    return "its crcs are not base64";
  }
  if (bytes.length % 4 !== 0) return `its crcs hold ${bytes.length} bytes, not a multiple of 4`;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Uint32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = dv.getUint32(i * 4, true);
  return out;
}

/**
 * Why `pb` does not fit an image whose page section is `pages` (file of
 * `fileSize` bytes), or undefined when it does: same region, a page
 * multiple block size, one CRC per block.
 */
export function pageBlocksProblem(
  pb: PageBlocks,
  pages: { offset: number; size: number },
  fileSize: number,
): string | undefined {
  if (pb.offset !== pages.offset || pb.length !== pages.size) {
    return `pageBlocks cover [${pb.offset}, +${pb.length}), the page data is [${pages.offset}, +${pages.size})`;
  }
  if (!Number.isSafeInteger(pb.size) || pb.size <= 0 || pb.size % 4096 !== 0) {
    return `pageBlocks block size ${pb.size} is not a positive multiple of 4096`;
  }
  if (pb.offset + pb.length > fileSize) return "pageBlocks run past the end of the file";
  const crcs = decodeBlockCrcs(pb.crcs);
  if (typeof crcs === "string") return `pageBlocks: ${crcs}`;
  const want = blockCount(pb.length, pb.size);
  if (crcs.length !== want) {
    return `pageBlocks hold ${crcs.length} checksums, the page data has ${want} blocks`;
  }
  return undefined;
}

/** CRC-32 of the whole page region from its blocks' CRCs. */
export function combineBlocks(crcs: ArrayLike<number>, size: number, length: number): number {
  let crc = 0;
  for (let b = 0; b < crcs.length; b++) {
    const len = Math.min(size, length - b * size);
    crc = b === 0 ? crcs[0] >>> 0 : crc32Combine(crc, crcs[b], len);
  }
  return crc >>> 0;
}

/**
 * The whole-file checksum from the CRCs of the part before the pages
 * (`head`), the blocks, and the part after (`tail`, `tailLength` bytes).
 */
export function wholeFromParts(
  head: number,
  pb: { length: number; size: number },
  crcs: ArrayLike<number>,
  tail: number,
  tailLength: number,
): string {
  const withPages = crc32Combine(head, combineBlocks(crcs, pb.size, pb.length), pb.length);
  return formatChecksum(crc32Combine(withPages, tail, tailLength));
}

/**
 * Reads the file at `path` once: its whole-file checksum and the
 * {@link PageBlocks} of its page region `pages`.
 */
export async function checksumWithBlocks(
  path: string,
  pages: { offset: number; size: number },
  size = PAGE_BLOCK_SIZE,
): Promise<{ checksum: string; pageBlocks: PageBlocks }> {
  using f = await Deno.open(path, { read: true });
  const fileSize = (await f.stat()).size;
  const buf = new Uint8Array(size);
  let whole = 0;
  const crcs: number[] = [];
  const readRange = async (start: number, end: number, perBlock: boolean) => {
    await f.seek(start, Deno.SeekMode.Start);
    for (let pos = start; pos < end;) {
      const want = Math.min(size, end - pos);
      for (let d = 0; d < want;) {
        const n = await f.read(buf.subarray(d, want));
        if (n === null) throw new Error(`${path}: unexpected end of file at ${pos + d}`);
        d += n;
      }
      const v = buf.subarray(0, want);
      whole = crc32(v, whole);
      if (perBlock) crcs.push(crc32(v));
      pos += want;
    }
  };
  await readRange(0, pages.offset, false);
  await readRange(pages.offset, pages.offset + pages.size, true);
  await readRange(pages.offset + pages.size, fileSize, false);
  return {
    checksum: formatChecksum(whole),
    pageBlocks: { offset: pages.offset, length: pages.size, size, crcs: encodeBlockCrcs(crcs) },
  };
}
