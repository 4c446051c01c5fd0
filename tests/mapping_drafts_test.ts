/**
 * The mapping records made before the freeze (engine/dump/mapping_drafts.ts)
 * from the maps parse the freeze reuses:
 *
 * - handed out once, for the very parse they were made from, and only for
 *   its anonymous areas (file mappings are made at the freeze);
 * - a dump of tests/targets/rt_maps.c (six kinds of mappings, shared,
 *   file-backed, wipe-on-fork...) whose freeze reused the parse (drafts)
 *   records exactly the mappings, key order included, of a dump that read
 *   smaps at the freeze (no parse before it, no drafts);
 * - the numbers the byte scan read for each area and the texts the drafts
 *   made of them, which the collect gives its list as mapping columns: the
 *   note's encoder writes the same note with them, takes their value beside
 *   the record's very text (a wrong one changes the note) and parses a
 *   record whose text is not the column's.
 *
 * @module
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { draftMappings, takeDraftTexts, takeMappingDrafts } from "../engine/dump/mapping_drafts.ts";
import { encodeMappingNote } from "../engine/image/mapping_note.ts";
import { setMappingColumns } from "../engine/image/mapping_columns.ts";
import type { Mapping } from "../engine/model.ts";
import { mapsReuse } from "../engine/dump/vm_flags.ts";
import { loadVmaIterator } from "../engine/proc/vma_flags_bpf.ts";
import {
  areaNumbers,
  type MapEntry,
  parseMapsBytes,
  readMaps,
  readMapsBytes,
} from "../engine/proc/maps.ts";
import { readImageFileSync } from "../engine/image/reader.ts";
import { startRtMaps } from "./helpers/vmflags_mode.ts";
import { withTargets } from "./helpers/targets.ts";
import { tempDir } from "./helpers/fs.ts";
import { tablesAvailable } from "../ffi/syscall_table.ts";

Deno.test("mapping drafts: once per parse, anonymous areas only", () => {
  const areas = readMaps(Deno.pid).map((m) => ({ ...m, vmFlags: [] }));
  draftMappings(areas);
  const got = takeMappingDrafts(areas)!;
  assert.equal(got.length, areas.length);
  areas.forEach((m, i) => {
    const anon = m.path === "" && m.inode === 0;
    if (anon) {
      assert.equal(got[i]?.start, `0x${m.start.toString(16)}`);
      assert.equal(got[i]?.end, `0x${m.end.toString(16)}`);
      assert.equal(got[i]?.perms, m.perms);
    }
    if (m.inode !== 0 && m.path.startsWith("/") && !m.path.startsWith("/SYSV")) {
      assert.equal(got[i], undefined, `file mapping ${m.path} is made at the freeze`);
    }
  });
  assert.equal(takeMappingDrafts(areas), undefined, "handed out once");
  assert.equal(
    takeMappingDrafts(readMaps(Deno.pid).map((m) => ({ ...m, vmFlags: [] }))),
    undefined,
    "another parse: none",
  );
});

/** The image's mappings as JSON text, page runs without their file offsets. */
function mappingsText(dir: string, pid: number): string {
  const info = readImageFileSync(`${dir}/${pid}.elf`);
  return JSON.stringify(
    info.process.mappings.map((m) => ({
      ...m,
      pages: m.pages.map((r) => ({ addr: r.addr, length: r.length })),
    })),
  );
}

