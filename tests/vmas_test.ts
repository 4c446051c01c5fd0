/**
 * engine/dump/vmas.ts: `chooseBootstrap` (which skips the copy and sort of
 * areas already in address order, and makes no bigint per area) picks the
 * same range as the plain reference below, on random layouts, sorted or not.
 */

import assert from "node:assert/strict";
import { chooseBootstrap, type Vma } from "../engine/dump/vmas.ts";

const MiB = 1n << 20n;

/** The reference: sort a copy, then the first fitting candidate from 1 TiB up. */
function reference(vmas: readonly Vma[], size: number): bigint {
  const margin = 16n * MiB;
  const len = (BigInt(size) + 2n * MiB - 1n) & ~(2n * MiB - 1n);
  const sorted = [...vmas].filter((v) => v.path !== "[vsyscall]").sort((a, b) =>
    a.start < b.start ? -1 : 1
  );
  let candidate = 1n << 40n;
  for (const v of sorted) {
    if (v.end + margin <= candidate) continue;
    if (candidate + len + margin <= v.start) return candidate;
    candidate = (v.end + margin + 2n * MiB - 1n) & ~(2n * MiB - 1n);
  }
  if (candidate + len < 0x7ff000000000n) return candidate;
  throw new Error("no free address range for the restore bootstrap");
}

function area(start: bigint, end: bigint, path = ""): Vma {
  return { start, end, perms: "rw-p", offset: 0n, dev: "00:00", inode: 0, path, vmFlags: [] };
}

Deno.test("chooseBootstrap equals the sorting reference on random layouts", () => {
  let seed = 12345;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let round = 0; round < 500; round++) {
    const vmas: Vma[] = [];
    let at = (1n << 40n) - 64n * MiB + BigInt(rand(4096)) * 4096n;
    const n = 1 + rand(60);
    for (let i = 0; i < n; i++) {
      at += BigInt(rand(3) === 0 ? rand(40) : 0) * MiB + BigInt(rand(64)) * 4096n;
      const len = BigInt(1 + rand(8)) * (rand(4) === 0 ? MiB : 4096n);
      vmas.push(area(at, at + len, rand(20) === 0 ? "[vsyscall]" : ""));
      at += len;
    }
    if (round % 3 === 0) vmas.reverse();
    const size = (1 + rand(64)) << 20;
    assert.equal(chooseBootstrap(vmas, size), reference(vmas, size), `round ${round}`);
  }
});
