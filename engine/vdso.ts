/**
 * The kernel's vvar/vdso layout of a process and a hash of its [vdso]
 * code: recorded by dump (of the target), compared by restore (of cryo
 * itself), since a restored process keeps the dumped vdso addresses and
 * the code must be the same.
 *
 * @module
 */

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

/** The vvar/vdso layout of a process and a copy of its [vdso] code, as {@link readVdso} read them. */
export interface VdsoCopy {
  /** vvar/vdso mappings (names and sizes, in address order). */
  layout: { name: string; size: number }[];
  /** The [vdso] bytes (empty when the process has none). */
  code: Uint8Array;
}

/**
 * Reads the vvar/vdso layout and the [vdso] bytes of `pid` (one 8 KiB
 * read: cheap enough while the tree is frozen; the hash can wait for the
 * thaw, see {@link hashVdso}).
 */
export function readVdso(
  pid: number,
  /** The mappings of `pid` read at this freeze, if the caller has them (else maps is read). */
  areas?: readonly Pick<MapEntry, "start" | "end" | "path">[],
): VdsoCopy {
  const maps = areas ? areas.filter((m) => NAMES.has(m.path)) : vdsoMaps(pid);
  const vdso = maps.find((m) => m.path === "[vdso]");
  const code = new Uint8Array(vdso ? Number(vdso.end - vdso.start) : 0);
  if (vdso) processVmReadFully(pid, vdso.start, code);
  return { layout: maps.map((m) => ({ name: m.path, size: Number(m.end - m.start) })), code };
}

/**
 * The layout of a {@link readVdso} copy and the SHA-256 of its code ("" without a [vdso]),
 * by WebCrypto: the same digest as engine/sha256.ts's, without running ~8 KiB of
 * rounds in cold JavaScript at every dump and restore (~6 to 9 ms of CPU).
 */
export async function hashVdso(
  copy: VdsoCopy,
): Promise<{ layout: { name: string; size: number }[]; sha256: string }> {
  if (!copy.code.length) return { layout: copy.layout, sha256: "" };
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", copy.code.slice()));
  return {
    layout: copy.layout,
    sha256: Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""),
  };
}

/** vvar/vdso mappings of `pid` (names and sizes, in address order) and SHA-256 of [vdso]. */
export function vdsoFacts(
  pid: number,
  /** The mappings of `pid` read at this freeze, if the caller has them (else maps is read). */
  areas?: readonly Pick<MapEntry, "start" | "end" | "path">[],
): Promise<{ layout: { name: string; size: number }[]; sha256: string }> {
  return hashVdso(readVdso(pid, areas));
}
