/**
 * The manifest's `pageBlocks` of a freshly dumped image
 * (engine/image/page_blocks.ts) from the block CRCs its memory streamer
 * computed while copying: recorded only when the streamer wrote the whole
 * page region in blocks aligned to its start (their combination is the
 * page data's CRC); otherwise (a pre-copied image, pages written in other
 * pieces) the field is left out and a lazy restore checks the whole file.
 *
 * @module
 */

import type { PageBlocks } from "../model.ts";
import { blockCount, combineBlocks, encodeBlockCrcs } from "../image/page_blocks.ts";
import { CRC_BLOCK, type MemoryStreamer } from "./memory.ts";

/** `{ pageBlocks }` for the manifest entry, or `{}` when the streamer's blocks do not cover the region. */
export function streamedPageBlocks(
  streamer: MemoryStreamer,
  pagesStart: number,
  pagesBytes: number,
  pagesCrc: number,
): { pageBlocks?: PageBlocks } {
  const crcs = streamer.blockCrcs;
  if (!crcs || streamer.bytes !== pagesBytes) return {};
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
