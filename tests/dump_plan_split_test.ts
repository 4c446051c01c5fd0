/**
 * engine/dump/plan.ts planPages with a page source (a pre-copy or a parent)
 * that splits one run into very many pieces: a parent whose every other
 * page was written since (the migration bench at 2 GiB: a long first round
 * while the writer rewrote random pages) used to overflow the call stack
 * (push of a spread). No process: the scan regions come from the source.
 */

import assert from "node:assert/strict";
import { planPages } from "../engine/dump/plan.ts";
import type { SplitPiece } from "../engine/dump/precopy.ts";
import type { Vma } from "../engine/dump/vmas.ts";

Deno.test("planPages: one run split into 400,000 pieces", () => {
  const PAGE = 4096, pages = 400_000, start = 0x100000000;
  const end = start + pages * PAGE;
  const vma: Vma = {
    start: BigInt(start),
    end: BigInt(end),
    perms: "rw-p",
    offset: 0n,
    dev: "00:00",
    inode: 0,
    path: "",
    vmFlags: [],
  } as unknown as Vma;
  const pieces: SplitPiece[] = [];
  for (let i = 0; i < pages; i++) {
    pieces.push(
      i % 2 ? { addr: start + i * PAGE, length: PAGE, source: "read", fileOffset: 0 } : {
        addr: start + i * PAGE,
        length: PAGE,
        source: "parent",
        depth: 1,
        fileOffset: i * PAGE,
      },
    );
  }
  const plan = planPages(1, [vma], ["anon-present"], () => undefined, {
    scanned: { start, end, regions: [{ start, end, anon: true }] },
    split: (run) => {
      assert.deepEqual(run, { addr: start, length: pages * PAGE });
      return pieces;
    },
  });
  assert.equal(plan.pieces[0].length, pages);
  assert.equal(plan.readBytes, (pages / 2) * PAGE);
  assert.equal(plan.parentBytes, (pages / 2) * PAGE);
});
