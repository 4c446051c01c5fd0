/**
 * Classifying a process's mappings for the image: what kind each is and
 * which of its pages must be saved, and choosing the bootstrap range.
 *
 * @module
 */

import type { MappingKind } from "../model.ts";
import type { SupportId } from "../support.ts";
import type { MappingRecord } from "../proc/smaps.ts";
import { findFrom } from "../find_from.ts";
import { ANON_HUGEPAGE } from "../memory/hugetlb.ts";

/** A mapping as the dumper sees it: the maps line plus smaps VmFlags. */
export type Vma = Pick<
  MappingRecord,
  "start" | "end" | "perms" | "offset" | "dev" | "inode" | "path" | "vmFlags"
>;

const VDSO_NAMES = new Set(["[vdso]", "[vvar]", "[vvar_vclock]"]);
const DELETED = " (deleted)";

/** The kind of a mapping. */
export function classifyVma(v: Vma): MappingKind {
  // Most of 10,000 areas: anonymous memory without a name (what the tests below conclude).
  if (v.path === "" && v.inode === 0) return v.perms[3] === "s" ? "anon-shared" : "anon";
  if (VDSO_NAMES.has(v.path)) return "vdso";
  if (v.path === "[vsyscall]") return "vsyscall";
  if (v.path.startsWith("/SYSV")) return "sysv-shm";
  if (v.path.startsWith("/[aio]")) return "aio";
  // Only a packet socket can be mapped (its rings): engine/fds/packet_ring.ts.
  if (v.path.startsWith("socket:[")) return "packet-ring";
  const shared = v.perms[3] === "s";
  // Shared anonymous memory is shmem: maps shows it as "/dev/zero (deleted)" with an inode.
  const path = v.path.endsWith(DELETED) ? v.path.slice(0, -DELETED.length) : v.path;
  // (An anonymous MAP_HUGETLB area is a hugetlbfs inode: engine/memory/hugetlb.ts.)
  const fileBacked = v.inode !== 0 && path !== "/dev/zero" && path !== ANON_HUGEPAGE;
  if (!fileBacked) return shared ? "anon-shared" : "anon";
  return shared ? "file-shared" : "file-private";
}

/**
 * The restorability-table row refusing a mapping, or null when it can be
 * saved (System V attachments are judged by engine/memory/sysvshm.ts, AIO
 * rings by engine/memory/aio.ts).
 */
export function refusedMapping(_v: Vma): SupportId | null {
  return null;
}

/** Which pagemap entries of a mapping hold data that must go into the image. */
export type PagePolicy = "none" | "anon-present" | "all-present";

/**
 * Page selection per kind: private mappings keep their anonymous (COW'd or
 * never file-backed) pages, shared anonymous memory keeps every resident or
 * swapped page, file-shared mappings keep nothing (the file has the data),
 * nor do System V attachments (the segment's content is saved once, by
 * engine/memory/sysvshm.ts).
 */
export function pagePolicy(kind: MappingKind): PagePolicy {
  switch (kind) {
    case "anon":
    case "file-private":
      return "anon-present";
    case "anon-shared":
      return "all-present";
    default:
      return "none";
  }
}

const MiB = 1n << 20n;

/** Lists found in strict address order, with their length then (lists read from /proc never change). */
const ordered = new WeakMap<readonly Vma[], number>();

/**
 * Whether `vmas` are in strictly increasing address order (as maps and
 * smaps list them). Remembered per list: the maps parsed before the
 * freeze are checked then, and the freeze's callers (the bootstrap's
 * range, the page plan) get the answer without a loop over 10,000 areas.
 */
export function inAddressOrder(vmas: readonly Vma[]): boolean {
  if (ordered.get(vmas) === vmas.length) return true;
  // Through findFrom: no loop of 10,000 rounds for V8 to compile (engine/find_from.ts).
  if (findFrom(vmas, (v, i) => i > 0 && !(vmas[i - 1].start < v.start)) >= 0) return false;
  ordered.set(vmas, vmas.length);
  return true;
}

/**
 * Picks a bootstrap range of `size` bytes that overlaps no mapping, at or
 * above 1 TiB, with a 16 MiB margin on each side, 2 MiB aligned.
 */
export function chooseBootstrap(vmas: readonly Vma[], size: number): bigint {
  const margin = 16n * MiB;
  const len = (BigInt(size) + 2n * MiB - 1n) & ~(2n * MiB - 1n);
  // smaps lists the areas in address order: no copy and sort of 10,000 areas then.
  const sorted = inAddressOrder(vmas)
    ? vmas
    : [...vmas].sort((a, b) => (a.start < b.start ? -1 : 1));
  let candidate = 1n << 40n;
  // v.end + margin <= candidate, and candidate + len + margin <= v.start, without a bigint per area.
  let below = candidate - margin, above = candidate + len + margin;
  for (const v of sorted) {
    if (v.path === "[vsyscall]") continue;
    if (v.end <= below) continue;
    if (above <= v.start) return candidate;
    candidate = (v.end + margin + 2n * MiB - 1n) & ~(2n * MiB - 1n);
    below = candidate - margin;
    above = candidate + len + margin;
  }
  if (candidate + len < 0x7ff000000000n) return candidate;
  throw new Error("no free address range for the restore bootstrap");
}

/**
 * Bytes the restore program carries for the signals queued to a process
 * and its threads (each a siginfo and its queueing op): a process flooded
 * with queued real-time signals while frozen can hold thousands.
 */
export function pendingSignalBytes(
  image: { sharedPending: readonly unknown[]; threads: readonly { pending: readonly unknown[] }[] },
): number {
  const queued = image.threads.reduce((n, t) => n + t.pending.length, image.sharedPending.length);
  return queued * 192;
}

/** Bytes to reserve for the restore stub and program of a process. */
export function bootstrapSizeFor(
  mappings: number,
  fds: number,
  threads: number,
  /** Data the restore program carries (e.g. socket queues). */
  dataBytes = 0,
): number {
  const bytes = (1 << 20) + mappings * 1024 + fds * 1024 + threads * 4096 + dataBytes * 2;
  return Math.ceil(bytes / (1 << 20)) * (1 << 20);
}
