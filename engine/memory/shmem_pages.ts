/**
 * Shared anonymous memory: pages of the shmem object that the dumping
 * process has not mapped.
 *
 * The dump saves a shared anonymous mapping's pages as the pagemap of the
 * process that stores it shows them (present or swapped), and a child that
 * inherits the mapping stores none (engine/memory/inherit.ts). But the
 * pages of one shmem object exist once for all its holders, and a page that
 * another process wrote (a forked worker: PostgreSQL's backends write its
 * shared buffers, the postmaster does not read them), or that a process
 * since gone wrote, is in the object without being in this process's page
 * tables: left out, it would come back as zeros. So, while the tree is
 * frozen and before any page is planned, every page the object holds (its
 * data extents, SEEK_DATA through /proc/<pid>/map_files) that this
 * process's pagemap does not show is read once through /proc/<pid>/mem,
 * which maps it; holes stay holes (a read fault there would allocate).
 * Where the object cannot be opened (no access to map_files: a rootless
 * dump), a mapping whose pages this process has not all mapped is
 * reported ({@link ShmemFaults.unreachable}): the dump refuses it.
 *
 * The object's size is read on the way (one lseek on the fd already open):
 * a mapping grown with mremap past its object (SIGBUS there) records it
 * ({@link markShmemObjects}, `Mapping.shmemSize`) so that the restore makes
 * the object no bigger; otherwise the restored object would be as long as
 * the mapping and the SIGBUS range readable. An area split by mprotect or
 * madvise is several mappings of one object: each one that continues the
 * object of the one before (adjacent, same inode, offset following on) is
 * marked (`Mapping.shmemJoin`), and the restore maps the run as one object.
 * Pieces of one object that are not side by side (one moved by mremap, the
 * object mapped again through its map_files entry) are each marked with the
 * object's inode and size (`Mapping.shmemObject`): the restore makes the
 * object once and maps every piece from it at its offset.
 *
 * @module
 */

import { dataExtents, fileSize } from "../../ffi/files.ts";
import { closeRawFd, openRawFd } from "../../ffi/syscall_table.ts";
import { type MapEntry, readMapsMatching } from "../proc/maps.ts";
import { openPagemap, PAGE_SIZE } from "../proc/pagemap.ts";
import type { Mapping } from "../model.ts";
import type { Refusals } from "../support.ts";

/** How maps names shared anonymous memory (a shmem object). */
const SHMEM_PATH = "/dev/zero (deleted)";
/** How maps names shared anonymous hugetlb memory (a hugetlbfs object: engine/memory/hugetlb.ts). */
const HUGE_SHMEM_PATH = "/anon_hugepage (deleted)";
/** Whether a maps path names a shared anonymous object of either kind. */
const isShmemPath = (path: string) => path === SHMEM_PATH || path === HUGE_SHMEM_PATH;

/** What {@link mapShmemPages} did for one process. */
export interface ShmemFaults {
  /** Pages read in. */
  pages: number;
  /** Shared anonymous mappings whose object could not be opened (map_files: rootless). */
  unopened: number;
  /**
   * Of those, the ones whose pages this process has not all mapped: pages
   * another holder wrote may be missing from them, and cannot be found.
   */
  unreachable: { start: bigint; end: bigint }[];
  /**
   * Mappings that reach past the end of their object (grown with mremap):
   * their start and the object's bytes from the mapping's offset on (0 or
   * less: the whole mapping is past the end).
   */
  short?: Map<bigint, number>;
  /**
   * Mappings that continue the object of the mapping just before them (an
   * area split by mprotect or madvise: same object, adjacent, its offset
   * following on), by start.
   */
  joined?: Set<bigint>;
  /**
   * Mappings that are pieces of an object this process maps in several
   * places not side by side (a piece moved by mremap, the object mapped
   * again through map_files), by start: the object's identity (its inode)
   * and size ({@link markShmemObjects}).
   */
  objects?: Map<bigint, { id: number; size: number }>;
}

/**
 * Maps into frozen process `pid` every page its shared anonymous mappings'
 * objects hold and its pagemap lacks (see the module doc). `frozenMaps`:
 * its maps as the freeze found them, when the dump has them (no read of
 * maps here then).
 */
