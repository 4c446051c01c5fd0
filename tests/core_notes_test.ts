/**
 * engine/image/core_notes.ts `encodeCoreNotes` writes the same bytes as
 * `encodeNotes(coreNoteSpecs(proc))`: on the image of a real dump of
 * tests/targets/rt_threads.c (six threads, real registers and XSAVE areas),
 * and on synthetic processes that vary what the notes depend on (the main
 * thread anywhere in the list or absent, no XSAVE, one shorter than the FPU
 * area, sizes not a multiple of 4, pending signals in and out of range,
 * missing registers and mask, all-ones values, no threads).
 */

import assert from "node:assert/strict";
import { encodeCoreNotes } from "../engine/image/core_notes.ts";
import { coreNoteSpecs, encodeNotes } from "../engine/image/notes.ts";
import { readImageFile, USER_REGS_FIELDS } from "../engine/image/mod.ts";
import type { ProcessImage } from "../engine/model.ts";
import { checkpoint } from "../engine/dump/mod.ts";
import { startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";
import { withTempDir } from "./helpers/fs.ts";

/** Asserts that both encoders give the same bytes for `proc`. */
function assertSame(proc: ProcessImage, what: string): void {
  const want = encodeNotes(coreNoteSpecs(proc));
  const got = encodeCoreNotes(proc);
  assert.equal(got.length, want.length, `${what}: length`);
  const at = got.findIndex((b, i) => b !== want[i]);
  assert.equal(at, -1, `${what}: first differing byte at ${at}`);
}

/** A deterministic pseudo-random source (xorshift32). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/** A 64-bit hex value of `digits` random hex digits. */
function hex(next: () => number, digits: number): string {
  let s = "";
  for (let i = 0; i < digits; i++) s += (next() % 16).toString(16);
  return `0x${s.replace(/^0+(?=.)/, "")}`;
}

/** A synthetic process of `threads` threads, its fields varied by `seed`. */
function synthetic(seed: number, threads: number): ProcessImage {
  const next = rng(seed);
  const pid = 1000 + seed;
  const tids = Array.from({ length: threads }, (_, i) => pid + i);
  // The main thread at a random place, or (1 in 5) absent.
  for (let i = tids.length - 1; i > 0; i--) {
    const j = next() % (i + 1);
    [tids[i], tids[j]] = [tids[j], tids[i]];
  }
  if (next() % 5 === 0 && tids.length) tids[0] = pid + 5000;
  const xsaveSizes = [0, 100, 511, 512, 513, 832, 2440, 2696, 2699];
  return {
    pid,
    ppid: next() % 4000,
    pgid: next() % 4000,
    sid: next() % 2 ? 0 : next() % 4000,
    comm: `proc${seed}`,
    cmdline: ["/bin/x", `--seed=${seed}`],
    creds: { uid: [next() % 2000, 0, 0, 0], gid: [next() % 2000, 0, 0, 0], groups: [] },
    auxv: [[6, "0x1000"], [33, hex(next, 12)]],
    mappings: [{
      start: "0x400000",
      end: "0x401000",
      perms: "r-xp",
      offset: "0x0",
      kind: "file-private",
      name: "/bin/x",
      vmFlags: [],
      pages: [],
    }],
    threads: tids.map((tid) => {
      const regs: Record<string, string> = {};
      for (const name of USER_REGS_FIELDS) {
        const r = next() % 10;
        if (r === 0) continue; // missing: written as 0
        regs[name] = r === 1 ? "0xffffffffffffffff" : hex(next, 1 + next() % 16);
      }
      const size = xsaveSizes[next() % xsaveSizes.length];
      const xsave = Uint8Array.from({ length: size }, () => next() & 0xff);
      return {
        tid,
        regs,
        xsave: size === 0 && next() % 2 ? "" : xsave.toBase64(),
        sigmask: next() % 4 === 0 ? "" : hex(next, 16),
        pending: Array.from({ length: next() % 4 }, () => ({ signo: next() % 70 })),
      };
    }),
  } as unknown as ProcessImage;
}

Deno.test("core notes: one buffer, the same bytes as the note specs (synthetic)", () => {
  for (let seed = 1; seed <= 300; seed++) {
    assertSame(synthetic(seed, seed % 9), `seed ${seed}`);
  }
});

Deno.test(
  "core notes: one buffer, the same bytes as the note specs (a dump of rt_threads)",
  withTargets(async () => {
    const { t } = await startTriggered("rt_threads", /^ready pid=(\d+) tids=([\d,]+)$/m);
    await withTempDir("cryo-core-notes-", async (dir) => {
      await checkpoint(t.pid, { dir: `${dir}/img`, leaveRunning: true, sync: false });
      const info = await readImageFile(`${dir}/img/${t.pid}.elf`);
      assert.equal(info.process.threads.length, 6);
      assertSame(info.process, "rt_threads");
      // The image writer wrote exactly those bytes as its core notes section.
      const section = info.sections.find((s) => s.name === ".note.core")!;
      const file = await Deno.readFile(`${dir}/img/${t.pid}.elf`);
      const want = encodeNotes(coreNoteSpecs(info.process));
      assert.equal(section.size, want.length);
      const bytes = file.subarray(section.offset, section.offset + section.size);
      assert.equal(bytes.findIndex((b, i) => b !== want[i]), -1, "the section's bytes");
    });
  }),
);
