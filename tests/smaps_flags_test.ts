/**
 * The dump's smaps reader (engine/proc/smaps_flags.ts: area headers and
 * VmFlags only, the size lines skipped) gives, for every mapping, exactly
 * the maps record and VmFlags of the full parse (engine/proc/smaps.ts), on
 * targets holding every
 * kind of mapping the dump meets: private and shared anonymous memory,
 * private and shared file mappings, every madvise flag shown in VmFlags,
 * locked and PROT_NONE parts, guard regions, growsdown, heap, stack, vdso,
 * AIO rings, deleted files and memfds, and 3,000 mappings (an smaps text
 * read in many chunks); and refuses a text it does not
 * understand instead of skipping an area.
 */

import assert from "node:assert/strict";
import { parseSmaps } from "../engine/proc/smaps.ts";
import { parseSmapsFlags, PKEY_CODE, readSmapsFlags } from "../engine/proc/smaps_flags.ts";
import { readMaps } from "../engine/proc/maps.ts";
import { ProcFormatError } from "../engine/proc/errors.ts";
import { startTriggered } from "./helpers/roundtrip.ts";
import { startTarget, withTargets } from "./helpers/targets.ts";
import { tempDir } from "./helpers/fs.ts";

/** Asserts that every reader gives the same areas of `pid`; returns how many. */
function compare(pid: number, what: string): number {
  const text = Deno.readTextFileSync(`/proc/${pid}/smaps`);
  const full = parseSmaps(text, pid).map((
    { sizes: _s, values: _v, rss: _r, anonymous: _a, swap: _w, ...rest },
  ) => rest);
  assert.deepEqual(parseSmapsFlags(text, pid), full, `${what}: parseSmapsFlags`);
  // The target is stopped by nobody: read twice, it has not changed meanwhile.
  const live = readSmapsFlags(pid);
  assert.deepEqual(live, full, `${what}: readSmapsFlags`);
  // The headers are the maps lines.
  assert.deepEqual(live.map(({ vmFlags: _f, ...rest }) => rest), readMaps(pid), `${what}: maps`);
  return live.length;
}

for (
  const [name, extra, passWork] of [
    ["rt_memflags", ["future-onfault"], false],
    ["rt_memflags", [], false],
    ["rt_memory", ["anon-shared"], true],
    ["rt_aio", ["rings"], true],
    // ~2 MB of smaps: read in many chunks, areas cut at chunk ends.
    ["rt_maps", ["3000"], true],
  ] as const
) {
  Deno.test(
    `smaps: headers and VmFlags read alone equal the full parse: ${name} ${extra.join(" ")}`,
    withTargets(async () => {
      const { t } = await startTriggered(name, /^ready pid=(\d+)/m, {
        passWork,
        extra: [...extra],
      });
      assert.ok(compare(t.pid, name) > 10, "mappings");
      await t.kill();
    }),
  );
}

Deno.test(
  "smaps: headers and VmFlags read alone equal the full parse: rt_ghost (deleted files, memfd)",
  withTargets(async () => {
    const work = await tempDir("cryo-smapsflags-");
    const t = await startTarget("rt_ghost", [work]);
    await t.waitFor(/^ready pid=\d+$/m);
    const areas = readSmapsFlags(t.pid);
    assert.ok(areas.some((a) => a.deleted), "a deleted file mapping");
    assert.ok(compare(t.pid, "rt_ghost") > 10, "mappings");
    await t.kill();
  }),
);

Deno.test("smaps: a text whose area lacks Size or VmFlags, or with a bad header, is refused", () => {
  const area = (start: string, flags = true) =>
    `${start}-7f0000001000 rw-p 00000000 00:00 0 \nSize:                  4 kB\nRss:                   4 kB\n` +
    (flags ? "VmFlags: rd wr mr mw me ac \n" : "");
  const ok = area("7f0000000000") + area("7f0000001000");
  assert.equal(parseSmapsFlags(ok).length, 2);
  assert.deepEqual(parseSmapsFlags(ok)[1].vmFlags, ["rd", "wr", "mr", "mw", "me", "ac"]);
  assert.throws(
    () => parseSmapsFlags(area("7f0000000000", false) + area("7f0000001000")),
    ProcFormatError,
  );
  assert.throws(
    () => parseSmapsFlags(area("7f0000000000") + area("7f0000001000", false)),
    ProcFormatError,
  );
  assert.throws(() => parseSmapsFlags(area("7f000000000g")), ProcFormatError);
  const noSize = area("7f0000000000").replace(/Size:[^\n]*\n/, "");
  assert.throws(() => parseSmapsFlags(noSize), ProcFormatError);
  assert.throws(() => parseSmapsFlags(area("7f0000000000") + noSize), ProcFormatError);
  assert.deepEqual(parseSmapsFlags(""), []);
});

Deno.test("smaps: a ProtectionKey other than 0 adds cryo's pkey code where the key's bits stand", () => {
  const area = (start: string, key: number | undefined, flags: string) =>
    `${start}-7f0000001000 rw-p 00000000 00:00 0 \nSize:                  4 kB\n` +
    (key === undefined ? "" : `ProtectionKey:  ${String(key).padStart(8)}\n`) +
    `VmFlags: ${flags} \n`;
  const areas = parseSmapsFlags(
    area("7f0000000000", 2, "rd wr mr mw me ac") +
      area("7f0000001000", 0, "rd wr mr mw me ac") +
      area("7f0000002000", undefined, "rd wr mr mw me ac") +
      area("7f0000003000", 15, "rd wr mr mw me ac ss sl"),
  );
  assert.deepEqual(areas.map((a) => a.vmFlags), [
    ["rd", "wr", "mr", "mw", "me", "ac", PKEY_CODE],
    ["rd", "wr", "mr", "mw", "me", "ac"],
    ["rd", "wr", "mr", "mw", "me", "ac"],
    ["rd", "wr", "mr", "mw", "me", "ac", PKEY_CODE, "ss", "sl"],
  ]);
});
