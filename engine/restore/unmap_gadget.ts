/**
 * The syscall instruction outside the bootstrap through which a restore
 * unmaps the bootstrap, found without reading the whole /proc/<pid>/maps
 * (tens of thousands of lines in a process with many mappings): the
 * image's own [vdso] areas, back at their dumped addresses, are checked by
 * one PROCMAP_QUERY each (still readable and executable, outside the
 * bootstrap) and searched for the instruction's bytes. A process without a
 * usable vdso falls back to the full search of its executable memory.
 *
 * @module
 */

import { findSyscallInstruction } from "../../ffi/inject.ts";
import { processVmRead } from "../../ffi/process_vm.ts";
import { hexToBigInt } from "../image/notes.ts";
import type { ProcessImage } from "../model.ts";
import { mappingAt } from "../proc/maps.ts";

/** The vdso is a few pages; no more than this is searched per area. */
const MAX_SEARCH = 64 << 10;

/**
 * The address of a `syscall` instruction (0f 05) in readable, executable
 * memory of `pid` outside `exclude`: in the image's [vdso] when it is
 * there as the image says (the last such area of the image that qualifies),
 * otherwise anywhere (findSyscallInstruction).
 */
export function syscallOutside(
  pid: number,
  image: ProcessImage,
  exclude: { start: bigint; end: bigint },
): bigint {
  // From the end: the vdso sits near the top of the address space, and this runs after the
  // stub, on the restore's critical path (a walk over 10,000 mappings from the start: ~4 ms).
  const mappings = image.mappings;
  for (let k = mappings.length - 1; k >= 0; k--) {
    const m = mappings[k];
    if (m.kind !== "vdso" || m.name !== "[vdso]") continue;
    const start = hexToBigInt(m.start);
    const area = mappingAt(pid, start);
    if (!area || area.start !== start || area.perms[0] !== "r" || area.perms[2] !== "x") continue;
    if (area.end > exclude.start && area.start < exclude.end) continue;
    const size = area.end - area.start;
    const buf = new Uint8Array(Number(size < BigInt(MAX_SEARCH) ? size : BigInt(MAX_SEARCH)));
    let n: number;
    try {
      n = processVmRead(pid, start, buf);
    } catch {
      continue;
    }
    for (let i = 0; i + 1 < n; i++) {
      if (buf[i] === 0x0f && buf[i + 1] === 0x05) return start + BigInt(i);
    }
  }
  return findSyscallInstruction(pid, exclude);
}
