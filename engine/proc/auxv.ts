/**
 * Reader of /proc/<pid>/auxv: the ELF auxiliary vector the process was
 * started with.
 *
 * @module
 */

import type { Hex } from "../model.ts";
import { assertAlive } from "./errors.ts";
import { procPath, readProcBytes } from "./io.ts";

/** Common auxv entry types (AT_*). */
export const AT = {
  NULL: 0,
  IGNORE: 1,
  EXECFD: 2,
  PHDR: 3,
  PHENT: 4,
  PHNUM: 5,
  PAGESZ: 6,
  BASE: 7,
  FLAGS: 8,
  ENTRY: 9,
  NOTELF: 10,
  UID: 11,
  EUID: 12,
  GID: 13,
  EGID: 14,
  PLATFORM: 15,
  HWCAP: 16,
  CLKTCK: 17,
  SECURE: 23,
  BASE_PLATFORM: 24,
  RANDOM: 25,
  HWCAP2: 26,
  RSEQ_FEATURE_SIZE: 27,
  RSEQ_ALIGN: 28,
  HWCAP3: 29,
  HWCAP4: 30,
  EXECFN: 31,
  SYSINFO_EHDR: 33,
  MINSIGSTKSZ: 51,
} as const;

/** One auxv entry: [type, value]. */
export type AuxvEntry = [type: number, value: bigint];

/** Decodes raw auxv bytes (native 64-bit pairs), stopping at AT_NULL (not included). */
export function parseAuxv(bytes: Uint8Array): AuxvEntry[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: AuxvEntry[] = [];
  for (let off = 0; off + 16 <= bytes.byteLength; off += 16) {
    const type = view.getBigUint64(off, true);
    if (type === 0n) break;
    out.push([Number(type), view.getBigUint64(off + 8, true)]);
  }
  return out;
}

/**
 * Reads /proc/<pid>/auxv (AT_NULL terminator not included). Throws
 * ProcessGoneError for a zombie; a kernel thread gives [].
 */
export function readAuxv(pid: number): AuxvEntry[] {
  const bytes = readProcBytes(pid, "auxv");
  if (bytes.byteLength === 0) assertAlive(pid, procPath(pid, "auxv"));
  return parseAuxv(bytes);
}

/** Value of the first entry of `type`, or undefined. */
export function auxvValue(auxv: AuxvEntry[], type: number): bigint | undefined {
  return auxv.find((e) => e[0] === type)?.[1];
}

/** The model's form of auxv: values as hex strings. */
export function auxvToModel(auxv: AuxvEntry[]): [number, Hex][] {
  return auxv.map(([t, v]) => [t, `0x${v.toString(16)}`]);
}
