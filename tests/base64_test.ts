/** engine/base64.ts: round trips, and node:buffer's results on text that is not canonical base64. */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { decodeBase64, encodeBase64 } from "../engine/base64.ts";
import { Rng } from "../scripts/fuzz/mutate.ts";

Deno.test("base64: round trips and node:buffer's decoding of damaged text", () => {
  const rng = new Rng(0xb64);
  for (let n = 0; n < 70; n++) {
    const bytes = new Uint8Array(n).map(() => rng.int(256));
    const text = encodeBase64(bytes);
    assert.equal(text, Buffer.from(bytes).toString("base64"));
    assert.deepEqual(decodeBase64(text), bytes);
  }
  const alphabet = "ABCxyz019+/=-_ \n.*";
  for (let i = 0; i < 3000; i++) {
    const len = rng.int(24);
    let s = "";
    for (let j = 0; j < len; j++) s += alphabet[rng.int(alphabet.length)];
    assert.deepEqual(
      decodeBase64(s),
      new Uint8Array(Buffer.from(s, "base64")),
      JSON.stringify(s),
    );
  }
});
