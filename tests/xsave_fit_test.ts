/**
 * engine/restore/xsave_fit.ts: a recorded XSAVE area laid out by another
 * CPU is taken as it is, moved into an area of this CPU's size when only
 * x87/SSE/AVX are in use (their offsets are fixed), or refused when a
 * component beyond AVX (AVX-512, PKRU: offsets that differ between CPU
 * models) is in use. Areas are made up: this host is one CPU.
 */

import assert from "node:assert/strict";
import { fitXsave } from "../engine/restore/xsave_fit.ts";

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

Deno.test("xsave fit: AVX-512 or PKRU laid out by another CPU is refused", () => {
  const a = area(INTEL.size, INTEL.xcr0, 0x2e7n);
  const why = fitXsave(7, a, AMD.xcr0, AMD.size);
  assert.equal(typeof why, "string");
  assert.match(
    why as string,
    /^thread 7 uses XSAVE features 0x2e7 laid out by another CPU \(an area of 2696 bytes for features 0x2e7; this CPU's: 2440 bytes for 0x2e7\)/,
  );
  // The same size but other features enabled: offsets may differ as well.
  const other = area(AMD.size, 0x207n, 0x207n);
  assert.equal(typeof fitXsave(7, other, AMD.xcr0, AMD.size), "string");
});

Deno.test("xsave fit: a feature this CPU lacks is refused", () => {
  const a = area(INTEL.size, INTEL.xcr0, 0x2e7n);
  assert.match(
    fitXsave(3, a, AVX2.xcr0, AVX2.size) as string,
    /^thread 3 uses XSAVE features 0x2e7 but this CPU offers 0x7$/,
  );
});
