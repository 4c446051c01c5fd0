/**
 * The final freeze's data-page scan (engine/dump/data_scan.ts), which walks
 * private mappings without a file without asking for PAGE_IS_FILE, finds
 * exactly the regions (and written ranges) of one walk that asks for it
 * everywhere, on targets holding every kind of mapping the dump meets:
 * private and shared anonymous memory, private file mappings with
 * copy-on-write pages, shared file mappings, the zero page, guard regions,
 * locked and PROT_NONE parts, growsdown, heap, stack, vdso, and memory
 * shared copy-on-write with a child (tests/targets/rt_memflags.c,
 * tests/targets/rt_memory.c, tests/targets/rt_cow.c).
 */

import assert from "node:assert/strict";
import { readMaps } from "../engine/proc/maps.ts";
import { PagemapScanner } from "../engine/proc/pagemap_scan.ts";
import {
  dataAndWrittenOffThread,
  dataRegions,
  isPlainAnon,
  scanSegments,
} from "../engine/dump/data_scan.ts";
import { startTriggered } from "./helpers/roundtrip.ts";
import { withTargets } from "./helpers/targets.ts";

for (
  const [name, extra] of [
    ["rt_memflags", ["future-onfault"]],
    ["rt_memflags", []],
    ["rt_memory", []],
    ["rt_cow", []],
  ] as const
) {
  Deno.test(
    `the segmented data scan finds what one walk with PAGE_IS_FILE finds: ${name} ${
      extra.join(" ")
    }`,
    withTargets(async () => {
      const { t } = await startTriggered(name, /^ready pid=(\d+)/m, {
        passWork: name !== "rt_memflags",
        extra: [...extra],
      });
      try {
        const maps = readMaps(t.pid).filter((m) => m.path !== "[vsyscall]");
        const segments = scanSegments(maps);
        assert.ok(segments.some((s) => s.plainAnon), "some plain anonymous memory");
        assert.ok(segments.some((s) => !s.plainAnon), "some other memory");
        assert.equal(segments[0].start, Number(maps[0].start));
        assert.equal(segments[segments.length - 1].end, Number(maps[maps.length - 1].end));
        for (let i = 1; i < segments.length; i++) {
          assert.equal(segments[i].start, segments[i - 1].end, "segments are contiguous");
        }
        using scanner = new PagemapScanner(t.pid);
        const lo = Number(maps[0].start), hi = Number(maps[maps.length - 1].end);
        const whole = scanner.dataRegions(lo, hi);
        assert.ok(whole.some((r) => !r.anon), "some file pages");
        assert.deepEqual(dataRegions(scanner, segments), whole);
        assert.deepEqual(
          await dataAndWrittenOffThread(t.pid, segments),
          scanner.dataAndWritten(lo, hi),
        );
      } finally {
        await t.kill();
      }
    }),
  );
}

Deno.test("plain anonymous mappings: private, no file", () => {
  const m = (perms: string, inode: number, path: string) => isPlainAnon({ perms, inode, path });
  assert.ok(m("rw-p", 0, ""));
  assert.ok(m("rw-p", 0, "[heap]"));
  assert.ok(m("rw-p", 0, "[stack]"));
  assert.ok(m("rw-p", 0, "[anon:name]"));
  assert.ok(!m("rw-s", 0, ""));
  assert.ok(!m("rw-s", 0, "[anon_shmem:name]"));
  assert.ok(!m("rw-s", 1234, "/dev/zero (deleted)"));
  assert.ok(!m("rw-p", 1234, "/usr/lib/libc.so.6"));
  assert.ok(!m("r-xp", 0, "[vdso]"));
  assert.ok(!m("r--p", 0, "[vvar]"));
  assert.ok(!m("r-xp", 0, "[uprobes]"));
  assert.ok(!m("rw-p", 99, "/memfd:x (deleted)"));
});
