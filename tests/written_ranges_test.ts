/** engine/dump/written_ranges.ts: runs cut at written ranges, every byte once, offsets moved. */

import assert from "node:assert/strict";
import { splitAtWritten } from "../engine/dump/written_ranges.ts";

Deno.test("splitAtWritten: pieces in order, written ones marked, file offsets follow addresses", () => {
  const runs = [
    { addr: 0, length: 100, fileOffset: 1000, depth: 2 },
    { addr: 200, length: 50, fileOffset: 5000, depth: 1 },
  ];
  const written: [number, number][] = [[10, 20], [90, 210], [240, 300]];
  const out = splitAtWritten(runs, written).map((p) =>
    `${p.piece.addr}+${p.piece.length}@${p.piece.fileOffset}/${p.piece.depth}${
      p.written ? "w" : ""
    }`
  );
  assert.deepEqual(out, [
    "0+10@1000/2",
    "10+10@1010/2w",
    "20+70@1020/2",
    "90+10@1090/2w",
    "200+10@5000/1w",
    "210+30@5010/1",
    "240+10@5040/1w",
  ]);
  assert.deepEqual(splitAtWritten(runs, []).map((p) => p.written), [false, false]);
});
