/**
 * The page comparison of a child with its parent (engine/memory/inherit.ts)
 * skips the parent's pagemap for a mapping whose stored pages the child
 * maps exclusively (bit 56): that shortcut gives the same images as the
 * full comparison. tests/targets/rt_cow.c (a parent and its child sharing
 * part of a region copy-on-write, each having written some of it) is
 * dumped with the shortcut and without it, the tree left running between:
 * the same mappings inherited, the same pages stored and discarded, the
 * same shared bytes; then it checks its own memory.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { inheritShortcut } from "../engine/memory/inherit.ts";
import { readImageFile } from "../engine/image/reader.ts";
import { assertChecksPassed, RT_COW_CHECKS, RT_COW_READY } from "./helpers/checks.ts";
import { startTriggered, tempImageDir } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

/** Byte ranges [start, end) of `runs`, touching ones merged (file offsets and splits left out). */
function ranges(runs: { addr: string; length: number }[]): string[] {
  const out: [bigint, bigint][] = [];
  for (const r of [...runs].sort((a, b) => (BigInt(a.addr) < BigInt(b.addr) ? -1 : 1))) {
    const s = BigInt(r.addr), e = s + BigInt(r.length);
    const last = out[out.length - 1];
    if (last && last[1] === s) last[1] = e;
    else out.push([s, e]);
  }
  return out.map(([s, e]) => `${s.toString(16)}-${e.toString(16)}`);
}

/** What inheritance decided for each process of an image: its pages, inherited and discarded runs. */
async function inheritanceOf(dir: string, pids: number[]) {
  const out = [];
  for (const pid of pids) {
    const p = (await readImageFile(`${dir}/${pid}.elf`)).process;
    out.push({
      pid,
      inheritsMemory: p.inheritsMemory ?? false,
      // Not the stack: the first dump's injected calls write below the red zone, which may
      // touch a page under it that the second dump then stores (nothing inherited there).
      mappings: p.mappings.filter((m) => m.name !== "[stack]").map((m) => ({
        at: `${m.start}-${m.end} ${m.perms} ${m.name}`,
        inherited: m.inherited ?? false,
        pages: ranges(m.pages),
        discard: ranges(m.discard ?? []),
      })),
    });
  }
  return out;
}

Deno.test(
  "the exclusive-page shortcut of the inheritance check gives the images of the full comparison",
  withTargets(async () => {
    const { t, trigger, ready } = await startTriggered("rt_cow", RT_COW_READY, { passWork: true });
    const pids = [t.pid, Number(ready[2])];
    try {
      const fast = await tempImageDir();
      const before = inheritShortcut.taken;
      const a = await checkpoint(t.pid, { dir: fast, leaveRunning: true, sync: false });
      const taken = inheritShortcut.taken - before;
      const full = await tempImageDir();
      inheritShortcut.exclusive = false;
      let b;
      try {
        b = await checkpoint(t.pid, { dir: full, leaveRunning: true, sync: false });
      } finally {
        inheritShortcut.exclusive = true;
      }
      assert.ok(taken > 0, "the shortcut settled no mapping");
      assert.equal(inheritShortcut.taken - before, taken, "the shortcut ran while turned off");
      assert.ok((a.stats.sharedBytes ?? 0) > 0, "nothing shared: the comparison was not exercised");
      assert.equal(a.stats.sharedBytes, b.stats.sharedBytes);
      assert.deepEqual(await inheritanceOf(fast, pids), await inheritanceOf(full, pids));
      await Promise.all([fast, full].map((d) => Deno.remove(d, { recursive: true })));
    } finally {
      await Deno.writeTextFile(trigger, "");
    }
    assertChecksPassed(t, RT_COW_CHECKS, await t.wait(20000));
  }),
);
