/**
 * Whether a thread's recorded XSAVE area can be given to this CPU as it
 * is. ptrace takes a standard-format area of exactly this CPU's size, and
 * places each component at this CPU's offset (CPUID leaf 0xD): only x87,
 * SSE (the legacy area) and AVX (offset 576) have offsets the architecture
 * fixes. Another CPU model (an AMD part without Intel's MPX space, say)
 * puts AVX-512 and PKRU elsewhere: an area laid out by it would load those
 * registers from the wrong bytes.
 *
 * - the same size and features (XCR0, which the kernel writes into the
 *   area's software-reserved bytes): taken as it is;
 * - only x87/SSE/AVX in use: moved into an area of this CPU's size (the
 *   same bytes at the same offsets, every other component in its initial
 *   state, as the header says);
 * - a component in use that this CPU lacks, or one beyond AVX laid out by
 *   another CPU: refused (one line, before any process is created).
 *
 * @module
 */

import { decodeXsaveHeader, xsaveXcr0 } from "../../ffi/structs.ts";

/** x87, SSE and AVX: the components at offsets the architecture fixes. */
const FIXED_FEATURES = 0x7n;
/** Legacy area (512), header (64), AVX upper halves (256). */
const FIXED_BYTES = 832;

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
  return `thread ${tid} uses XSAVE features 0x${
    used.toString(16)
  } laid out by another CPU (an area of ${area.length} bytes for features 0x${
    xcr0.toString(16)
  }; this CPU's: ${hostSize} bytes for 0x${
    hostXcr0.toString(16)
  }): its registers beyond AVX would be misplaced`;
}
