/**
 * The plan's passes over 10,000 mappings without a long loop in JS code
 * (engine/find_from.ts, issue 10, seventh pass): `findFrom` visits what an
 * indexed loop visits, in order, holes too, and stops where it would; the
 * passes moved onto it (validate's mappings, the shape check's arrays, an
 * anonymous run's length) give the verdicts of their indexed loops, kept
 * here as the reference, on thousands of damaged mapping lists.
 */

import assert from "node:assert/strict";
import { findFrom } from "../engine/find_from.ts";
import { processProblem } from "../engine/image/validate.ts";
import { anonRunLength, joinable } from "../engine/restore/anon_runs.ts";
import * as z from "../engine/image/shape.ts";
import { mappingChecks, schemaProblem } from "../engine/image/schema.ts";
import { USER_REGS_FIELDS } from "../ffi/regs.ts";
import type { Mapping, ProcessImage } from "../engine/model.ts";
import { ProgramBuilder } from "../engine/program/builder.ts";
import { SYS } from "../ffi/sysno.ts";

let seed = 2026;
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];

Deno.test("findFrom: the items an indexed loop visits, in order, holes too, up to the first true", () => {
  for (let round = 0; round < 3000; round++) {
    const n = pick([0, 1, 2, 15, 16, 17, 47, 48, 49, 63, 64, 65, 191, 192, 193, 500, 1000]);
    const items: (number | undefined)[] = [];
    items.length = n;
    for (let k = 0; k < n; k++) if (rnd() < 0.9) items[k] = Math.floor(rnd() * 50);
    const from = rnd() < 0.3 ? 0 : Math.floor(rnd() * (n + 2));
    const to = rnd() < 0.3 ? n : Math.floor(rnd() * (n + 70));
    const stopAt = rnd() < 0.5 ? -1 : Math.floor(rnd() * 50);
    const want: [number, unknown][] = [];
    let wantIndex = -1;
    for (let k = from; k < Math.min(to, n); k++) {
      want.push([k, items[k]]);
      if (items[k] === stopAt) {
        wantIndex = k;
        break;
      }
    }
    const got: [number, unknown][] = [];
    const index = findFrom(
      items,
      (x, k) => {
        got.push([k, x]);
        return x === stopAt;
      },
      from,
      to,
    );
    assert.equal(index, wantIndex, `n=${n} from=${from} to=${to}`);
    assert.deepEqual(got, want, `n=${n} from=${from} to=${to}`);
  }
});

/** validate.ts's mapping pass as an indexed loop (before this pass): the reference. */
function referenceMappingProblem(p: ProcessImage): string | undefined {
  const USER_END = 0x800000000000n;
  const where = (m: { start: string; end: string }) => `mapping ${m.start}-${m.end}`;
  const boot = BigInt(p.bootstrap.start);
  const bootEnd = boot + BigInt(p.bootstrap.size);
  let prevEnd = 0n;
  for (let k = 0; k < p.mappings.length; k++) {
    const m = p.mappings[k];
    if (m.kind === "vsyscall") continue;
    const start = BigInt(m.start), end = BigInt(m.end);
    if (start % 4096n !== 0n || end % 4096n !== 0n || start >= end) {
      return `${where(m)} is malformed`;
    }
    if (end > USER_END) return `${where(m)} lies beyond user space`;
    if (start < prevEnd) return `${where(m)} overlaps the previous mapping`;
    if (start < bootEnd && boot < end) return `${where(m)} overlaps the bootstrap range`;
    if (!/^[r-][w-][x-][ps]$/.test(m.perms)) return `${where(m)} has bad permissions ${m.perms}`;
    if (BigInt(m.offset) % 4096n !== 0n) return `${where(m)} has an unaligned file offset`;
    if (m.kind.startsWith("file")) {
      const path = m.file?.path ?? m.name;
      if (path.includes("\0")) return `${where(m)} file contains a NUL byte`;
      if (!path.startsWith("/")) return `${where(m)} file is not an absolute path`;
      if (path.length > 4096) return `${where(m)} file is longer than PATH_MAX`;
    }
    prevEnd = end;
  }
  return undefined;
}

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** A layout like the bench's (one-page mappings side by side, alternating), with damages. */
function damagedMappings(n: number): Mapping[] {
  const out: Mapping[] = [];
  let at = 0x7f0000000000n;
  for (let k = 0; k < n; k++) {
    const len = rnd() < 0.9 ? 4096n : 4096n * BigInt(1 + Math.floor(rnd() * 4));
    const m: Mapping = {
      start: hex(at),
      end: hex(at + len),
      perms: k % 2 ? "r--p" : "rw-p",
      offset: "0x0",
      kind: "anon",
      name: "",
      vmFlags: k % 2 ? ["rd", "mr", "mw", "me", "ac"] : ["rd", "wr", "mr", "mw", "me", "ac"],
      pages: [{ addr: hex(at), length: Number(len), fileOffset: 8192 + k * 4096 }],
    };
    at += len;
    const d = rnd();
    if (d < 0.004) m.start = hex(BigInt(m.start) + 1n);
    else if (d < 0.008) m.end = m.start;
    else if (d < 0.012) m.start = hex(BigInt(m.start) - 8192n);
    else if (d < 0.016) m.perms = pick(["rwzp", "r-", "rw-q", "----"]);
    else if (d < 0.02) m.offset = pick(["0x10", "0x1000", "0x0000000000001001"]);
    else if (d < 0.024) m.kind = "vsyscall";
    else if (d < 0.028) {
      m.kind = pick(["file-private", "file-shared"]);
      m.name = pick(["/lib/x.so", "relative", "/a\0b", ""]);
    } else if (d < 0.03) m.end = "0xffffffffffff0000";
    else if (d < 0.032) m.start = m.end = "0x00007f0000001000"; // 16 digits: bigints
    else if (d < 0.034) m.start = hex(0x10000n); // overlaps the bootstrap range below
    out.push(m);
    if (rnd() < 0.01) at += 4096n; // a gap
  }
  return out;
}

