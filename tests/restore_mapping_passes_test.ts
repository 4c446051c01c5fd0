/**
 * The per-mapping passes of a restore's plan made cheaper (issue 10, fourth
 * pass, branch mapsrestore) give the same results as the plain ways:
 * `hexNum`'s memory of the last text, the note's UTF-8 decode, the shape
 * check's fast path on texts equal to ones that passed, the madvise
 * flags of a mapping emitted after lists compared against the last two, the
 * member bounds of an anonymous run parsed once, and the bounds checks of
 * validate.ts on numbers.
 */

import assert from "node:assert/strict";
import { hexNum } from "../engine/image/hexnum.ts";
import { decodeUtf8 } from "../engine/image/reader.ts";
import { emitVmFlags, MADVISE_FOR_FLAG } from "../engine/memory/flags.ts";
import { anonRunLength, emitAnonRun } from "../engine/restore/anon_runs.ts";
import { type Op, ProgramBuilder } from "../engine/program/builder.ts";
import { processProblem } from "../engine/image/validate.ts";
import { plainMappingFits } from "../engine/image/mapping_fast.ts";
import { mappingChecks, schemaProblem } from "../engine/image/schema.ts";
import { SYS } from "../ffi/sysno.ts";
import type { Mapping } from "../engine/model.ts";
import { minimalProcessImage } from "./helpers/minimal_image.ts";

/** The reference parse: what hexNum gave before it remembered anything. */
const reference = (h: string) => h.length <= 15 ? parseInt(h, 16) : BigInt(h);

Deno.test("hexNum: the remembered last text gives the value a fresh parse gives", () => {
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const texts = [
    "0x0",
    "0x1000",
    "0x7fb96193b000",
    "0x00007fb96193b000", // 16 digits: a bigint of the same value
    "0xffff800000000000",
    "0xFFFF",
    "0x1fffffffffffff",
  ];
  let prev = "";
  for (let i = 0; i < 5000; i++) {
    // Repeats (the last text again), alternations and fresh texts, in random order.
    const r = rnd();
    const h = r < 0.3
      ? prev
      : r < 0.6
      ? texts[Math.floor(rnd() * texts.length)]
      : "0x" + Math.floor(rnd() * 2 ** 47).toString(16);
    // A new string object of the same text, as JSON.parse makes for each field.
    const copy = (" " + h).slice(1);
    const got = hexNum(copy);
    const want = reference(h);
    assert.equal(typeof got, typeof want, h);
    assert.equal(got, want, h);
    prev = h;
  }
});

Deno.test("the note's UTF-8 decode: the same text, the same refusal as a fatal decoder", () => {
  const fatal = (b: Uint8Array) => new TextDecoder("utf-8", { fatal: true }).decode(b);
  const enc = new TextEncoder();
  for (
    const s of ["", '{"a":"b"}', "naïve ☃ 𝄞", "a real \uFFFD in the text", "\uFEFFbom first"]
  ) {
    const b = enc.encode(s);
    assert.equal(decodeUtf8(b), fatal(b));
  }
  const bad = [
    new Uint8Array([0x7b, 0xff, 0x7d]),
    new Uint8Array([0x61, 0xc3]), // truncated sequence
    new Uint8Array([0xed, 0xa0, 0x80]), // a surrogate
    new Uint8Array([...enc.encode("\uFFFD"), 0x80]), // a real U+FFFD, then an invalid byte
  ];
  for (const b of bad) {
    let want = "";
    try {
      fatal(b);
    } catch (e) {
      want = (e as Error).message;
    }
    assert.notEqual(want, "");
    assert.throws(() => decodeUtf8(b), (e: Error) => e.message === want);
  }
});

function mapping(start: number, end: number, perms: string, vmFlags: string[], pages = true) {
  const h = (n: number) => `0x${n.toString(16)}`;
  return {
    start: h(start),
    end: h(end),
    perms,
    offset: "0x0",
    kind: "anon",
    name: "",
    vmFlags,
    pages: pages ? [{ addr: h(start), length: end - start, fileOffset: 0x1000 }] : [],
  } as unknown as Mapping;
}

