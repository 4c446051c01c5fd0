/**
 * The NT_CRYO_MAPPINGS rows (engine/image/mapping_note.ts), without
 * processes: every record comes back from rows and whole records as JSON
 * gives it back (the same fields, values, key order); the records a row
 * cannot give back the same stay whole; a damaged note is refused by name
 * or decodes to one record per row, whose runs are left to the reader's
 * check unless they lie in place. The images through the reader:
 * tests/image_test.ts.
 */

import assert from "node:assert/strict";
import type { Mapping } from "../engine/model.ts";
import {
  decodeMappingNote,
  encodeMappingNote,
  hexAt,
  MappingNoteError,
  MAPPINGS_IN_NOTE,
  WHOLE_ROW,
} from "../engine/image/mapping_note.ts";
import { Rng } from "../scripts/fuzz/mutate.ts";

const PAGE = 4096;

function hex(v: number | bigint): string {
  return `0x${v.toString(16)}`;
}

/** A common record: anonymous or file memory, page runs in this file. */
function plain(rng: Rng, start: number, pages: number): Mapping {
  const end = start + pages * PAGE;
  const runs = [];
  for (let p = 0; p < pages;) {
    const len = 1 + rng.int(3);
    if (rng.int(2) === 0 && p + len <= pages) {
      runs.push({
        addr: hex(start + p * PAGE),
        length: len * PAGE,
        fileOffset: rng.int(1000) * PAGE,
      });
    }
    p += len + rng.int(2);
  }
  return {
    start: hex(start),
    end: hex(end),
    perms: rng.pick(["rw-p", "r--p", "r-xp", "---p", "rw-s", "rwxs"]),
    offset: rng.int(3) === 0 ? hex(rng.int(100) * PAGE) : "0x0",
    kind: rng.pick(["anon", "anon-shared", "file-private", "file-shared", "vdso"] as const),
    name: rng.pick(["", "[heap]", "/usr/lib/libc.so.6", "/tmp/caf\u00e9 \u{1f9ca}", "[stack]"]),
    vmFlags: rng.pick([["rd", "wr", "mr", "mw", "me", "ac"], ["rd", "mr", "mw", "me"], []]),
    pages: runs,
  };
}

/** Records a row cannot give back the same: each must stay whole. */
function odd(rng: Rng, m: Mapping): Mapping {
  const r = { ...m } as Record<string, unknown>;
  switch (rng.int(16)) {
    case 14:
      r.name = "/tmp/lone \ud800 surrogate";
      break;
    case 15:
      r.vmFlags = ["rd", "\udc00"];
      break;
    case 0:
      r.file = { path: "/x", dev: 1, ino: 2, size: 3, mtimeMs: 4 };
      break;
    case 1:
      r.excluded = true;
      break;
    case 2:
      r.start = m.start.toUpperCase().replace("0X", "0x");
      break;
    case 3:
      r.end = m.end.replace("0x", "0x0");
      break;
    case 4:
      r.vmFlags = ["rd", "has space"];
      break;
    case 5:
      r.vmFlags = ["rd", ""];
      break;
    case 6:
      r.pages = [{ addr: m.start, length: PAGE, fileOffset: 0, parent: 1 }];
      break;
    case 7:
      r.name = "nul\0name";
      break;
    case 8:
      r.future = { anything: 1 };
      break;
    case 9:
      r.start = "0xffffffffff600000";
      r.end = "0xffffffffff601000";
      r.kind = "vsyscall";
      break;
    case 10:
      r.perms = "rwzp";
      break;
    case 11:
      r.pages = [{ addr: m.start, length: 1.5, fileOffset: 0 }];
      break;
    case 12:
      r.ghost = "g1";
      break;
    default:
      r.kind = "sysv-shm";
      r.sysvShm = 7;
      break;
  }
  return r as unknown as Mapping;
}

function randomList(rng: Rng, n: number): Mapping[] {
  const out: Mapping[] = [];
  let at = rng.pick([0x10000, 0x555555554000, 0x7f1a2d91c000, 0xfffff000000]) + rng.int(100) * PAGE;
  for (let i = 0; i < n; i++) {
    const pages = 1 + rng.int(6);
    const m = plain(rng, at, pages);
    out.push(rng.int(6) === 0 ? odd(rng, m) : m);
    at += (pages + rng.int(3)) * PAGE;
  }
  return out;
}

