/**
 * Whether a thread's recorded XSAVE area can be given to this CPU. ptrace
 * takes a standard-format area of this CPU's size (a shorter one fails
 * with EFAULT, a longer one is cut) and reads each component at this
 * CPU's offset (CPUID leaf 0xD): only x87, SSE (the legacy area) and AVX
 * (offset 576) have offsets the architecture fixes. AMD parts have no MPX
 * space and put AVX-512 and PKRU 256 bytes lower than Intel's.
 *
 * - the same size and features (XCR0, which the kernel writes into the
 *   area's software-reserved bytes): taken as it is;
 * - only x87/SSE/AVX in use: copied into an area of this CPU's size;
 * - both areas in a layout cryo knows (Intel's or AMD's, told by XCR0 and
 *   size, engine/image/notes.ts `XSAVE_COMPONENTS`): each component in use
 *   moved to this CPU's offset;
 * - else (a component in use that this CPU lacks, or one beyond AVX in a
 *   layout cryo does not know): refused in one line, before any process
 *   is created.
 *
 * Components not in use (clear in the header's XSTATE_BV) are left zero:
 * the kernel gives them their initial state.
 *
 * @module
 */

import { decodeXsaveHeader, xsaveXcr0 } from "../../ffi/structs.ts";
import { XSAVE_COMPONENTS } from "../image/notes.ts";

/** x87, SSE and AVX: the components at offsets the architecture fixes. */
const FIXED_FEATURES = 0x7n;
/** Legacy area (512), header (64), AVX upper halves (256). */
const FIXED_BYTES = 832;

/**
 * Offset and size of each feature beyond AVX of an area for `xcr0` of
 * `size` bytes, when it is Intel's or AMD's layout; undefined when cryo
 * cannot tell (another size, a component it does not know).
 */
export function xsaveLayout(
  xcr0: bigint,
  size: number,
): Map<number, { offset: number; size: number }> | undefined {
  let known = FIXED_FEATURES;
  const comps = XSAVE_COMPONENTS.filter(([i]) => i > 2 && (xcr0 & (1n << BigInt(i))) !== 0n);
  for (const [i] of comps) known |= 1n << BigInt(i);
  if ((xcr0 & ~known) !== 0n) return undefined;
  const end = (at: (c: (typeof comps)[number]) => number | null) =>
    Math.max(FIXED_BYTES, ...comps.map((c) => (at(c) ?? Infinity) + c[1]));
  const intel = end((c) => c[2]) === size;
  const amd = !intel && end((c) => c[3]) === size;
  if (!intel && !amd) return undefined;
  return new Map(
    comps.map(([i, len, off, amdOff]) => [i, { offset: intel ? off : amdOff!, size: len }]),
  );
}

/**
 * The area to give thread `tid` on a CPU with features `hostXcr0` and
 * areas of `hostSize` bytes: `area` itself, a re-laid copy, or why it
 * cannot be (a sentence for "cannot restore: ...").
 */
export function fitXsave(
  tid: number,
  area: Uint8Array,
  hostXcr0: bigint,
  hostSize: number,
): Uint8Array | string {
  if (area.length < FIXED_BYTES) return area; // no XSAVE area (an old image's FXSAVE only)
  const used = decodeXsaveHeader(area).xstateBv;
  if ((used & ~hostXcr0) !== 0n) {
    return `thread ${tid} uses XSAVE features 0x${used.toString(16)} but this CPU offers 0x${
      hostXcr0.toString(16)
    }`;
  }
  const xcr0 = xsaveXcr0(area);
  if (area.length === hostSize && xcr0 === hostXcr0) return area;
  if ((used & ~FIXED_FEATURES) === 0n) {
    if (area.length === hostSize) return area;
    const out = new Uint8Array(hostSize);
    out.set(area.subarray(0, FIXED_BYTES));
    return out;
  }
  const from = xsaveLayout(xcr0, area.length);
  const to = xsaveLayout(hostXcr0, hostSize);
  if (from && to) {
    const out = new Uint8Array(hostSize);
    out.set(area.subarray(0, FIXED_BYTES));
    for (const [i, src] of from) {
      const dst = to.get(i);
      if ((used & (1n << BigInt(i))) === 0n || !dst) continue; // not in use: initial state
      out.set(area.subarray(src.offset, src.offset + src.size), dst.offset);
    }
    return out;
  }
  return `thread ${tid} uses XSAVE features 0x${
    used.toString(16)
  } in a layout cryo does not know (an area of ${area.length} bytes for features 0x${
    xcr0.toString(16)
  }; this CPU's: ${hostSize} bytes for 0x${
    hostXcr0.toString(16)
  }): its registers beyond AVX could land in the wrong places`;
}
