/**
 * Huge page (hugetlb) memory: anonymous `MAP_HUGETLB` mappings, private and
 * shared.
 *
 * Dump: maps names such an area "/anon_hugepage (deleted)" (a hugetlbfs
 * inode), VmFlags "ht"; it is classed as anonymous memory
 * (engine/dump/vmas.ts) and its huge page size is read from smaps'
 * KernelPageSize ({@link recordHugePageSizes}); its present pages are saved
 * as any anonymous mapping's (process_vm_readv reads hugetlb memory).
 *
 * Restore: mapped again with `MAP_HUGETLB | MAP_HUGE_<size>`
 * ({@link hugeMmapFlags}), its pages read into it (pread: a hugetlb mapping
 * cannot be mapped from the image file, nor filled by userfaultfd copies of
 * small pages). Before any process is made, {@link checkHugePagesFree}
 * refuses by name a host with too few free huge pages of a size: an mmap of
 * hugetlb memory reserves its pages at once, and would fail mid-restore.
 *
 * @module
 */

import type { GhostFile, Mapping, ProcessImage } from "../model.ts";
import { readSmaps } from "../proc/smaps.ts";
import { RestoreError } from "../errors.ts";

/** maps' name of an anonymous hugetlb area (without " (deleted)"). */
export const ANON_HUGEPAGE = "/anon_hugepage";

/** Whether a maps path names an anonymous hugetlb area. */
export function isAnonHugePath(path: string): boolean {
  return path === ANON_HUGEPAGE || path === ANON_HUGEPAGE + " (deleted)";
}

/** Whether `m` is an anonymous hugetlb mapping cryo restores (kind anon or anon-shared). */
export function isAnonHugetlb(m: Mapping): boolean {
  return (m.kind === "anon" || m.kind === "anon-shared") && m.vmFlags.includes("ht") &&
    isAnonHugePath(m.name);
}

/**
 * Whether `m` is a mapping of a MFD_HUGETLB memfd or a deleted file of a
 * hugetlbfs mount (saved as a ghost with its huge page size:
 * engine/fds/ghost.ts) or of a file of a hugetlbfs mount (the file keeps
 * its pages); mapping the re-created memfd or file, or the file again,
 * gives it its huge pages again.
 */
function isHugeFileMapping(m: Mapping): boolean {
  return (m.kind === "file-shared" || m.kind === "file-private") && m.vmFlags.includes("ht");
}

/**
 * Sets `hugePageSize` of each anonymous hugetlb mapping of `pid` from smaps'
 * KernelPageSize (smaps read once, only when there is one).
 */
export function recordHugePageSizes(pid: number, mappings: readonly Mapping[]): void {
  const huge = mappings.filter((m) => isAnonHugetlb(m) || isHugeFileMapping(m));
  if (huge.length === 0) return;
  const sizes = new Map<bigint, number>();
  for (const e of readSmaps(pid)) {
    const k = e.sizes["KernelPageSize"];
    if (k) sizes.set(e.start, k);
  }
  for (const m of huge) {
    const size = sizes.get(BigInt(m.start));
    if (size && size > 4096) m.hugePageSize = size;
  }
}

const MAP_HUGETLB = 0x40000;
const MAP_HUGE_SHIFT = 26;

/** The mmap flags that give `m` its huge pages again (0 for other mappings). */
export function hugeMmapFlags(m: Mapping): number {
  const size = m.hugePageSize;
  if (!size) return 0;
  return MAP_HUGETLB | (Math.log2(size) << MAP_HUGE_SHIFT);
}

/** Free huge pages of `size` bytes on this host, or 0 when it has no pool of that size. */
export function freeHugePages(size: number): number {
  try {
    const dir = `/sys/kernel/mm/hugepages/hugepages-${size / 1024}kB`;
    return Number(Deno.readTextFileSync(`${dir}/free_hugepages`).trim());
  } catch {
    return 0;
  }
}

