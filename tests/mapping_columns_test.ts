/**
 * The remembered values of a list read from an NT_CRYO_MAPPINGS note
 * (engine/image/mapping_columns.ts), without processes: they are the
 * values of the texts the decode made (-1 for a whole record); validate
 * and the restore's run compile give with them exactly what they give on
 * the same records without them (a copy of the list has none), also after
 * the records or the list were changed in place.
 */

import assert from "node:assert/strict";
import type { Mapping, ProcessImage } from "../engine/model.ts";
import { decodeMappingNote, encodeMappingNote } from "../engine/image/mapping_note.ts";
import { columnAt, mappingColumns, setMappingColumns } from "../engine/image/mapping_columns.ts";
import { processProblem } from "../engine/image/validate.ts";
import { anonRunLength, emitAnonRun } from "../engine/restore/anon_runs.ts";
import { ProgramBuilder } from "../engine/program/builder.ts";
import { Rng } from "../scripts/fuzz/mutate.ts";
import { minimalProcessImage } from "./helpers/minimal_image.ts";

const PAGE = 4096;
const hex = (v: number | bigint) => `0x${v.toString(16)}`;

/**
 * A list like a run of small anonymous mappings (rw-/r-- alternating, some alike neighbours,
 * gaps, flags with and without madvise ones), with records that must stay whole among them
 * (a file identity, a text that is not canonical, an address beyond 13 digits).
 */
function randomList(rng: Rng, n: number, damage: boolean): Mapping[] {
  const out: Mapping[] = [];
  let at = rng.pick([0x10000, 0x555555554000, 0x7f1a2d91c000, 0xfffff000000, 0x7ffffffe0000]);
  let off = 0x3000;
  for (let i = 0; i < n; i++) {
    const pages = rng.int(5) === 0 ? 1 + rng.int(4) : 1;
    let start = at, end = at + pages * PAGE;
    if (damage && rng.int(40) === 0) {
      switch (rng.int(4)) {
        case 0:
          start += 0x800; // misaligned
          break;
        case 1:
          start -= 2 * PAGE; // overlaps the one before
          break;
        case 2:
          end = start; // empty
          break;
        default:
          start = 0x10000000; // the bootstrap range below
          end = start + PAGE;
      }
    }
    const readOnly = rng.int(8) === 0 ? rng.int(2) === 0 : i % 2 === 1;
    const flags = readOnly ? ["rd", "mr", "mw", "me", "ac"] : ["rd", "wr", "mr", "mw", "me", "ac"];
    if (rng.int(12) === 0) flags.push(rng.pick(["dd", "hg", "lo", "gd", "nr", "sd"]));
    const runs = rng.int(10) === 0 ? [] : [{
      addr: hex(start + (rng.int(6) === 0 && pages > 1 ? PAGE : 0)),
      length: PAGE,
      fileOffset: off,
    }];
    if (pages > 2 && rng.int(2) === 0) {
      // A second run, following on in the file or not.
      runs.push({
        addr: hex(start + 2 * PAGE),
        length: PAGE,
        fileOffset: off + PAGE * (1 + rng.int(2)),
      });
      off += 3 * PAGE;
    }
    if (rng.int(5) === 0) off += PAGE;
    off += PAGE;
    const m: Record<string, unknown> = {
      start: hex(start),
      end: hex(end),
      perms: rng.int(20) === 0 ? "r-xp" : readOnly ? "r--p" : "rw-p",
      offset: "0x0",
      kind: rng.int(25) === 0 ? "anon-shared" : "anon",
      name: rng.int(30) === 0 ? "[heap]" : "",
      vmFlags: flags,
      pages: runs,
    };
    switch (rng.int(30)) {
      case 0:
        m.file = { path: "/x", dev: 1, ino: 2, size: 3, mtimeMs: 4 };
        break;
      case 1:
        m.start = hex(start).replace("0x", "0x0");
        break;
      case 2:
        m.end = hex(end).toUpperCase().replace("0X", "0x");
        break;
    }
    out.push(m as unknown as Mapping);
    at = end + (rng.int(15) === 0 ? PAGE : 0);
  }
  if (rng.int(3) === 0) {
    // Beyond 13 hex digits: whole, and beyond user space.
    out.push({ ...out[out.length - 1], start: "0xfffff00000000000", end: "0xfffff00000001000" });
  }
  return out;
}

/** The list the reader would make of `list`: decoded from its rows, with its columns. */
function read(list: Mapping[]): Mapping[] {
  const { json, desc } = encodeMappingNote(list);
  const whole = JSON.parse(JSON.stringify(json.whole));
  const { mappings, columns } = decodeMappingNote(desc, whole);
  setMappingColumns(mappings, columns);
  return mappings;
}

function processOf(mappings: Mapping[]): ProcessImage {
  return minimalProcessImage(mappings);
}

