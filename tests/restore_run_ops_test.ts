/**
 * The ops of a run of private anonymous mappings written as blocks (issue
 * 10, fifth pass, branch mapsrestore2) are byte for byte the ops written one
 * at a time: `ProgramBuilder.opsOfNumbers` against `op()`, and
 * `emitAnonRun` (its mprotects gathered, its page stretches compared as
 * numbers) against the plain way, with madvise flags, bigint addresses and
 * page runs that do and do not follow on; and the list of members the
 * passes after the mappings look at (guards, locks, AIO rings) gives what
 * their walk over every mapping gives.
 */

import assert from "node:assert/strict";
import {
  emitMemoryFlagsAfter,
  MADVISE_FOR_FLAG,
  noAdvice,
  quietFlags,
} from "../engine/memory/flags.ts";
import { emitAioRings } from "../engine/memory/aio.ts";
import { anonRunLength, emitAnonRun } from "../engine/restore/anon_runs.ts";
import { ProgramBuilder } from "../engine/program/builder.ts";
import { SYS } from "../ffi/sysno.ts";
import type { Mapping, ProcessImage } from "../engine/model.ts";

const BASE = 0x100000000n;

/** A seeded generator (xorshift32): the same cases every run. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

Deno.test("opsOfNumbers: the same bytes as op() one at a time", () => {
  const rand = rng(7);
  const values: number[] = [];
  for (let k = 0; k < 3 * 200; k++) {
    const kind = k % 4;
    values.push(
      kind === 0
        ? Math.floor(rand() * 2 ** 47) // an address
        : kind === 1
        ? 2 ** 53 - 1 - Math.floor(rand() * 1000) // near the safe limit
        : kind === 2
        ? Math.floor(rand() * 2 ** 32) // around the 32-bit split
        : Math.floor(rand() * 8),
    );
  }
  for (const arity of [1, 3, 6]) {
    const count = Math.floor(values.length / arity);
    const got = new ProgramBuilder(BASE), want = new ProgramBuilder(BASE);
    got.op(SYS.getpid, [], { comment: "before" });
    want.op(SYS.getpid, [], { comment: "before" });
    got.opsOfNumbers(SYS.mprotect, arity, values, count);
    for (let k = 0; k < count; k++) {
      want.op(SYS.mprotect, values.slice(k * arity, (k + 1) * arity));
    }
    got.op(SYS.getppid, []);
    want.op(SYS.getppid, []);
    assert.equal(got.opCount, count + 2);
    assert.deepEqual(got.build().bytes, want.build().bytes);
  }
});

Deno.test("opsOfNumbers: a bad value throws and leaves no op behind", () => {
  for (const bad of [-1, 2 ** 53, 1.5, NaN]) {
    const got = new ProgramBuilder(BASE), want = new ProgramBuilder(BASE);
    got.op(SYS.getpid, []);
    want.op(SYS.getpid, []);
    assert.throws(() => got.opsOfNumbers(SYS.mprotect, 3, [0x1000, 0x1000, 1, 0x2000, bad, 1], 2));
    assert.equal(got.opCount, 1);
    // The next ops are encoded as if the failed call never happened (zero bytes handed out).
    got.op(SYS.mprotect, [0x3000, 0x1000, 1]);
    want.op(SYS.mprotect, [0x3000, 0x1000, 1]);
    got.opsOfNumbers(SYS.mprotect, 3, [0x5000, 0x1000, 1], 1);
    want.op(SYS.mprotect, [0x5000, 0x1000, 1]);
    assert.deepEqual(got.build().bytes, want.build().bytes);
  }
  const b = new ProgramBuilder(BASE);
  b.opsOfNumbers(SYS.mprotect, 3, [], 0);
  assert.equal(b.opCount, 0);
});

/** A private anonymous mapping of `len` bytes at `at` with one page run from `fileOffset`. */
function member(at: bigint, len: number, perms: string, vmFlags: string[], fileOffset: number) {
  const h = (n: bigint) => `0x${n.toString(16)}`;
  return {
    start: h(at),
    end: h(at + BigInt(len)),
    perms,
    offset: "0x0",
    kind: "anon",
    name: "",
    vmFlags,
    pages: [{ addr: h(at), length: len, fileOffset }],
  } as unknown as Mapping;
}

