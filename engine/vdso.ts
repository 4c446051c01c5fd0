/**
 * The kernel's vvar/vdso layout of a process and a hash of its [vdso]
 * code: recorded by dump (of the target), compared by restore (of cryo
 * itself), since a restored process keeps the dumped vdso addresses and
 * the code must be the same.
 *
 * @module
 */

import { sha256Hex } from "./sha256.ts";
import { processVmReadFully } from "../ffi/process_vm.ts";
import { type MapEntry, readMapsMatching } from "./proc/maps.ts";

const NAMES = new Set(["[vvar]", "[vvar_vclock]", "[vdso]"]);

/**
 * The vvar/vdso lines of `pid`'s maps, parsing only those (a process has
 * hundreds of others; every dump and restore asks). A process that is gone
 * is reported by {@link readMapsMatching}, as before.
 */
function vdsoMaps(pid: number): MapEntry[] {
  return readMapsMatching(pid, "[v").filter((m) => NAMES.has(m.path));
}

/** vvar/vdso mappings of `pid` (names and sizes, in address order) and SHA-256 of [vdso]. */
export function vdsoFacts(
  pid: number,
  /** The mappings of `pid` read at this freeze, if the caller has them (else maps is read). */
  areas?: readonly Pick<MapEntry, "start" | "end" | "path">[],
): { layout: { name: string; size: number }[]; sha256: string } {
  const maps = areas ? areas.filter((m) => NAMES.has(m.path)) : vdsoMaps(pid);
  const code = maps.find((m) => m.path === "[vdso]");
  let sha256 = "";
  if (code) {
    const buf = new Uint8Array(Number(code.end - code.start));
    processVmReadFully(pid, code.start, buf);
    sha256 = sha256Hex(buf);
  }
  return { layout: maps.map((m) => ({ name: m.path, size: Number(m.end - m.start) })), sha256 };
}