Deno.test("mapping columns: the values of the decode's texts, -1 for whole records", () => {
  const rng = new Rng(5);
  for (let round = 0; round < 100; round++) {
    const list = read(randomList(rng, 1 + rng.int(200), round % 2 === 1));
    const cols = mappingColumns(list)!;
    assert.ok(cols, "the decoded list has its columns");
    assert.equal(mappingColumns([...list]), undefined, "a copy has none");
    list.forEach((m, i) => {
      const whole = cols.startText[i] === "";
      if (whole) {
        assert.equal(cols.start[i], -1);
        assert.equal(cols.end[i], -1);
        assert.equal(columnAt(cols.start, cols.startText, i, m.start), -1);
        return;
      }
      assert.equal(cols.startText[i], m.start);
      assert.equal(cols.endText[i], m.end);
      const s = Number(BigInt(m.start)), e = Number(BigInt(m.end));
      assert.equal(cols.start[i], Number.isSafeInteger(s) ? s : -1);
      assert.equal(cols.end[i], Number.isSafeInteger(e) ? e : -1);
      assert.equal(columnAt(cols.start, cols.startText, i, m.start), cols.start[i]);
      // Another text (even one of the same value) is not the one decoded: parsed by the caller.
      assert.equal(columnAt(cols.end, cols.endText, i, hex(e + PAGE)), -1);
    });
    assert.equal(columnAt(cols.start, cols.startText, list.length, "0x1000"), -1);
  }
});

/**
 * Changes `list` (read with its columns) in place the ways a consumer could: a record's
 * bounds moved, records swapped, one removed, one inserted, a record replaced by a copy.
 */
function changeInPlace(rng: Rng, list: Mapping[]): void {
  for (let c = 0; c < 1 + rng.int(6); c++) {
    const i = rng.int(list.length);
    const m = list[i];
    switch (rng.int(6)) {
      case 0:
        m.start = hex(BigInt(m.start) + BigInt(PAGE * (1 + rng.int(3))));
        break;
      case 1:
        m.end = hex(BigInt(m.end) + BigInt(PAGE * (1 + rng.int(3))));
        break;
      case 2: {
        const j = rng.int(list.length);
        [list[i], list[j]] = [list[j], list[i]];
        break;
      }
      case 3:
        if (list.length > 2) list.splice(i, 1);
        break;
      case 4:
        list.splice(i, 0, { ...m, start: m.end, end: hex(BigInt(m.end) + BigInt(PAGE)) });
        break;
      default:
        list[i] = { ...m, end: hex(BigInt(m.end) - BigInt(PAGE)) };
    }
  }
}

Deno.test("mapping columns: records changed in place after the read are judged by their texts", () => {
  const rng = new Rng(11);
  let differ = 0, runs = 0;
  for (let round = 0; round < 200; round++) {
    const list = read(randomList(rng, 2 + rng.int(150), round % 3 === 0));
    const before = processProblem(processOf([...list]));
    changeInPlace(rng, list);
    assert.ok(mappingColumns(list), "the columns are still kept for the list");
    const copy = [...list];
    const withCols = processProblem(processOf(list));
    assert.equal(withCols, processProblem(processOf(copy)), `round ${round}`);
    if (withCols !== before) differ++;
    if (withCols) continue;
    for (let i = 0; i < list.length; i++) {
      const n = anonRunLength(list, i);
      assert.equal(n, anonRunLength(copy, i));
      if (n === 0) continue;
      runs++;
      const got = new ProgramBuilder(0x100000000n), want = new ProgramBuilder(0x100000000n);
      emitAnonRun(got, list, i, n, 0, undefined, []);
      emitAnonRun(want, copy, i, n, 0, undefined, []);
      assert.deepEqual(got.build().bytes, want.build().bytes, `round ${round} run at ${i}`);
      i += n - 1;
    }
  }
  assert.ok(differ > 20, `${differ} of 200 verdicts changed by the changes`);
  assert.ok(runs > 50, `${runs} runs`);
});

Deno.test("mapping columns: validate gives the same verdict with and without them", () => {
  const rng = new Rng(7);
  let refused = 0;
  for (let round = 0; round < 300; round++) {
    const list = read(randomList(rng, 1 + rng.int(120), true));
    const withCols = processProblem(processOf(list));
    const without = processProblem(processOf([...list]));
    assert.equal(withCols, without, `round ${round}`);
    if (withCols) refused++;
  }
  assert.ok(refused > 50 && refused < 300, `${refused} of 300 refused`);
});

Deno.test("mapping columns: a run's length and program are the same with and without them", () => {
  const rng = new Rng(9);
  let runs = 0;
  for (let round = 0; round < 60; round++) {
    const list = read(randomList(rng, 2 + rng.int(400), false));
    const copy = [...list];
    for (let i = 0; i < list.length; i++) {
      const n = anonRunLength(list, i);
      assert.equal(n, anonRunLength(copy, i), `round ${round} index ${i}`);
      if (n === 0) continue;
      runs++;
      const got = new ProgramBuilder(0x100000000n), want = new ProgramBuilder(0x100000000n);
      const examineGot: number[] = [], examineWant: number[] = [];
      emitAnonRun(got, list, i, n, 0, undefined, examineGot);
      emitAnonRun(want, copy, i, n, 0, undefined, examineWant);
      assert.deepEqual(got.build().bytes, want.build().bytes, `round ${round} run at ${i}`);
      assert.deepEqual(examineGot, examineWant);
      i += n - 1;
    }
  }
  assert.ok(runs > 100, `${runs} runs`);
});
