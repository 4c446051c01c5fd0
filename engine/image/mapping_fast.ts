/**
 * A fast test of the common mapping record of an image (engine/image/schema.ts's
 * `mapping`): an image of 10,000 mappings ran the generic shape checks
 * (a closure per field, a regular expression per address) ~10^5 times at
 * every restore. {@link plainMappingFits} says true only of a record those
 * checks pass: private or shared anonymous memory, file mappings without
 * their file identity, with page runs in this file; anything else (a file
 * identity, System V or AIO fields, any doubt) says false, and the record is
 * checked the generic way, with the same verdict, path and message as before.
 *
 * @module
 */

import { permsBits } from "../perms.ts";

/** The kinds a mapping record may have (the schema's enum, engine/image/schema.ts). */
export const MAPPING_KINDS = [
  "anon",
  "anon-shared",
  "file-private",
  "file-shared",
  "vdso",
  "vsyscall",
  "sysv-shm",
  "aio",
  "packet-ring",
] as const;

const KINDS: ReadonlySet<unknown> = new Set(MAPPING_KINDS);

/** The `end` of the last record {@link plainMappingFits} found a hex value in (a string). */
let lastEnd = "0x0";

/** Whether `s` matches `^0x[0-9a-fA-F]{1,16}$` (the schema's `hex`). */
export function isHex64(s: unknown): boolean {
  if (typeof s !== "string") return false;
  const n = s.length;
  if (n < 3 || n > 18 || s.charCodeAt(0) !== 48 || s.charCodeAt(1) !== 120) return false;
  for (let i = 2; i < n; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70))) return false;
  }
  return true;
}

/** The schema's `nat`: a finite safe integer, at least 0. */
export function isNat(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/**
 * True only when `x` passes the schema's mapping checks: every field the
 * schema names is present with its type, bounds and pattern, and the
 * optional `file`, `sysvShm` and `aio` are absent. False means "check it
 * the generic way", not "refused".
 */
export function plainMappingFits(x: unknown): boolean {
  if (!isPlainObject(x)) return false;
  // A text equal to one that passed passes: a mapping's start is mostly the end
  // before it, its offset "0x0", its first page run's address its start.
  const start = x.start;
  if (!(start === lastEnd || isHex64(start)) || !isHex64(x.end) || permsBits(x.perms) < 0) {
    return false;
  }
  lastEnd = x.end as string;
  if (!(x.offset === "0x0" || isHex64(x.offset))) return false;
  if (!KINDS.has(x.kind) || typeof x.name !== "string") return false;
  if (x.file !== undefined || x.sysvShm !== undefined || x.aio !== undefined) return false;
  // Checked by the schema:
  if (
    x.mempolicy !== undefined || x.shmemSize !== undefined || x.shmemJoin !== undefined ||
    x.shmemObject !== undefined || x.hugePageSize !== undefined
  ) {
    return false;
  }
  if (x.excluded !== undefined && typeof x.excluded !== "boolean") return false;
  if (x.ghost !== undefined && typeof x.ghost !== "string") return false;
  const flags = x.vmFlags;
  if (!Array.isArray(flags)) return false;
  for (let i = 0; i < flags.length; i++) if (typeof flags[i] !== "string") return false;
  const pages = x.pages;
  if (!Array.isArray(pages)) return false;
  for (let i = 0; i < pages.length; i++) {
    const r = pages[i];
    if (
      !isPlainObject(r) || !(r.addr === start || isHex64(r.addr)) || !isNat(r.length) ||
      !isNat(r.fileOffset)
    ) {
      return false;
    }
  }
  return true;
}
