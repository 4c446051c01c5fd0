/**
 * The stub's code written from its literal template (engine/restore/stub.ts
 * `stubCode`, issue 10, fifth pass, branch mapsrestore2) is byte for byte
 * what the assembler gives (`buildStub`), with the same entry points and
 * stops, for layouts at random addresses across the whole 64-bit range.
 */

import assert from "node:assert/strict";
import { buildStub, stubCode } from "../engine/restore/stub.ts";

/** A seeded 64-bit value (splitmix64): the same layouts every run. */
function rng(seed: bigint): () => bigint {
  let s = seed;
  return () => {
    s = BigInt.asUintN(64, s + 0x9e3779b97f4a7c15n);
    let z = s;
    z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
    z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
    return z ^ (z >> 31n);
  };
}

Deno.test("stubCode: the assembler's bytes and addresses for any layout", () => {
  const next = rng(42n);
  const layouts = [
    { base: 0n, slotsAddress: 0n, mainProgram: 0n, standaloneProgram: 0n },
    {
      base: 0x7f0000000000n,
      slotsAddress: 0x7f0000000180n,
      mainProgram: 0x7f0000001000n,
      standaloneProgram: 0x7f0000000400n,
    },
  ];
  for (let k = 0; k < 200; k++) {
    const base = next() & ~0xfffn;
    layouts.push({
      base,
      slotsAddress: next(),
      mainProgram: next() >> BigInt(k % 64),
      standaloneProgram: next() >> BigInt((k * 7) % 64),
    });
  }
  for (const layout of layouts) {
    const want = buildStub(layout);
    const got = stubCode(layout);
    assert.deepEqual(
      got,
      want,
      JSON.stringify(layout, (_, v) => typeof v === "bigint" ? `0x${v.toString(16)}` : v),
    );
  }
  // Each call gets its own bytes (the template is not handed out).
  const a = stubCode(layouts[1]);
  a.code[0] ^= 0xff;
  assert.deepEqual(stubCode(layouts[1]).code, buildStub(layouts[1]).code);
});
