/**
 * Saved page runs cut at the ranges a PAGEMAP_SCAN reported written: what
 * a pre-copy may keep and what a dump with a parent may take from it.
 *
 * @module
 */

/** A run of pages saved at `fileOffset` of an image. */
export interface FileRun {
  addr: number;
  length: number;
  fileOffset: number;
}

/**
 * `runs` (sorted) cut at the `written` ranges (sorted, [start, end)): every
 * byte of every run once, in order, each piece marked written or not (its
 * other fields copied, its file offset moved with its address).
 */
export function splitAtWritten<T extends FileRun>(
  runs: T[],
  written: [number, number][],
): { piece: T; written: boolean }[] {
  const out: { piece: T; written: boolean }[] = [];
  let w = 0;
  for (const r of runs) {
    let at = r.addr;
    const end = r.addr + r.length;
    while (w < written.length && written[w][1] <= at) w++;
    const cut = (to: number, isWritten: boolean) => {
      if (to > at) {
        out.push({
          piece: { ...r, addr: at, length: to - at, fileOffset: r.fileOffset + (at - r.addr) },
          written: isWritten,
        });
      }
      at = to;
    };
    for (let j = w; at < end; j++) {
      const range = written[j];
      if (!range || range[0] >= end) {
        cut(end, false);
        break;
      }
      if (range[1] <= at) continue;
      cut(Math.max(at, range[0]), false);
      cut(Math.min(end, range[1]), true);
    }
  }
  return out;
}
