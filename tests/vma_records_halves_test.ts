/**
 * The BPF iterator's records read as 32-bit halves (issue 10, eighth pass,
 * branch mapsdump): engine/proc/vma_flags_bpf.ts `vmaRecordsOf` gives the
 * 64-bit values of the records' words, whatever their high halves and the
 * bytes' offset in their buffer; engine/dump/vm_flags.ts `holdsOtherBit`
 * answers what the memo's bigint test (`(flags & ~bits) !== 0n` for some
 * record) answered. No processes.
 *
 * @module
 */

import assert from "node:assert/strict";
import { policyStarts, vmaRecordsOf } from "../engine/proc/vma_flags_bpf.ts";
import { holdsOtherBit } from "../engine/dump/vm_flags.ts";

let seed = 977;
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
const u32 = () => BigInt(Math.floor(rnd() * 2 ** 32));
const u64 = () => (pick([0n, u32(), 0xffffffffn]) << 32n) | pick([0n, u32(), 0xffffffffn]);

Deno.test("vmaRecordsOf: every 64-bit value of the records' words, at any 8-byte offset", () => {
  for (let round = 0; round < 300; round++) {
    const count = pick([0, 1, 2, 7, 1365, 1366]);
    const lead = pick([0, 1, 3]); // words before the records in the buffer
    const words = new BigUint64Array(lead + 4 * count);
    for (let i = 0; i < words.length; i++) words[i] = u64();
    const bytes = new Uint8Array(words.buffer, 8 * lead, 32 * count);
    const r = vmaRecordsOf(bytes);
    assert.equal(r.count, count);
    const policies = policyStarts(bytes);
    for (let i = 0; i < count; i++) {
      assert.equal(r.start[i], words[lead + 4 * i]);
      assert.equal(r.end[i], words[lead + 4 * i + 1]);
      assert.equal(r.flags[i], words[lead + 4 * i + 2]);
      // (The 4th word, vm_policy: its area's start is listed when it is not 0.)
      if (words[lead + 4 * i + 3] !== 0n) assert.ok(policies.has(words[lead + 4 * i]));
    }
    const withPolicy = new Set<bigint>();
    for (let i = 0; i < count; i++) {
      if (words[lead + 4 * i + 3] !== 0n) withPolicy.add(words[lead + 4 * i]);
    }
    assert.deepEqual(policies, withPolicy);
  }
});

/** The memo's test as it was: some record's flags hold a bit outside `bits`. */
function reference(flags: BigUint64Array, count: number, bits: bigint): boolean {
  const others = ~bits;
  for (let i = 0; i < count; i++) if ((flags[i] & others) !== 0n) return true;
  return false;
}

Deno.test("holdsOtherBit: what the bigint test gave, bits in either half", () => {
  let held = 0, clean = 0;
  for (let round = 0; round < 2000; round++) {
    const count = pick([0, 1, 2, 50, 1000]);
    const bits = pick([0n, 0x73n, 0x100073n, 0x8000000000100073n, u64(), 0xffffffffffffffffn]);
    const words = new BigUint64Array(4 * count);
    for (let i = 0; i < count; i++) {
      // Mostly flags within `bits`; sometimes one bit outside it, low or high half.
      let flags = u64() & bits;
      if (rnd() < 0.002) flags |= 1n << BigInt(Math.floor(rnd() * 64));
      words[4 * i + 2] = flags;
    }
    const r = vmaRecordsOf(new Uint8Array(words.buffer));
    const want = reference(r.flags, r.count, bits);
    assert.equal(holdsOtherBit(r, bits), want, `round ${round}`);
    if (want) held++;
    else clean++;
  }
  assert.ok(held > 50 && clean > 50, `${held} with another bit, ${clean} without`);
});
