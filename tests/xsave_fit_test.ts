/**
 * engine/restore/xsave_fit.ts: a recorded XSAVE area laid out by another
 * CPU is taken as it is, moved into an area of this CPU's size when only
 * x87/SSE/AVX are in use (their offsets are fixed), moved component by
 * component between Intel's and AMD's layouts, or refused when a component
 * beyond AVX is in use in a layout cryo does not know. Areas are made up:
 * this host is one CPU.
 */

import assert from "node:assert/strict";
import { checkpoint } from "../engine/dump/mod.ts";
import { RestoreError } from "../engine/errors.ts";
import { checksumFile, NT_X86_XSTATE, readImageFile } from "../engine/image/mod.ts";
import { restore } from "../engine/restore/mod.ts";
import { fitXsave } from "../engine/restore/xsave_fit.ts";
import { pathExists, tempDir } from "./helpers/fs.ts";
import { tempImageDir } from "./helpers/roundtrip.ts";
import { adoptPid, startTarget, withTargets } from "./helpers/targets.ts";

/** A standard-format area of `size` bytes for features `xcr0`, with `used` in its header. */
function area(size: number, xcr0: bigint, used: bigint): Uint8Array {
  const a = new Uint8Array(size);
  for (let i = 0; i < size; i++) a[i] = (i * 7 + 3) & 0xff;
  const dv = new DataView(a.buffer);
  dv.setBigUint64(464, xcr0, true);
  dv.setBigUint64(512, used, true);
  dv.setBigUint64(520, 0n, true);
  return a;
}

// An Intel part with AVX-512 and PKRU (MPX space kept), an AMD one (no MPX space), an AVX2 one.
const INTEL = { xcr0: 0x2e7n, size: 2696 };
const AMD = { xcr0: 0x2e7n, size: 2440 };
const AVX2 = { xcr0: 0x7n, size: 832 };

Deno.test("xsave fit: the same CPU's area is taken as it is", () => {
  const a = area(AMD.size, AMD.xcr0, 0x2e7n);
  assert.equal(fitXsave(1, a, AMD.xcr0, AMD.size), a);
});

Deno.test("xsave fit: x87/SSE/AVX only, another size: moved into this CPU's size", () => {
  for (const [from, to] of [[INTEL, AMD], [AVX2, AMD], [AMD, INTEL]]) {
    const a = area(from.size, from.xcr0, 0x7n);
    const fit = fitXsave(1, a, to.xcr0, to.size);
    assert.ok(fit instanceof Uint8Array);
    assert.equal(fit.length, to.size);
    assert.deepEqual(fit.subarray(0, 832), a.subarray(0, 832), "legacy area, header and AVX kept");
    assert.ok(fit.subarray(832).every((b) => b === 0), "the rest in its initial state");
  }
});

Deno.test("xsave fit: AVX-512 and PKRU moved between Intel's and AMD's layouts, component by component", () => {
  // [bit, size, Intel offset, AMD offset]
  const comps = [[5, 64, 1088, 832], [6, 512, 1152, 896], [7, 1024, 1664, 1408], [
    9,
    8,
    2688,
    2432,
  ]];
  for (const [from, to, at, back] of [[INTEL, AMD, 3, 2], [AMD, INTEL, 2, 3]] as const) {
    const a = area(from.size, from.xcr0, 0x2a7n); // AVX-512 opmask, Hi16_ZMM and PKRU in use
    const fit = fitXsave(1, a, to.xcr0, to.size);
    assert.ok(fit instanceof Uint8Array, String(fit));
    assert.equal(fit.length, to.size);
    assert.deepEqual(fit.subarray(0, 832), a.subarray(0, 832));
    for (const c of comps) {
      const got = fit.subarray(c[at], c[at] + c[1]);
      if (c[0] === 6) assert.ok(got.every((b) => b === 0), "ZMM_Hi256 not in use: initial state");
      else assert.deepEqual(got, a.subarray(c[back], c[back] + c[1]), `component ${c[0]}`);
    }
  }
});

