/** The huge pages a restore takes, as the pre-flight counts them (engine/memory/hugetlb.ts). */

import assert from "node:assert/strict";
import { hugePagesNeeded } from "../engine/memory/hugetlb.ts";
import type { GhostFile, Mapping, ProcessImage } from "../engine/model.ts";

const MiB2 = 2 << 20;

function mapping(start: number, pages: number, extra: Partial<Mapping>): Mapping {
  return {
    start: `0x${start.toString(16)}`,
    end: `0x${(start + pages * MiB2).toString(16)}`,
    perms: "rw-p",
    offset: "0x0",
    kind: "anon",
    name: "/anon_hugepage (deleted)",
    vmFlags: ["rd", "wr", "ht"],
    pages: [],
    hugePageSize: MiB2,
    ...extra,
  };
}

const proc = (pid: number, mappings: Mapping[]) => ({ pid, mappings }) as unknown as ProcessImage;

Deno.test("hugetlb pages needed: private and shared anonymous, an inherited shared one once", () => {
  const parent = proc(10, [
    mapping(0x40000000, 3, {}),
    mapping(0x50000000, 2, { kind: "anon-shared", perms: "rw-s" }),
  ]);
  const child = proc(11, [
    mapping(0x40000000, 3, { inherited: true }), // its own private copy still reserves
    mapping(0x50000000, 2, { kind: "anon-shared", perms: "rw-s", inherited: true }),
  ]);
  assert.deepEqual([...hugePagesNeeded([parent, child])], [[MiB2, 8]]);
  // Mappings without a huge page size take none.
  const plain = proc(12, [mapping(0x40000000, 3, { hugePageSize: undefined })]);
  assert.equal(hugePagesNeeded([plain]).size, 0);
});

Deno.test("hugetlb pages needed: a memfd's data pages and the pages its shared mappings cover", () => {
  const ghost = { id: "1:2", hugePageSize: MiB2, extents: [[0, MiB2]] } as unknown as GhostFile;
  const p = proc(10, [
    mapping(0x40000000, 2, {
      kind: "file-shared",
      perms: "rw-s",
      name: "/memfd:x (deleted)",
      ghost: "1:2",
    }),
    mapping(0x50000000, 2, {
      kind: "file-private",
      name: "/memfd:x (deleted)",
      ghost: "1:2",
      pages: [{ addr: "0x50000000", length: MiB2, fileOffset: 0 }],
    }),
  ]);
  // 2 of the memfd (page 0 data, page 1 reserved by the shared mapping) + 1 copied private page.
  assert.deepEqual([...hugePagesNeeded([p], [ghost])], [[MiB2, 3]]);
});
