/**
 * The mapping checks of engine/image/validate.ts with addresses parsed as
 * numbers where exact and as bigints beyond 13 hex digits
 * (engine/image/hexnum.ts): the same verdicts either way.
 */

import assert from "node:assert/strict";
import { processProblem } from "../engine/image/validate.ts";
import { minimalProcessImage } from "./helpers/minimal_image.ts";

function image(mappings: { start: string; end: string; offset?: string; perms?: string }[]) {
  return minimalProcessImage(mappings.map((m) => ({
    kind: "anon",
    name: "",
    offset: "0x0",
    perms: "rw-p",
    ...m,
  })));
}

Deno.test("validate: mapping bounds, order and alignment, numbers and bigints alike", () => {
  const ok = image([
    { start: "0x400000", end: "0x401000" },
    { start: "0x7ffc0000", end: "0x7ffe0000", offset: "0x1000" },
  ]);
  assert.equal(processProblem(ok), undefined);
  const cases: [string, ReturnType<typeof image>][] = [
    ["is malformed", image([{ start: "0x400800", end: "0x401000" }])],
    ["is malformed", image([{ start: "0x401000", end: "0x401000" }])],
    [
      "overlaps the previous mapping",
      image([
        { start: "0x400000", end: "0x402000" },
        { start: "0x401000", end: "0x403000" },
      ]),
    ],
    ["overlaps the bootstrap range", image([{ start: "0x10100000", end: "0x10101000" }])],
    [
      "has an unaligned file offset",
      image([{ start: "0x400000", end: "0x401000", offset: "0x10" }]),
    ],
    // 16 hex digits: parsed as bigints.
    ["lies beyond user space", image([{ start: "0x400000", end: "0xffff800000000000" }])],
    ["is malformed", image([{ start: "0xffff800000000800", end: "0xffff800000001000" }])],
    [
      "has an unaligned file offset",
      image([
        { start: "0x400000", end: "0x401000", offset: "0x1000000000000010" },
      ]),
    ],
    ["has bad permissions", image([{ start: "0x400000", end: "0x401000", perms: "rwxx" }])],
  ];
  for (const [want, img] of cases) {
    assert.match(processProblem(img) ?? "(none)", new RegExp(want), want);
  }
  // A file offset of 16 hex digits that is aligned is fine.
  assert.equal(
    processProblem(image([{ start: "0x400000", end: "0x401000", offset: "0x1000000000001000" }])),
    undefined,
  );
});