Deno.test("xsave fit: a component beyond AVX in a layout cryo does not know is refused", () => {
  const odd = area(3000, INTEL.xcr0, 0x2e7n);
  assert.match(
    fitXsave(7, odd, AMD.xcr0, AMD.size) as string,
    /^thread 7 uses XSAVE features 0x2e7 in a layout cryo does not know \(an area of 3000 bytes for features 0x2e7; this CPU's: 2440 bytes for 0x2e7\)/,
  );
  // AMX (bits 17, 18) enabled: no known layout either.
  const amx = area(11008, 0x602e7n, 0x2e7n);
  assert.equal(typeof fitXsave(7, amx, AMD.xcr0, AMD.size), "string");
  // This host's own kind (AMD, no PKRU) from an area whose size fits no layout of its XCR0.
  assert.equal(typeof fitXsave(7, area(2432, 0x2e7n, 0xa7n), 0xe7n, 2432), "string");
});

Deno.test("xsave fit: a feature this CPU lacks is refused", () => {
  const a = area(INTEL.size, INTEL.xcr0, 0x2e7n);
  assert.match(
    fitXsave(3, a, AVX2.xcr0, AVX2.size) as string,
    /^thread 3 uses XSAVE features 0x2e7 but this CPU offers 0x7$/,
  );
});

Deno.test(
  "xsave fit: a real image whose XSAVE area claims features of another layout is refused in one line, nothing left",
  withTargets(async () => {
    const work = await tempDir("cryo-rt-world-");
    const t = await startTarget("rt_world", [`${work}/go`, work, "plain"]);
    assert.equal(Number((await t.waitFor(/^ready (\d+)$/m))[1]), t.pid);
    const dir = await tempImageDir();
    await checkpoint(t.pid, { dir });
    await t.wait();
    // The main thread's NT_X86_XSTATE note, edited in place: XCR0 with PKRU added (an area of
    // this CPU's size then fits no layout of those features), AVX-512 opmask in use.
    const path = `${dir}/${t.pid}.elf`;
    const info = await readImageFile(path);
    const note = info.notes.find((n) => n.type === NT_X86_XSTATE);
    assert.ok(note, "no NT_X86_XSTATE note");
    const edited = note.desc.slice();
    const dv = new DataView(edited.buffer);
    dv.setBigUint64(464, dv.getBigUint64(464, true) | 0x200n, true);
    dv.setBigUint64(512, dv.getBigUint64(512, true) | 0x20n, true);
    {
      using f = await Deno.open(path, { read: true, write: true });
      await f.seek(note.descOffset, Deno.SeekMode.Start);
      await f.write(edited);
    }
    const manifestPath = `${dir}/manifest.json`;
    const manifest = JSON.parse(await Deno.readTextFile(manifestPath));
    manifest.processes[0].checksum = await checksumFile(path);
    await Deno.writeTextFile(manifestPath, JSON.stringify(manifest, null, 2));
    const before = await Deno.readFile(path);
    const err = await restore(dir).then((tree) => {
      for (const pid of tree.pids) adoptPid(pid); // (killed at the end of the test)
      return undefined;
    }, (e: unknown) => e);
    assert.ok(err instanceof RestoreError, `not refused: ${err}`);
    assert.match(
      err.message,
      /^cannot restore: thread \d+ uses XSAVE features 0x[0-9a-f]+ in a layout cryo does not know \(an area of \d+ bytes for features 0x[0-9a-f]*2[0-9a-f]{2}; this CPU's: \d+ bytes for 0x[0-9a-f]+\)[^\n]*$/,
    );
    assert.ok(!pathExists(`/proc/${t.pid}`), "nothing left running");
    assert.deepEqual(await Deno.readFile(path), before, "the image is left as it was");
  }),
);
