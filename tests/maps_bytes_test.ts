/**
 * engine/proc/maps.ts `parseMapsBytes` reads a maps text from its bytes
 * (issue 10, eighth pass, branch mapsdump): it gives exactly the areas, or
 * the error, that `parseMaps` gives for the text as decoded, on live maps
 * files, on random texts with damaged lines, and on byte-level edge cases
 * (non-ASCII and invalid UTF-8 in paths, a byte order mark, long fields);
 * and the scan from the bytes itself takes the ordinary texts (no
 * fallback to the text's parse for them).
 *
 * @module
 */

import assert from "node:assert/strict";
import { type MapEntry, parseMaps, parseMapsBytes, scanMapsBytes } from "../engine/proc/maps.ts";
import { procPath } from "../engine/proc/io.ts";

let seed = 4111;
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
const PAGE = 4096;
const utf8 = new TextEncoder();

/** The areas or the error message `parseMaps` gives for `bytes` decoded as text. */
function reference(bytes: Uint8Array): MapEntry[] | string {
  try {
    return parseMaps(new TextDecoder().decode(bytes), 7, procPath(7, "maps"));
  } catch (e) {
    return `${(e as Error).constructor.name}: ${(e as Error).message}`;
  }
}

function got(bytes: Uint8Array): MapEntry[] | string {
  try {
    return parseMapsBytes(bytes, 7);
  } catch (e) {
    return `${(e as Error).constructor.name}: ${(e as Error).message}`;
  }
}

function same(bytes: Uint8Array, what: string): MapEntry[] | string {
  const want = reference(bytes);
  assert.deepEqual(got(bytes), want, what);
  return want;
}

/** Bytes with raw bytes spliced in where the text has "\u0001<hex>" marks. */
function withRaw(text: string): Uint8Array {
  const parts = text.split("\u0001");
  const out: number[] = [...utf8.encode(parts[0])];
  for (const p of parts.slice(1)) {
    out.push(parseInt(p.slice(0, 2), 16), ...utf8.encode(p.slice(2)));
  }
  return new Uint8Array(out);
}

Deno.test("parseMapsBytes: live maps files as parseMaps, taken by the byte scan", () => {
  let n = 0;
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    let bytes: Uint8Array;
    try {
      bytes = Deno.readFileSync(`/proc/${e.name}/maps`);
    } catch {
      continue;
    }
    const want = same(bytes, `/proc/${e.name}/maps`);
    assert.ok(Array.isArray(want));
    assert.deepEqual(scanMapsBytes(bytes), want, "taken by the byte scan");
    n++;
  }
  assert.ok(n >= 3, `only ${n} maps files`);
});

/** A random maps line (sometimes damaged, sometimes with unusual bytes). */
function mapsLine(at: bigint): [string, bigint] {
  const size = BigInt(PAGE * (1 + Math.floor(rnd() * 4)));
  const perms = pick(["r--p", "rw-p", "r-xp", "---p", "rw-s", "r-xs"]);
  const path = pick([
    "",
    "",
    "",
    "/usr/lib/libc.so.6",
    "[heap]",
    "/memfd:x (deleted)",
    "[vdso]",
    "[anon:glibc: malloc arena]",
    "/tmp/caf\u00e9 \u4e2d (deleted)",
    "/tmp/a\u0001ffb",
    "/tmp/cut\u0001e2\u000180",
    "/tmp/\u0001ef\u0001bb\u0001bfbom",
    "/tmp/ls\u2028x",
    "/tmp/cr\rx",
    "/tmp/\\012nl",
    "[stack]   ",
  ]);
  const dev = pick(["00:00", "fe:01", "00:00", "103:02", "1:2", "abcdef:abcdef", "0:0"]);
  const inode = path.startsWith("/") ? pick(["1234", "0", "1234567890123456789"]) : "0";
  const hexOf = (v: bigint) => (rnd() < 0.01 ? v.toString(16).padStart(16, "0") : v.toString(16));
  let line = `${hexOf(at)}-${hexOf(at + size)} ${perms} ${
    pick(["00000000", "00001000", "0123456789abcdef0"])
  } ${dev} ${inode}${path ? " ".repeat(1 + Math.floor(rnd() * 20)) + path : pick([" ", ""])}`;
  const damage = rnd();
  if (damage < 0.01) line = line.slice(0, Math.floor(rnd() * line.length)); // cut short
  else if (damage < 0.015) line = line.replace("-", "+"); // a bad address
  else if (damage < 0.02) line = line.replace(/[a-f]/, "A"); // upper case
  else if (damage < 0.025) line = line.replace(":", ";"); // a bad device
  else if (damage < 0.03) line = line.replace(" ", "  "); // two spaces
  else if (damage < 0.035) line = line.replace("p ", "q "); // bad permissions
  return [line, at + size + (rnd() < 0.5 ? 0n : BigInt(PAGE * Math.floor(rnd() * 1e6)))];
}