/** Bytes as "2 MiB" / "1 GiB". */
function sizeText(size: number): string {
  return size >= 1 << 30 ? `${size / (1 << 30)} GiB` : `${size / (1 << 20)} MiB`;
}

/**
 * Huge pages of each size the restore of `processes` and `ghosts` takes:
 * each anonymous mapping's length in pages, but a shared mapping inherited
 * from a parent (the same pages) and pieces of one shared object counted
 * once; a MFD_HUGETLB memfd's pages that hold data or that a shared
 * mapping of it covers (an mmap reserves them), and the copied pages of a
 * private mapping of one.
 */
export function hugePagesNeeded(
  processes: readonly ProcessImage[],
  ghosts: readonly GhostFile[] = [],
): Map<number, number> {
  const need = new Map<number, number>();
  for (const g of ghosts) {
    const size = g.hugePageSize;
    if (!size) continue;
    // Its pages holding data, and those its shared mappings reserve (each page once).
    const pages = new Set<number>();
    const add = (offset: number, length: number) => {
      for (let at = offset - offset % size; at < offset + length; at += size) pages.add(at / size);
    };
    for (const [offset, length] of g.extents) add(offset, length);
    for (const p of processes) {
      p.mappings.forEach((m) => {
        if (m.ghost !== g.id || m.kind !== "file-shared") return;
        add(Number(BigInt(m.offset)), Number(BigInt(m.end) - BigInt(m.start)));
      });
    }
    need.set(size, (need.get(size) ?? 0) + pages.size);
  }
  const objects = new Set<string>();
  for (const p of processes) {
    // The hugetlb mappings found by `filter` (V8's own loop: a `for` over 10,000 mappings is
    // compiled for on-stack replacement on V8's workers, engine/find_from.ts), then the few walked.
    for (const m of p.mappings.filter((m) => m.hugePageSize)) {
      const size = m.hugePageSize;
      if (!size || m.excluded) continue;
      if (m.kind === "anon-shared" && m.inherited) continue;
      // A memfd's own pages are the ghost's (below); a private mapping of it, its copied pages.
      if (m.kind === "file-shared") continue;
      let pages = m.kind === "file-private"
        ? m.pages.reduce((n, r) => n + r.length, 0) / size
        : (Number(BigInt(m.end) - BigInt(m.start))) / size;
      if (m.shmemObject) {
        const key = `${p.pid}:${m.shmemObject.id}`;
        if (m.shmemObject.inParent || objects.has(key)) continue;
        objects.add(key);
        pages = m.shmemObject.size / size;
      }
      need.set(size, (need.get(size) ?? 0) + Math.ceil(pages));
    }
  }
  return need;
}

/**
 * Pre-flight: throws a {@link RestoreError} naming the count when the host
 * has fewer free huge pages of a size than the images' hugetlb mappings
 * take.
 */
export function checkHugePagesFree(
  processes: readonly ProcessImage[],
  ghosts: readonly GhostFile[] = [],
  /** System V segments the restore makes (a SHM_HUGETLB one takes its whole size at shmget). */
  segments: readonly { size: number; hugePageSize?: number }[] = [],
): void {
  const need = hugePagesNeeded(processes, ghosts);
  for (const s of segments) {
    if (s.hugePageSize) {
      need.set(
        s.hugePageSize,
        (need.get(s.hugePageSize) ?? 0) + Math.ceil(s.size / s.hugePageSize),
      );
    }
  }
  for (const [size, pages] of need) {
    const free = freeHugePages(size);
    if (free < pages) {
      throw new RestoreError(
        `cannot restore: hugetlb memory: the images map ${pages} huge page(s) of ${
          sizeText(size)
        }, ` +
          `this host has ${free} free (/proc/sys/vm/nr_hugepages or ` +
          `/sys/kernel/mm/hugepages/hugepages-${size / 1024}kB/nr_hugepages)`,
      );
    }
  }
}