function processOf(mappings: Mapping[]): ProcessImage {
  const regs = Object.fromEntries(USER_REGS_FIELDS.map((f) => [f, "0x0"]));
  return {
    pid: 100,
    ppid: 1,
    pgid: 100,
    sid: 100,
    bootstrap: { start: "0x10000", size: 0x10000 },
    mappings,
    threads: [{ tid: 100, regs }],
    fds: [],
    cwd: "/",
    root: "/",
    sigactions: Array.from({ length: 64 }, () => ({})),
    rlimits: [],
  } as unknown as ProcessImage;
}

Deno.test("validate's mapping pass by findIndex: the indexed loop's verdicts on damaged lists", () => {
  let refused = 0;
  for (let round = 0; round < 400; round++) {
    const p = processOf(damagedMappings(pick([1, 5, 60, 300])));
    const want = referenceMappingProblem(p);
    assert.equal(processProblem(p), want);
    if (want) refused++;
  }
  assert.ok(refused > 100 && refused < 390, `${refused} of 400 refused`);
});

/** anon_runs.ts's run length as its indexed loop (before this pass), on `joinable` as given. */
function referenceRunLength(
  mappings: readonly Mapping[],
  i: number,
  joinable: (m: Mapping, prev: Mapping | undefined) => boolean,
): number {
  if (!joinable(mappings[i], mappings[i - 1])) return 0;
  let n = 1;
  let end = mappings[i].end;
  while (i + n < mappings.length) {
    const next = mappings[i + n];
    if (next.start !== end || !joinable(next, mappings[i + n - 1])) break;
    end = next.end;
    n++;
  }
  return n >= 2 ? n : 0;
}

Deno.test("anonRunLength by findFrom: the indexed loop's lengths from every index", () => {
  let runs = 0;
  for (let round = 0; round < 60; round++) {
    const mappings = damagedMappings(pick([2, 30, 300]));
    for (let k = 0; k < mappings.length; k++) {
      if (rnd() < 0.05) mappings[k].kind = "anon-shared";
      if (rnd() < 0.03) mappings[k].pages = [];
    }
    for (let i = 0; i < mappings.length; i++) {
      const got = anonRunLength(mappings, i);
      if (got) runs++;
      assert.equal(got, referenceRunLength(mappings, i, joinable), `from ${i}`);
    }
  }
  assert.ok(runs > 50, `${runs} runs`);
});

Deno.test("the shape check's arrays by findIndex: the same first problem and path, holes too", () => {
  const shape = z.array(z.string().regex(/^0x[0-9a-f]+$/));
  const reference = (x: unknown[]): string | undefined => {
    for (let i = 0; i < x.length; i++) {
      const r = z.string().regex(/^0x[0-9a-f]+$/).safeParse(x[i]);
      if (!r.success) return `${i}: ${r.error.issues[0].message}`;
    }
    return undefined;
  };
  for (let round = 0; round < 2000; round++) {
    const n = pick([0, 1, 3, 32, 33, 100]);
    const x: unknown[] = [];
    x.length = n;
    for (let k = 0; k < n; k++) {
      const d = rnd();
      if (d < 0.97) x[k] = hex(BigInt(Math.floor(rnd() * 2 ** 40)));
      else if (d < 0.98) x[k] = 12;
      else if (d < 0.99) x[k] = "0xZZ";
      // else a hole
    }
    const r = shape.safeParse(x);
    const got = r.success
      ? undefined
      : `${r.error.issues[0].path.join(".")}: ${r.error.issues[0].message}`;
    assert.equal(got, reference(x));
  }
  // The mapping schema walks a list of records the same way: the first bad one, by index.
  const mappings = damagedMappings(50) as unknown[];
  mappings[7] = { ...(mappings[7] as object), perms: 4 };
  mappings[9] = undefined;
  assert.match(
    schemaProblem(z.array(mappingChecks), mappings) ?? "",
    /^7\.perms: /,
  );
});

Deno.test("opsOfNumbers by findIndex: a size-only builder refuses what the full one refuses", () => {
  const values = [0, 0x1000, 1, 2 ** 53 - 1, 2 ** 53, -1, 1.5, NaN, Infinity];
  for (let round = 0; round < 2000; round++) {
    const arity = pick([1, 3, 6]);
    const count = pick([1, 2, 5, 40]);
    // Sometimes fewer values than count * arity (the rest read as undefined), sometimes more.
    const length = Math.max(0, count * arity + pick([-2, -1, 0, 0, 0, 3]));
    const plain = Array.from(
      { length },
      () => (rnd() < 0.98 ? pick(values.slice(0, 4)) : pick(values)),
    );
    const args = rnd() < 0.5 ? plain : Float64Array.from(plain);
    const verdict = (sizeOnly: boolean) => {
      const p = new ProgramBuilder(0x1000n, undefined, sizeOnly);
      try {
        p.opsOfNumbers(SYS.mprotect, arity, args, count);
        return `ok ${p.opCount}`;
      } catch (e) {
        return (e as Error).message;
      }
    };
    assert.equal(verdict(true), verdict(false));
  }
});