Deno.test("parseMapsBytes: random texts, damaged lines, unusual bytes: as parseMaps", () => {
  let refused = 0, scanned = 0;
  for (let round = 0; round < 600; round++) {
    const lines: string[] = [];
    let at = BigInt(0x10000 + Math.floor(rnd() * 1e6) * PAGE);
    const n = pick([0, 1, 2, 10, 100, 400]);
    for (let i = 0; i < n; i++) {
      const [line, next] = mapsLine(at);
      lines.push(rnd() < 0.01 ? "" : line);
      at = next;
      if (rnd() < 0.005) at = 0xffffffffff600000n;
    }
    let text = lines.join("\n") + (rnd() < 0.8 ? "\n" : "");
    if (rnd() < 0.01) text = "\u0001ef\u0001bb\u0001bf" + text; // a byte order mark first
    if (rnd() < 0.01) text = "\n\n" + text;
    const bytes = withRaw(text);
    const want = same(bytes, JSON.stringify(text.slice(0, 200)));
    if (typeof want === "string") refused++;
    if (scanMapsBytes(bytes)) scanned++;
  }
  assert.ok(refused > 20, `${refused} refused`);
  assert.ok(scanned > 100, `${scanned} taken by the byte scan`);
});

Deno.test("parseMapsBytes: edge cases as parseMaps", () => {
  const cases = [
    "",
    "\n",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 0",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 0                          [heap]\n",
    "55d0c0000000-55d0c0021000 r-xs 00001000 fe:01 1234567   /tmp/x (deleted)\n",
    "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0   [vsyscall]\n",
    "ffffffffffffffffff-ffffffffffffffffffff rw-p 0123456789abcdef0 00:00 0\n",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 12345678901234567890 /big/inode\n",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 123abc\n",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 /a\rb\n",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 0\r\n",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00\n",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 \n",
    "7f0000000000-7f0000001000 rw-p 00000000 00: 0\n",
    "7f0000000000-7f0000001000 rw-p 00000000 :00 0\n",
    "7f0000000000-7f0000001000 rw-p 00000000 0000000:0000000 0\n",
    "7f0000000000-7f0000001000 rw-p 00000000 000000:000000 0\n",
    "7f0000000000-7f0000001000 rw-p  00:00 0\n",
    "7f0000000000-7f0000001000 rw-p\n",
    "7f0000000000-7f0000001000 rw-px 00000000 00:00 0\n",
    "7f0000000000- rw-p 00000000 00:00 0\n",
    "-7f0000001000 rw-p 00000000 00:00 0\n",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 [anon:\u0001c3]\n",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 [anon:\u0001e2\u000180\u0001a8]\n",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \u0001ef\u0001bb\u0001bf[anon:x]\n",
    "\u0001ef\u0001bb\u0001bf7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n",
    "7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n\n7f0000001000-7f0000002000 r--p 00000000 00:00 0\n",
  ];
  for (const c of cases) same(withRaw(c), JSON.stringify(c));
  // Device strings are shared by their bytes, different texts of one value kept apart.
  const two = parseMapsBytes(withRaw(cases[16] + cases[17]));
  assert.deepEqual(two.map((a) => a.dev), ["0000000:0000000", "000000:000000"]);
});
