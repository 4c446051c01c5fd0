/** engine/perms.ts: the permission texts' table against their bits, both ways. */

import assert from "node:assert/strict";
import { PERMS_TEXT, permsBits } from "../engine/perms.ts";

Deno.test("perms: the table's text of each 4-bit value, and its bits back", () => {
  assert.equal(PERMS_TEXT.length, 16);
  for (let b = 0; b < 16; b++) {
    const text = (b & 1 ? "r" : "-") + (b & 2 ? "w" : "-") + (b & 4 ? "x" : "-") +
      (b & 8 ? "s" : "p");
    assert.equal(PERMS_TEXT[b], text, `bits ${b}`);
    assert.equal(permsBits(text), b);
  }
  for (const bad of ["rwx", "rwxq", "Rwxp", "rwxpp", 7, undefined]) {
    assert.equal(permsBits(bad), -1);
  }
});
