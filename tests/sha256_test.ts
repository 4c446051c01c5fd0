/** engine/sha256.ts gives node:crypto's SHA-256. */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { sha256Hex } from "../engine/sha256.ts";
import { hashVdso, readVdso } from "../engine/vdso.ts";
import { Rng } from "../scripts/fuzz/mutate.ts";

Deno.test("sha256: the digests of node:crypto, every length around the block boundaries", () => {
  const rng = new Rng(0x256);
  const lengths = [...Array(200).keys(), 1000, 4095, 4096, 8192, 65537];
  for (const n of lengths) {
    const bytes = new Uint8Array(n).map(() => rng.int(256));
    assert.equal(sha256Hex(bytes), createHash("sha256").update(bytes).digest("hex"), `${n} bytes`);
  }
  assert.equal(
    sha256Hex(new TextEncoder().encode("abc")),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
});

Deno.test("hashVdso: WebCrypto's digest of the vdso equals engine/sha256.ts's (the images' value)", async () => {
  const copy = readVdso(Deno.pid);
  assert.ok(copy.code.length > 0);
  const { sha256, layout } = await hashVdso(copy);
  assert.equal(sha256, sha256Hex(copy.code));
  assert.deepEqual(layout, copy.layout);
  assert.equal((await hashVdso({ layout: [], code: new Uint8Array(0) })).sha256, "");
});
