/**
 * The manifest's `pageBlocks` of a freshly dumped image
 * (engine/image/page_blocks.ts) from the block CRCs computed while the
 * pages were copied: the memory streamer's, after those of the pre-copy
 * when there was one (its blocks written over read again; the block
 * where the pre-copied data ends is combined from both parts). Recorded
 * only when they cover the whole page region and combine to the page
 * data's CRC; otherwise the field is left out and a lazy restore checks
 * the whole file.
 *
 * @module
 */

import type { PageBlocks } from "../model.ts";
import { crc32Combine } from "../image/checksum.ts";
import { blockCount, combineBlocks, encodeBlockCrcs } from "../image/page_blocks.ts";
import { CRC_BLOCK } from "./memory.ts";

/** `{ pageBlocks }` for the manifest entry, or `{}` when the CRCs do not cover the region. */
export function streamedPageBlocks(
  streamer: { blockCrcs?: number[]; bytes: number },
  pagesStart: number,
  pagesBytes: number,
  pagesCrc: number,
  pre?: { pagesEnd: number; pagesBlockCrcs: number[] },
): { pageBlocks?: PageBlocks } {
  if (!streamer.blockCrcs) return {};
  let crcs = [...streamer.blockCrcs];
  const preBytes = pre ? pre.pagesEnd - pagesStart : 0;
  if (pre) {
    const head = [...pre.pagesBlockCrcs];
    if (head.length !== blockCount(preBytes, CRC_BLOCK)) return {};
    const split = preBytes % CRC_BLOCK;
    if (split !== 0 && crcs.length > 0) {
      // The block the pre-copy ends in: its part, then the streamer's.
      const len = Math.min(CRC_BLOCK - split, streamer.bytes);
      head[head.length - 1] = crc32Combine(head[head.length - 1], crcs[0], len);
      crcs = crcs.slice(1);
    }
    crcs = [...head, ...crcs];
  }
  if (preBytes + streamer.bytes !== pagesBytes) return {};
  if (crcs.length !== blockCount(pagesBytes, CRC_BLOCK)) return {};
  if (combineBlocks(crcs, CRC_BLOCK, pagesBytes) !== (pagesCrc >>> 0)) return {};
  return {
    pageBlocks: {
      offset: pagesStart,
      length: pagesBytes,
      size: CRC_BLOCK,
      crcs: encodeBlockCrcs(crcs),
    },
  };
}