Deno.test({
  name: "mapping drafts: the records of a reused parse are those of a dump that read smaps",
  ignore: !loadVmaIterator(),
  fn: withTargets(async () => {
    const { t } = await startRtMaps(300);
    const base = await tempDir("cryo-drafts-");
    const dump = async (flags: string, dir: string) => {
      Deno.env.set("CRYO_VMFLAGS", flags);
      try {
        await checkpoint(t.pid, { dir, leaveRunning: true, sync: false });
      } finally {
        Deno.env.delete("CRYO_VMFLAGS");
      }
    };
    // A dump's injected batches (on the smaps path, one get_mempolicy per mapping) use the
    // target's stack below its red zone and put its bytes back, but leave the pages they
    // touched present: a first dump makes them so, for the two compared.
    await dump("smaps", `${base}/first`);
    const { reused, ahead } = mapsReuse;
    await dump("bpf", `${base}/drafted`);
    assert.equal(mapsReuse.reused, reused + 1, "the freeze took the parse (and its drafts)");
    // Compared with the text read on another thread since the freeze began: nothing at the
    // freeze's start (the shared anonymous pages' look) reads the maps on cryo's thread.
    if (tablesAvailable()) assert.equal(mapsReuse.ahead, ahead + 1, "the maps read ahead");
    await dump("smaps", `${base}/smaps`);
    const a = mappingsText(`${base}/drafted`, t.pid), b = mappingsText(`${base}/smaps`, t.pid);
    assert.ok(JSON.parse(a).length > 300);
    assert.equal(a, b);
  }),
});

Deno.test("mapping drafts: the parse's numbers and the drafts' texts, as the encoder's columns", () => {
  const bytes = readMapsBytes(Deno.pid);
  const areas = parseMapsBytes(bytes) as (MapEntry & { vmFlags: string[] })[];
  areas.forEach((a) => a.vmFlags = []);
  const numbers = areaNumbers(areas)!;
  assert.ok(numbers, "a byte scan keeps its numbers");
  draftMappings(areas);
  const drafts = takeMappingDrafts(areas)!;
  const texts = takeDraftTexts(areas)!;
  assert.equal(takeDraftTexts(areas), undefined, "handed out once");
  areas.forEach((a, i) => {
    for (
      const [big, num, text] of [[a.start, numbers.start[i], texts.start[i]], [
        a.end,
        numbers.end[i],
        texts.end[i],
      ]] as const
    ) {
      assert.equal(num, big < 2n ** 52n ? Number(big) : -1);
      assert.equal(text, `0x${big.toString(16)}`);
    }
    if (drafts[i]) {
      assert.equal(drafts[i]!.start, texts.start[i]);
      assert.equal(drafts[i]!.end, texts.end[i]);
    }
  });
  // The anonymous records, each with one page run at its start, as the collect leaves them.
  const list: Mapping[] = [], at: number[] = [];
  drafts.forEach((m, i) => {
    if (!m || m.kind !== "anon") return;
    list.push({
      ...m,
      vmFlags: ["rd", "wr"],
      pages: [{ addr: m.start, length: 4096, fileOffset: 0 }],
    });
    at.push(i);
  });
  assert.ok(list.length > 2);
  const columns = (endOf: (i: number) => number) => ({
    start: Float64Array.from(at, (i) => numbers.start[i]),
    startText: list.map((m) => m.start),
    end: Float64Array.from(at, (_, k) => endOf(k)),
    endText: list.map((m) => m.end),
  });
  const plain = encodeMappingNote([...list]).desc;
  const withColumns = [...list];
  setMappingColumns(withColumns, columns((k) => numbers.end[at[k]]));
  assert.deepEqual(encodeMappingNote(withColumns).desc, plain, "the same note");
  // A wrong value beside the record's very text is taken (the encoder reads the columns)...
  const wrong = [...list];
  setMappingColumns(wrong, columns((k) => numbers.end[at[k]] + (k === 1 ? 4096 : 0)));
  assert.notDeepEqual(encodeMappingNote(wrong).desc, plain, "the columns are read");
  // ...and never once the record holds another text.
  const changed = list.map((m) => ({ ...m }));
  const stale = columns((k) => numbers.end[at[k]] + (k === 1 ? 4096 : 0));
  stale.endText[1] = "0x1000";
  setMappingColumns(changed, stale);
  assert.deepEqual(encodeMappingNote(changed).desc, plain, "a text not the column's is parsed");
});