/** The ops of a program as plain fields (no comments). */
function opsOf(p: ProgramBuilder): { nr: number; args: bigint[] }[] {
  return p.build().ops.map((o: Op) => ({ nr: o.nr, args: o.args.slice(0, 3) }));
}

/** What emitVmFlags emitted before it compared lists: a madvise per madvise flag, in order. */
function referenceVmFlags(p: ProgramBuilder, m: Mapping): void {
  for (const f of m.vmFlags) {
    const advice = MADVISE_FOR_FLAG[f];
    if (advice === undefined) continue;
    p.op(SYS.madvise, [BigInt(m.start), BigInt(m.end) - BigInt(m.start), advice]);
  }
}

Deno.test("emitVmFlags: lists compared against the last two give the ops of the plain way", () => {
  const rw = ["rd", "wr", "mr", "mw", "me", "ac"];
  const ro = ["rd", "mr", "mw", "me", "ac"];
  const got = new ProgramBuilder(0x100000000n);
  const want = new ProgramBuilder(0x100000000n);
  let at = 0x10000000;
  const next = (perms: string, flags: string[]) => {
    const m = mapping(at, at + 0x1000, perms, flags);
    at += 0x1000;
    emitVmFlags(got, m);
    referenceVmFlags(want, m);
  };
  for (let i = 0; i < 20; i++) next(i % 2 ? "r--p" : "rw-p", (i % 2 ? ro : rw).slice());
  next("rw-p", [...rw, "dc"]); // a madvise flag after plain lists
  next("rw-p", [...rw, "wf", "dd"]);
  next("rw-p", rw.slice());
  next("rw-p", []);
  next("rw-p", ["rd", "wr", "hg"]);
  next("rw-p", ["rd", "wr"]); // a prefix of a list seen before
  // A list object seen plain, then given a madvise flag in place: its madvise is emitted.
  const shared = rw.slice();
  next("rw-p", shared);
  shared.push("mg");
  next("rw-p", shared);
  next("rw-p", ["sr", "rr", "nh"]);
  const g = opsOf(got);
  assert.deepEqual(g, opsOf(want));
  assert.equal(g.length, 1 + 2 + 1 + 1 + 3);
});

/** The run's ops the plain way: parse every address, mprotect each read-only member. */
function referenceRun(p: ProgramBuilder, ms: Mapping[]): void {
  const start = BigInt(ms[0].start), end = BigInt(ms[ms.length - 1].end);
  p.op(SYS.mmap, [start, end - start, 3, 0x32, -1, 0]);
  let runAddr = 0n, runLen = 0, runOff = 0;
  const flush = () => {
    if (runLen === 0) return;
    if (runLen >= 64 << 10) p.op(SYS.madvise, [runAddr, runLen, 23 /* MADV_POPULATE_WRITE */]);
    p.op(SYS.pread64, [{ slot: 0 }, runAddr, runLen, runOff]);
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
    if (m.perms[1] !== "w") {
      p.op(SYS.mprotect, [BigInt(m.start), BigInt(m.end) - BigInt(m.start), 1]);
    }
    referenceVmFlags(p, m);
  }
}

Deno.test("emitAnonRun: member bounds parsed once give the ops of the plain way", () => {
  const ms: Mapping[] = [];
  let at = 0x7f0000000000, off = 0x2000;
  const flags = ["rd", "wr", "mr", "mw", "me", "ac"];
  for (let i = 0; i < 40; i++) {
    const len = 0x1000 * (1 + (i % 3));
    const m = mapping(at, at + len, i % 2 ? "r--p" : "rw-p", i === 7 ? [...flags, "dc"] : flags);
    // Page runs that start inside their member, several per member, some in file order
    // with the member before (one read), some not.
    if (i % 5 === 0 && len >= 0x2000) {
      m.pages = [{
        addr: `0x${(at + 0x1000).toString(16)}`,
        length: len - 0x1000,
        fileOffset: off,
      }];
      off += 0x3000;
    } else if (i % 5 === 1 && len >= 0x2000) {
      m.pages = [
        { addr: m.start, length: 0x1000, fileOffset: off },
        { addr: `0x${(at + 0x1000).toString(16)}`, length: len - 0x1000, fileOffset: off + 0x1000 },
      ];
      off += len;
    } else {
      m.pages[0].fileOffset = off;
      off += len;
    }
    ms.push(m);
    at += len;
  }
  assert.equal(anonRunLength(ms, 0), ms.length);
  const got = new ProgramBuilder(0x100000000n);
  const want = new ProgramBuilder(0x100000000n);
  emitAnonRun(got, ms, 0, ms.length, 0);
  referenceRun(want, ms);
  assert.deepEqual(opsOf(got), opsOf(want));
});

