/**
 * The read image's VmFlags lists, shared and frozen
 * (engine/image/flag_lists.ts): equal items give one frozen list, other
 * items another, the list handed in is copied and never changed, and
 * neither the order of calls nor the number of distinct lists changes what
 * comes back.
 */

import assert from "node:assert/strict";
import { sharedFlagList } from "../engine/image/flag_lists.ts";

Deno.test("sharedFlagList: equal items, one frozen list; the given list is not kept", () => {
  const input = ["rd", "wr", "mr", "mw", "me", "ac"];
  const a = sharedFlagList(input);
  assert.ok(Object.isFrozen(a));
  assert.notEqual(a, input, "a copy");
  assert.deepEqual(a, ["rd", "wr", "mr", "mw", "me", "ac"]);
  assert.ok(!Object.isFrozen(input), "the given list is not frozen");
  input.push("lo"); // a change to the given list afterwards reaches nothing shared
  assert.deepEqual(a, ["rd", "wr", "mr", "mw", "me", "ac"]);
  assert.equal(sharedFlagList(["rd", "wr", "mr", "mw", "me", "ac"]), a);
  assert.throws(() => (a as string[]).push("x"), TypeError);
});

Deno.test("sharedFlagList: lists that differ get different lists, whatever the order", () => {
  // Items that a joined text would confuse: a space, a comma, quotes, empty strings.
  const lists = [
    ["rd", "wr"],
    ["rd wr"],
    ["rd", "wr", ""],
    ["", "rd", "wr"],
    [],
    [""],
    ['r"d', "wr"],
    ["rd,wr"],
    ["rd", "mr", "mw", "me", "ac"],
    ["rd", "wr", "mr", "mw", "me", "ac"],
    ["rd", "wr", "mr", "mw", "me", "ac", "sd"],
  ];
  let seed = 11;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const got = new Map<number, readonly string[]>();
  for (let i = 0; i < 3000; i++) {
    // Mostly two lists alternating (the common image), sometimes any other.
    const k = rnd() < 0.8 ? 8 + (i % 2) : Math.floor(rnd() * lists.length);
    const out = sharedFlagList([...lists[k]]);
    assert.deepEqual(out, lists[k], `call ${i}, list ${k}`);
    assert.ok(Object.isFrozen(out));
    const before = got.get(k);
    if (before) assert.equal(out, before, `call ${i}: list ${k} shared`);
    else got.set(k, out);
  }
  assert.equal(new Set(got.values()).size, got.size, "one list per distinct items");
});

Deno.test("sharedFlagList: many distinct lists (beyond what it remembers) still come back equal", () => {
  for (let i = 0; i < 10_000; i++) {
    const items = [`f${i}`, "rd"];
    const out = sharedFlagList(items);
    assert.deepEqual(out, items);
    assert.equal(sharedFlagList([`f${i}`, "rd"]), out, "the last list answers by identity");
  }
  assert.deepEqual(sharedFlagList(["f3", "rd"]), ["f3", "rd"]);
});