/** What the reader gets: the rows' records with the whole ones as JSON gave them. */
function roundTrip(list: Mapping[]): { back: Mapping[]; rows: number; desc: Uint8Array } {
  const { json, desc } = encodeMappingNote(list);
  assert.equal(json.columns, MAPPINGS_IN_NOTE);
  const whole = JSON.parse(JSON.stringify(json.whole));
  const { mappings } = decodeMappingNote(desc, whole);
  return { back: mappings, rows: list.length - whole.length, desc };
}

Deno.test("mapping rows: every record comes back as JSON gives it, the odd ones whole", () => {
  const rng = new Rng(10);
  let rows = 0, whole = 0;
  for (let round = 0; round < 300; round++) {
    const list = randomList(rng, rng.int(80));
    const { back, rows: r } = roundTrip(list);
    assert.equal(JSON.stringify(back), JSON.stringify(list), `round ${round}`);
    assert.deepEqual(back, JSON.parse(JSON.stringify(list)));
    rows += r;
    whole += list.length - r;
    // Each odd record stays whole, each common one is a row.
    const { json } = encodeMappingNote(list);
    const expected = list.filter((m) => JSON.stringify(m) !== JSON.stringify(plainCopy(m)));
    assert.deepEqual(json.whole, expected);
  }
  assert.ok(rows > 5000 && whole > 500, `${rows} rows, ${whole} whole`);
  // No mappings at all; and one list shared by two records.
  assert.deepEqual(roundTrip([]).back, []);
});

/** `m` with only the fields a row holds, in a row's order, when it has the plain shape. */
function plainCopy(m: Mapping): unknown {
  const ok = /^0x([1-9a-f][0-9a-f]{0,12}|0)$/;
  const r = m as unknown as Record<string, unknown>;
  if (Object.keys(r).length !== 8) return null;
  if (![m.start, m.end, m.offset].every((h) => ok.test(h))) return null;
  if (!/^[r-][w-][x-][ps]$/.test(m.perms) || m.name.includes("\0")) return null;
  if (!m.name.isWellFormed()) return null;
  if (!m.vmFlags.every((f) => f !== "" && !f.includes(" ") && f.isWellFormed())) return null;
  const pages = m.pages.map((p) =>
    Object.keys(p).length === 3 && ok.test(p.addr) && Number.isSafeInteger(p.length) &&
      p.length >= 0
      ? { addr: p.addr, length: p.length, fileOffset: p.fileOffset }
      : null
  );
  if (pages.includes(null)) return null;
  return {
    start: m.start,
    end: m.end,
    perms: m.perms,
    offset: m.offset,
    kind: m.kind,
    name: m.name,
    vmFlags: m.vmFlags,
    pages,
  };
}

Deno.test("mapping rows: runs in place are checked in the decode, the others left to the reader", () => {
  const pages = { offset: 8 * PAGE, end: 40 * PAGE };
  const list: Mapping[] = [
    { ...plain(new Rng(1), 0x10000, 1), pages: [] },
    {
      ...plain(new Rng(2), 0x20000, 4),
      pages: [
        { addr: "0x20000", length: PAGE, fileOffset: 8 * PAGE },
        { addr: "0x22000", length: 2 * PAGE, fileOffset: 9 * PAGE },
      ],
    },
    // Out of order: the reader sorts and judges.
    {
      ...plain(new Rng(3), 0x30000, 4),
      pages: [
        { addr: "0x32000", length: PAGE, fileOffset: 11 * PAGE },
        { addr: "0x30000", length: PAGE, fileOffset: 12 * PAGE },
      ],
    },
    // Beyond .cryo.pages, outside the mapping, not page aligned.
    {
      ...plain(new Rng(4), 0x40000, 1),
      pages: [{ addr: "0x40000", length: PAGE, fileOffset: 40 * PAGE }],
    },
    {
      ...plain(new Rng(5), 0x50000, 1),
      pages: [{ addr: "0x50000", length: 2 * PAGE, fileOffset: 8 * PAGE }],
    },
    {
      ...plain(new Rng(6), 0x60000, 1),
      pages: [{ addr: "0x60000", length: 100, fileOffset: 8 * PAGE }],
    },
  ];
  const { json, desc } = encodeMappingNote(list);
  assert.equal(json.whole.length, 0);
  assert.deepEqual(decodeMappingNote(desc, [], pages).unchecked, [2, 3, 4, 5]);
  assert.deepEqual(decodeMappingNote(desc, []).unchecked, [1, 2, 3, 4, 5], "no place: all");
});

