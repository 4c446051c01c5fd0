/**
 * The maps line parser by character codes (engine/proc/maps.ts) gives
 * exactly what the regular expression gives: on every line of live maps
 * files, on hand-made edge cases, and on random mutations of real lines.
 * The lookups that avoid parsing the whole maps text (PROCMAP_QUERY per
 * address, whether bytes lie in an executable area, the largest gap, lines
 * matching a name) agree with the full
 * parse on a target with thousands of mappings (tests/targets/rt_maps.c).
 */

import assert from "node:assert/strict";
import {
  executableMapsText,
  largestGap,
  mappingsAt,
  parseMapsLine,
  parseMapsLineRegex,
  readMaps,
  readMapsMatching,
  withExecAreaQuery,
} from "../engine/proc/maps.ts";
import { executableMapsLines } from "../ffi/inject.ts";
import { startRtMaps } from "./helpers/vmflags_mode.ts";
import { withTargets } from "./helpers/targets.ts";

function same(line: string): void {
  assert.deepEqual(parseMapsLine(line), parseMapsLineRegex(line), JSON.stringify(line));
}

Deno.test("maps lines: live maps files parse as with the regular expression", () => {
  let n = 0;
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    let text: string;
    try {
      text = Deno.readTextFileSync(`/proc/${e.name}/maps`);
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      if (line === "") continue;
      same(line);
      n++;
    }
  }
  if (n < 10) throw new Error(`only ${n} lines seen`);
});

Deno.test("maps lines: edge cases and mutations parse as with the regular expression", () => {
  const cases = [
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 0",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 0                          [heap]",
    "55d0c0000000-55d0c0021000 r-xp 00001000 fe:01 1234567   /usr/bin/a b  c",
    "55d0c0000000-55d0c0021000 r-xs 00001000 fe:01 1234567   /tmp/x (deleted)",
    "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0   [vsyscall]",
    "ffffffffffffffffff-ffffffffffffffffffff rw-p 0123456789abcdef0 00:00 0",
    "00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/dbus-daemon",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 12345678901234567890 /big/inode",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 123abc",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 /a\rb",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 [anon:name with \\012]",
    "7F0000000000-7f0000001000 rw-p 00000000 00:00 0",
    "7f0000000000-7f0000001000 rwxx 00000000 00:00 0",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00",
    "7f0000000000-7f0000001000 rw-p 00000000 0000 0",
    "7f0000000000-7f0000001000 rw-p  00000000 00:00 0",
    "-7f0000001000 rw-p 00000000 00:00 0",
    "7f0000000000- rw-p 00000000 00:00 0",
    "7f0000000000-7f0000001000",
    "",
    "Rss:                   4 kB",
  ];
  for (const c of cases) same(c);
  // Random mutations of real lines: one character replaced, inserted or removed.
  const base = Deno.readTextFileSync("/proc/self/maps").split("\n").filter(Boolean).concat(cases);
  const alphabet = "0123456789abcdefABX-: rwxps\t/[]()\r";
  let seed = 12345;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let i = 0; i < 20000; i++) {
    const line = base[rand(base.length)];
    const at = rand(line.length + 1);
    const ch = alphabet[rand(alphabet.length)];
    const op = rand(3);
    const m = op === 0
      ? line.slice(0, at) + ch + line.slice(at + 1)
      : op === 1
      ? line.slice(0, at) + ch + line.slice(at)
      : line.slice(0, at) + line.slice(at + 1);
    same(m);
  }
});

Deno.test(
  "maps lookups: PROCMAP_QUERY areas, the largest gap and matching lines agree with the full parse",
  withTargets(async () => {
    const { t } = await startRtMaps(2000);
    t.signal(19); // SIGSTOP: nothing changes while both are read
    try {
      const maps = readMaps(t.pid);
      assert.ok(maps.length > 2000);
      // Each area's first, last and one-past-the-end address, and the gaps.
      const addrs = maps.flatMap((m) => [m.start, m.end - 1n, m.end]);
      const got = mappingsAt(t.pid, addrs);
      addrs.forEach((a, i) => {
        const m = maps.find((x) => x.start <= a && a < x.end);
        assert.deepEqual(
          got[i],
          m ? { start: m.start, end: m.end, perms: m.perms } : null,
          `area at 0x${a.toString(16)}`,
        );
      });
      // The area holding the byte below each area's end (how the injection finds a table's area).
      for (const m of maps.slice(0, 300)) {
        assert.deepEqual(mappingsAt(t.pid, [m.end - 1n])[0], {
          start: m.start,
          end: m.end,
          perms: m.perms,
        });
      }
      const below = maps.filter((m) => m.path !== "[vsyscall]");
      let best = { start: 0n, size: 0n };
      for (let i = 1; i < below.length; i++) {
        const size = below[i].start - below[i - 1].end;
        if (size > best.size) best = { start: below[i - 1].end, size };
      }
      assert.deepEqual(largestGap(t.pid), best);
      // From areas read earlier: the same gap while it is free; a gap that is
      // not free (an area the list lacks) is found so and read from the text.
      assert.deepEqual(largestGap(t.pid, maps), best);
      // Without the area above the largest gap, the list shows a larger one that is not free.
      const above = below.findIndex((m) => m.start === best.start + best.size);
      const lacking = below.filter((_, k) => k !== above);
      assert.ok(above > 0 && lacking.length === below.length - 1);
      assert.deepEqual(largestGap(t.pid, lacking), best);
      const fake = [...below.slice(0, 3), {
        start: 0x7ff000000000n,
        end: 0x7ff000001000n,
        perms: "rw-p",
      }];
      assert.deepEqual(largestGap(t.pid, fake), best);
      // Whether bytes lie in one readable executable area, by PROCMAP_QUERY (the safe sites'
      // check without the maps text), as the parse says: each area's first bytes, its last
      // byte, and bytes across its end.
      const inExecParsed = (a: bigint, n: number) =>
        maps.some((m) =>
          m.perms[0] === "r" && m.perms[2] === "x" && m.path !== "[vsyscall]" && m.start <= a &&
          a + BigInt(n) <= m.end
        );
      const asked = withExecAreaQuery(
        t.pid,
        (inExec) =>
          below.flatMap((m) =>
            [[m.start, 8], [m.end - 1n, 1], [m.end - 4n, 8]].map(([a, n]) => {
              assert.equal(
                inExec(a as bigint, n as number),
                inExecParsed(a as bigint, n as number),
              );
              return inExecParsed(a as bigint, n as number);
            })
          ),
      );
      assert.ok(asked?.includes(true) && asked.includes(false), "both answers asked");
      // The executable lines made from the areas parse as the maps text's own (the safe sites).
      const text = Deno.readTextFileSync(`/proc/${t.pid}/maps`);
      const made = executableMapsText(maps);
      assert.ok(made.length > 0);
      assert.deepEqual(
        executableMapsLines(made).map((l) => parseMapsLineRegex(l)),
        executableMapsLines(text).map((l) => parseMapsLineRegex(l)).filter((m) =>
          m!.perms[0] === "r" && m!.perms[2] === "x"
        ),
      );
      for (const needle of ["[v", "/", "rt_maps", "[stack]", "no such name"]) {
        assert.deepEqual(
          readMapsMatching(t.pid, needle),
          Deno.readTextFileSync(`/proc/${t.pid}/maps`).split("\n").filter((l) => l.includes(needle))
            .map((l) => parseMapsLineRegex(l)),
          needle,
        );
      }
    } finally {
      t.signal(18);
      await t.kill();
    }
  }),
);
