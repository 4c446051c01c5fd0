/**
 * The mapping records made before the freeze (engine/dump/mapping_drafts.ts)
 * from the maps parse the freeze reuses:
 *
 * - handed out once, for the very parse they were made from, and only for
 *   its anonymous areas (file mappings are made at the freeze);
 * - a dump of tests/targets/rt_maps.c (six kinds of mappings, shared,
 *   file-backed, wipe-on-fork...) whose freeze reused the parse (drafts)
 *   records exactly the mappings, key order included, of a dump that read
 *   smaps at the freeze (no parse before it, no drafts).
 *
 * @module
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { draftMappings, takeMappingDrafts } from "../engine/dump/mapping_drafts.ts";
import { mapsReuse } from "../engine/dump/vm_flags.ts";
import { loadVmaIterator } from "../engine/proc/vma_flags_bpf.ts";
import { readMaps } from "../engine/proc/maps.ts";
import { readImageFileSync } from "../engine/image/reader.ts";
import { startRtMaps } from "./helpers/vmflags_mode.ts";
import { withTargets } from "./helpers/targets.ts";
import { tempDir } from "./helpers/fs.ts";

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
    const reused = mapsReuse.reused;
    await dump("bpf", `${base}/drafted`);
    assert.equal(mapsReuse.reused, reused + 1, "the freeze took the parse (and its drafts)");
    await dump("smaps", `${base}/smaps`);
    const a = mappingsText(`${base}/drafted`, t.pid), b = mappingsText(`${base}/smaps`, t.pid);
    assert.ok(JSON.parse(a).length > 300);
    assert.equal(a, b);
  }),
});