/** The run's ops the plain way: every address a bigint, every op by op(). */
function referenceRun(p: ProgramBuilder, ms: Mapping[]): void {
  const start = BigInt(ms[0].start), end = BigInt(ms[ms.length - 1].end);
  p.op(SYS.mmap, [start, end - start, 3, 0x32, -1, 0], { comment: "x" });
  let runAddr = 0n, runLen = 0, runOff = 0;
  const flush = () => {
    if (runLen === 0) return;
    for (let done = 0; done < runLen; done += 1 << 30) {
      const n = Math.min(1 << 30, runLen - done);
      if (n >= 64 << 10) {
        p.op(SYS.madvise, [runAddr + BigInt(done), n, 23], { allowFail: true });
      }
      p.op(SYS.pread64, [{ slot: 0 }, runAddr + BigInt(done), n, runOff + done]);
    }
  };
  for (const m of ms) {
    for (const r of m.pages) {
      const a = BigInt(r.addr);
      if (runLen > 0 && runOff + runLen === r.fileOffset && runAddr + BigInt(runLen) === a) {
        runLen += r.length;
        continue;
      }
      flush();
      runAddr = a;
      runLen = r.length;
      runOff = r.fileOffset;
    }
  }
  flush();
  for (const m of ms) {
    const s = BigInt(m.start), len = BigInt(m.end) - s;
    if (m.perms[1] !== "w") p.op(SYS.mprotect, [s, len, 1]);
    for (const f of m.vmFlags) {
      const advice = MADVISE_FOR_FLAG[f];
      if (advice !== undefined) p.op(SYS.madvise, [s, len, advice]);
    }
  }
}

Deno.test("emitAnonRun: mprotects as blocks, byte for byte the plain ops", () => {
  const rand = rng(11);
  const rw = ["rd", "wr", "mr", "mw", "me", "ac", "sd"];
  const ro = ["rd", "mr", "mw", "me", "ac", "sd"];
  // (A huge-page advice keeps a mapping out of runs: joinable.)
  const advices = Object.keys(MADVISE_FOR_FLAG).filter((f) => f !== "hg" && f !== "nh");
  // User-space addresses (numbers), and addresses beyond 2^52 (bigints, op() one at a time).
  for (const base of [0x7f0000000000n, 0xfff0000000000000n, (1n << 52n) - 0x8000n]) {
    for (let round = 0; round < 6; round++) {
      const ms: Mapping[] = [];
      let at = base, off = 0x3000;
      const n = 2 + Math.floor(rand() * 300);
      for (let k = 0; k < n; k++) {
        const len = 0x1000 * (1 + Math.floor(rand() * 20));
        const readOnly = k % 2 === 1; // (alike neighbours would be kept apart: no run)
        const flags = (readOnly ? ro : rw).slice();
        if (rand() < 0.1) flags.push(advices[Math.floor(rand() * advices.length)]);
        // Some page runs follow on in the file, some do not.
        if (rand() < 0.2) off += 0x1000;
        ms.push(member(at, len, readOnly ? "r--p" : "rw-p", flags, off));
        off += len;
        at += BigInt(len);
      }
      assert.equal(anonRunLength(ms, 0), ms.length);
      const got = new ProgramBuilder(BASE), want = new ProgramBuilder(BASE);
      emitAnonRun(got, ms, 0, ms.length, 0);
      referenceRun(want, ms);
      assert.deepEqual(got.build().bytes, want.build().bytes, `base ${base} round ${round}`);
    }
  }
});

/** 2,000 VmFlags lists of up to 7 flags drawn from `pool` and the madvise flags, seeded. */
function randomFlagLists(seed: number, pool: string[]): string[][] {
  const rand = rng(seed);
  const all = [...pool, ...Object.keys(MADVISE_FOR_FLAG)];
  return Array.from(
    { length: 2000 },
    () =>
      Array.from({ length: Math.floor(rand() * 8) }, () => all[Math.floor(rand() * all.length)]),
  );
}

Deno.test("noAdvice: true exactly when a list has no madvise flag", () => {
  for (const list of randomFlagLists(3, ["rd", "wr", "ex", "mr", "mw", "me", "ac", "sd", "lo"])) {
    assert.equal(
      noAdvice(list),
      !list.some((f) => MADVISE_FOR_FLAG[f] !== undefined),
      list.join(" "),
    );
  }
  // A list seen plain, then given a madvise flag in place, is judged by what it holds now.
  const shared = ["rd", "wr"];
  assert.equal(noAdvice(shared), true);
  shared.push("dd");
  assert.equal(noAdvice(shared), false);
});