Deno.test("validate: bounds checked as numbers and as bigints give the same verdicts", () => {
  const image = (mappings: { start: string; end: string }[]) =>
    minimalProcessImage(mappings.map((m) => ({
      kind: "anon",
      name: "",
      offset: "0x0",
      perms: "rw-p",
      vmFlags: [],
      pages: [],
      ...m,
    })));
  // Each bound as a number (few digits) and as a bigint (16 digits, leading zeros).
  const wide = (h: string) => "0x" + h.slice(2).padStart(16, "0");
  const cases: [string | undefined, { start: string; end: string }[]][] = [
    [undefined, [{ start: "0x400000", end: "0x401000" }, {
      start: "0x7fff0000",
      end: "0x800000000000",
    }]],
    ["lies beyond user space", [{ start: "0x7ffffffff000", end: "0x800000001000" }]],
    ["overlaps the previous mapping", [{ start: "0x400000", end: "0x402000" }, {
      start: "0x401000",
      end: "0x403000",
    }]],
    ["overlaps the bootstrap range", [{ start: "0x103ff000", end: "0x10400000" }]],
    ["overlaps the bootstrap range", [{ start: "0xffff000", end: "0x10001000" }]],
    [undefined, [{ start: "0xfff0000", end: "0x10000000" }, {
      start: "0x10400000",
      end: "0x10401000",
    }]],
  ];
  for (const [want, ms] of cases) {
    for (const form of ["numbers", "bigints", "mixed"]) {
      const shaped = ms.map((m, i) =>
        form === "numbers"
          ? m
          : form === "bigints"
          ? { start: wide(m.start), end: wide(m.end) }
          : i % 2
          ? { start: m.start, end: wide(m.end) }
          : { start: wide(m.start), end: m.end }
      );
      const got = processProblem(image(shaped));
      if (want === undefined) assert.equal(got, undefined, `${form} ${JSON.stringify(ms)}`);
      else assert.match(got ?? "(none)", new RegExp(want), `${form} ${JSON.stringify(ms)}`);
    }
  }
});

Deno.test("plainMappingFits: texts equal to ones that passed pass, the rest are checked", () => {
  const rec = (start: unknown, end: unknown, offset: unknown = "0x0", addr: unknown = start) => ({
    start,
    end,
    perms: "rw-p",
    offset,
    kind: "anon",
    name: "",
    vmFlags: ["rd", "wr"],
    pages: [{ addr, length: 4096, fileOffset: 8192 }],
  });
  const check = (m: unknown) => schemaProblem(mappingChecks, m) === undefined;
  const seq = [
    rec("0x1000", "0x2000"),
    rec("0x2000", "0x3000"), // start = the end before
    rec("0x3000", "0x4000", "0x0", "0x3000"),
    rec("0x4000", "0xg000"), // a bad end: refused, and not remembered
    rec("0xg000", "0x6000"),
    rec("0x6000", "0x7000", "0x00"),
    rec("0x7000", "0x8000", "0x0", "0x7000 "),
    rec("0x8000", "0x9000", "0x0", "0X8000"),
    rec(0x9000, "0xa000"),
    rec("0xa000", 0xb000),
    rec("0xb000", "0xc000", "0xfffffffffffffffff"),
    rec("0xc000", "0xd000", "0x0", "0x0c000"),
  ];
  for (const m of seq) {
    const fast = plainMappingFits(m);
    if (fast) assert.ok(check(m), JSON.stringify(m));
    assert.equal(fast, check(m), JSON.stringify(m));
  }
});