Deno.test("mapping rows: run lengths and offsets of every size come back, placed or not", () => {
  // Below 2^31 the decode reads them as the u32 itself (a V8 small integer), above by their sum.
  const sizes = [
    0,
    PAGE,
    2 ** 31 - PAGE,
    2 ** 31,
    2 ** 32 - PAGE,
    2 ** 32,
    2 ** 32 + PAGE,
    2 ** 40,
  ];
  sizes.push(2 ** 53 - PAGE, 0x7fffffff, 0x80000000, 0xffffffff, 1, 4095);
  const list: Mapping[] = [];
  let at = 0x10000;
  for (const length of sizes) {
    for (const fileOffset of sizes) {
      const m = plain(new Rng(at), at, 1);
      list.push({ ...m, pages: [{ addr: m.start, length, fileOffset }] });
      at += 2 * PAGE;
    }
  }
  const { json, desc } = encodeMappingNote(list);
  assert.equal(json.whole.length, 0);
  const place = { offset: 0, end: 2 ** 53 - 1 };
  const { mappings, unchecked } = decodeMappingNote(desc, [], place);
  assert.equal(JSON.stringify(mappings), JSON.stringify(list));
  // In place: aligned, inside the mapping (one page) and inside the pages.
  const expected = list.flatMap((m, i) => {
    const { length, fileOffset } = m.pages[0];
    const placed = length % PAGE === 0 && fileOffset % PAGE === 0 && length <= PAGE &&
      fileOffset + length <= place.end;
    return placed ? [] : [i];
  });
  assert.deepEqual(unchecked, expected);
});

Deno.test("mapping rows: damaged notes are refused by name or decode to one record per row", () => {
  const rng = new Rng(77);
  const list = randomList(rng, 60);
  const { json, desc } = encodeMappingNote(list);
  const whole = JSON.parse(JSON.stringify(json.whole));
  const n = list.length;
  let refused = 0, decoded = 0;
  for (let round = 0; round < 4000; round++) {
    const bytes = desc.slice();
    const how = rng.int(4);
    let damaged: Uint8Array = bytes;
    if (how === 0) damaged = bytes.subarray(0, rng.int(bytes.length));
    else {
      for (let k = 1 + rng.int(4); k > 0; k--) {
        // Aim at the header and the narrow columns half of the time.
        const at = rng.int(2) === 0
          ? rng.int(Math.min(bytes.length, 32 + 38 * n))
          : rng.int(bytes.length);
        bytes[at] = how === 1
          ? bytes[at] ^ (1 << rng.int(8))
          : rng.pick([0, 255, WHOLE_ROW, 9, 16]);
      }
    }
    try {
      const { mappings } = decodeMappingNote(damaged, whole, { offset: 0, end: 4000 * PAGE });
      decoded++;
      assert.equal(mappings.length, new Uint32Array(damaged.slice(0, 32).buffer)[2]);
      for (const m of mappings) assert.equal(typeof m, "object");
    } catch (e) {
      assert.ok(e instanceof MappingNoteError, `round ${round}: ${(e as Error).stack}`);
      assert.match(e.message, /^NT_CRYO_MAPPINGS: [^\n]+$/);
      refused++;
    }
  }
  assert.ok(refused > 1000 && decoded > 100, `${refused} refused, ${decoded} decoded`);
  // A note not on a 4-byte boundary reads the same (its bytes are copied).
  const shifted = new Uint8Array(desc.length + 1).subarray(1);
  shifted.set(desc);
  assert.equal(
    JSON.stringify(decodeMappingNote(shifted, whole).mappings),
    JSON.stringify(list),
  );
});

Deno.test("mapping rows: every u64 gives its hex text", () => {
  const rng = new Rng(5);
  const words = new Uint32Array(2);
  const values: bigint[] = [0n, 1n, 0xffn, 0x100n, 0xffffn, 0x10000n, 0xffffffn, 0x1000000n];
  for (let bit = 0; bit < 64; bit++) values.push(1n << BigInt(bit), (1n << BigInt(bit)) - 1n);
  for (let i = 0; i < 20000; i++) {
    const bits = BigInt(1 + rng.int(64));
    values.push(
      BigInt(Math.floor(rng.next() * 2 ** 32)) << 32n |
        BigInt(rng.int(2 ** 32)) & ((1n << bits) - 1n),
    );
  }
  // User-space addresses from 2^40 (11 and 12 digits, made from character codes) and around.
  for (let i = 0; i < 5000; i++) {
    const hi = 0x80 + rng.int(0x10000 - 0x80);
    values.push(BigInt(hi) << 32n | BigInt(rng.int(2 ** 32)), BigInt(hi) << 32n);
  }
  for (const v of values) {
    const x = BigInt.asUintN(64, v);
    words[0] = Number(x & 0xffffffffn);
    words[1] = Number(x >> 32n);
    assert.equal(hexAt(words, 0), `0x${x.toString(16)}`);
  }
});