Deno.test("emitAnonRun's examine list: the guards, locks and AIO rings of the full passes", () => {
  const rand = rng(5);
  const rw = ["rd", "wr", "mr", "mw", "me", "ac", "sd"];
  const ro = ["rd", "mr", "mw", "me", "ac", "sd"];
  for (let round = 0; round < 20; round++) {
    const ms: Mapping[] = [];
    let at = 0x7f0000000000n, off = 0x3000;
    const n = 2 + Math.floor(rand() * 200);
    for (let k = 0; k < n; k++) {
      const len = 0x1000 * (1 + Math.floor(rand() * 4));
      const readOnly = k % 2 === 1;
      const flags = (readOnly ? ro : rw).slice();
      const x = rand();
      if (x < 0.05) flags.splice(6, 0, "lo");
      else if (x < 0.08) flags.splice(6, 0, "lo", "lf");
      else if (x < 0.12) flags.push("dd");
      const m = member(at, len, readOnly ? "r--p" : "rw-p", flags, off);
      if (rand() < 0.05) m.guards = [{ addr: m.start, length: 0x1000 }];
      ms.push(m);
      off += len;
      at += BigInt(len);
    }
    assert.equal(anonRunLength(ms, 0), ms.length);
    const proc = { mappings: ms } as unknown as ProcessImage;
    const examine: number[] = [];
    emitAnonRun(new ProgramBuilder(BASE), ms, 0, ms.length, 0, undefined, examine);
    for (let k = 1; k < examine.length; k++) assert.ok(examine[k - 1] < examine[k]);
    const got = new ProgramBuilder(BASE), want = new ProgramBuilder(BASE);
    emitMemoryFlagsAfter(got, proc, examine);
    emitMemoryFlagsAfter(want, proc);
    emitAioRings(got, proc, 0x200000n, 3, examine);
    emitAioRings(want, proc, 0x200000n, 3);
    assert.deepEqual(got.build().bytes, want.build().bytes, `round ${round}`);
    // Every member with a lock flag or guards is in the list, and none that is quiet without.
    for (let k = 0; k < ms.length; k++) {
      const loud = ms[k].vmFlags.includes("lo") || ms[k].vmFlags.includes("dd") ||
        ms[k].guards !== undefined;
      assert.equal(examine.includes(k), loud, `member ${k}`);
    }
  }
});

Deno.test("quietFlags: true exactly when a list has no madvise flag and no lock", () => {
  for (const list of randomFlagLists(9, ["rd", "wr", "mr", "mw", "me", "ac", "sd", "lo", "lf"])) {
    const want = !list.some((f) => f === "lo" || MADVISE_FOR_FLAG[f] !== undefined);
    assert.equal(quietFlags(list), want, list.join(" "));
  }
  const shared = ["rd", "wr"];
  assert.equal(quietFlags(shared), true);
  shared.push("lo");
  assert.equal(quietFlags(shared), false);
});

Deno.test("frozen shared lists (the dump's) answer by identity, and only for what they hold", () => {
  const rw = Object.freeze(["rd", "wr", "mr", "mw", "me", "ac"]);
  const ro = Object.freeze(["rd", "mr", "mw", "me", "ac"]);
  const locked = Object.freeze(["rd", "wr", "mr", "mw", "me", "lo", "ac"]);
  const advised = Object.freeze(["rd", "mr", "mw", "me", "ac", "dd"]);
  const grows = Object.freeze(["rd", "wr", "mr", "mw", "me", "gd", "ac"]);
  for (let k = 0; k < 3; k++) {
    assert.equal(quietFlags(rw), true);
    assert.equal(quietFlags(ro), true);
    assert.equal(quietFlags(locked), false);
    assert.equal(quietFlags(advised), false);
    assert.equal(noAdvice(advised), false);
    assert.equal(quietFlags(grows), true);
  }
  // A run of members sharing frozen lists stops at a growsdown member, also after the
  // plain lists were seen (and recognised by identity).
  const ms: Mapping[] = [];
  let at = 0x7f0000000000n;
  for (let k = 0; k < 12; k++) {
    const readOnly = k % 2 === 1;
    const flags = k === 9 ? grows : readOnly ? ro : k === 4 ? locked : rw;
    ms.push(
      member(at, 0x1000, k === 9 ? "rw-p" : readOnly ? "r--p" : "rw-p", flags as string[], 0),
    );
    at += 0x1000n;
  }
  assert.equal(anonRunLength(ms, 0), 9);
  const examine: number[] = [];
  emitAnonRun(new ProgramBuilder(BASE), ms, 0, 9, 0, undefined, examine);
  assert.deepEqual(examine, [4]);
});