export function mapShmemPages(pid: number, frozenMaps?: readonly MapEntry[]): ShmemFaults {
  const out: ShmemFaults = { pages: 0, unopened: 0, unreachable: [] };
  const areas =
    // (Both names end in " (deleted)": one read of maps, only those lines parsed.)
    (frozenMaps ?? readMapsMatching(pid, " (deleted)")).filter((v) =>
      isShmemPath(v.path) && v.perms[3] === "s"
    );
  if (areas.length === 0) return out;
  using pagemap = openPagemap(pid);
  let mem: Deno.FsFile | undefined;
  let buf: Uint8Array | undefined;
  let prev: MapEntry | undefined;
  // Per object (inode): its pieces here, and its size where map_files told it.
  const byObject = new Map<string, { pieces: MapEntry[]; runs: number; size: number }>();
  try {
    for (const v of areas) {
      const key = `${v.dev}:${v.inode}`;
      const held = byObject.get(key) ?? { pieces: [], runs: 0, size: -1 };
      byObject.set(key, held);
      held.pieces.push(v);
      if (
        prev && prev.end === v.start && prev.inode === v.inode && prev.dev === v.dev &&
        v.offset === prev.offset + (prev.end - prev.start)
      ) {
        (out.joined ??= new Set()).add(v.start);
      } else held.runs++;
      prev = v;
      let obj: number;
      try {
        obj = openRawFd(
          `/proc/${pid}/map_files/${v.start.toString(16)}-${v.end.toString(16)}`,
          false,
        );
      } catch {
        obj = -1;
      }
      if (obj < 0) {
        out.unopened++;
        const entries = pagemap.read(v.start, v.end);
        for (let i = 0; i < entries.length; i++) {
          if (entries.present(i) || entries.swapped(i)) continue;
          out.unreachable.push({ start: v.start, end: v.end });
          break;
        }
        continue;
      }
      let extents: [number, number][];
      try {
        const size = fileSize(obj);
        if (size >= 0) held.size = size;
        if (size >= 0 && size < Number(v.offset + v.end - v.start)) {
          (out.short ??= new Map()).set(v.start, size - Number(v.offset));
        }
        extents = dataExtents(obj, Number(v.offset + v.end - v.start));
      } finally {
        closeRawFd(obj);
      }
      const off = Number(v.offset);
      for (const [at, len] of extents) {
        const from = Math.max(at, off), to = Math.min(at + len, off + Number(v.end - v.start));
        if (from >= to) continue;
        const start = v.start + BigInt(from - off);
        const entries = pagemap.read(start, start + BigInt(to - from));
        for (let i = 0; i < entries.length;) {
          if (entries.present(i) || entries.swapped(i)) {
            i++;
            continue;
          }
          let j = i;
          while (j < entries.length && !entries.present(j) && !entries.swapped(j)) j++;
          mem ??= Deno.openSync(`/proc/${pid}/mem`, { read: true });
          buf ??= new Uint8Array(1 << 20);
          let addr = Number(start) + i * PAGE_SIZE;
          const stop = Number(start) + j * PAGE_SIZE;
          while (addr < stop) {
            mem.seekSync(addr, Deno.SeekMode.Start);
            const n = mem.readSync(buf.subarray(0, Math.min(buf.length, stop - addr)));
            if (n === null || n === 0) break;
            addr += n;
          }
          out.pages += j - i;
          i = j;
        }
      }
    }
  } finally {
    mem?.close();
  }
  for (const [, o] of byObject) {
    if (o.runs < 2) continue; // one area, or one run of adjacent pieces (shmemJoin)
    let size = o.size;
    if (size < 0) {
      for (const v of o.pieces) size = Math.max(size, Number(v.offset + v.end - v.start));
    }
    for (const v of o.pieces) (out.objects ??= new Map()).set(v.start, { id: v.inode, size });
  }
  return out;
}

/** Refuses the mappings {@link mapShmemPages} found unreachable in process `pid`. */
export function refuseUnreachableShmem(pid: number, faults: ShmemFaults, refusals: Refusals): void {
  for (const { start, end } of faults.unreachable) {
    refusals.use(
      "memory.shmem-unreachable",
      `process ${pid} mapping ${start.toString(16)}-${end.toString(16)}`,
      "some of its pages are not mapped by the process, and without CAP_SYS_ADMIN over /proc/<pid>/map_files the pages another process wrote cannot be found",
    );
  }
}

/**
 * Records in the shared anonymous mappings of process `pid` that reach past
 * their object how much of each the object covers (`Mapping.shmemSize`,
 * from {@link mapShmemPages}), which continue the object of the mapping
 * before them (`Mapping.shmemJoin`), and which are pieces of an object
 * mapped in several places (`Mapping.shmemObject`); refuses one wholly past
 * its object.
 */
export function markShmemObjects(
  pid: number,
  mappings: readonly Mapping[],
  faults: ShmemFaults,
  refusals: Refusals,
): void {
  if (!faults.short && !faults.joined && !faults.objects) return;
  for (const m of mappings) {
    if (m.kind !== "anon-shared") continue;
    if (faults.joined?.has(BigInt(m.start))) m.shmemJoin = true;
    const object = faults.objects?.get(BigInt(m.start));
    if (object) m.shmemObject = { ...object };
    const covered = faults.short?.get(BigInt(m.start));
    if (covered === undefined) continue;
    if (covered > 0) m.shmemSize = covered;
    else {
      refusals.use(
        "memory.shmem-past-end",
        `process ${pid} mapping ${m.start}-${m.end}`,
      );
    }
  }
}
