/**
 * Lazy restore (`cryo restore --lazy`), the restore program's side: which
 * mappings are restored lazily, and the ops that register them with a
 * userfaultfd instead of reading their pages.
 *
 * Lazy: private anonymous mappings with saved pages ([heap], stacks,
 * malloc arenas), of a process that has no child inheriting its memory,
 * is not in its parent's fd table (engine/task/shared_tables.ts: the
 * parent's fd phase runs after its program) and has no mlockall(MCL_FUTURE),
 * unless locked (mlock would fault every page
 * in while the program still runs). Eager as before: shared anonymous
 * memory, file mappings (private ones too: their unsaved pages come from
 * the file), System V shm, AIO rings, memory shared with children
 * (engine/memory/inherit*.ts).
 *
 * The memory phase maps these mappings and reads only their hot pages
 * (each thread's rseq area, which the kernel writes as soon as rseq is
 * registered again, and the stack pages under each stack pointer); at
 * its very end the program creates a userfaultfd (UFFD_FEATURE_EVENT_FORK,
 * REMAP, REMOVE, UNMAP: cryo follows the program's own changes to its
 * memory) and registers each lazy mapping in MISSING mode. The engine
 * takes the descriptor, copies in the few pages the kernel touches before
 * the tree runs, and serves the rest (engine/memory/lazy_serve.ts).
 *
 * @module
 */

import type { Mapping, ProcessImage } from "../model.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";
import { SYS } from "../../ffi/sysno.ts";
import { UFFD_API } from "../../ffi/probe.ts";
import { UFFD_FEATURE, UFFDIO, UFFDIO_REGISTER_MODE_MISSING } from "../../ffi/uffd.ts";
import { regsFromHex } from "../../ffi/regs.ts";

/** The features a lazy restore's userfaultfd is created with. */
export const LAZY_FEATURES = UFFD_FEATURE.EVENT_FORK | UFFD_FEATURE.EVENT_REMAP |
  UFFD_FEATURE.EVENT_REMOVE | UFFD_FEATURE.EVENT_UNMAP;

const PAGE = 4096n;
const O_CLOEXEC = 0o2000000;
const O_NONBLOCK = 0o4000;

/** A mapping served lazily: its range and saved page runs. */
export interface LazyRegion {
  start: bigint;
  end: bigint;
  /** Saved runs: address, length in bytes, offset in the image file. */
  runs: { addr: bigint; length: number; fileOffset: number }[];
}

/** Whether `proc`'s memory may be restored lazily at all (see the module doc). */
export function lazyProcessEligible(
  proc: ProcessImage,
  images?: ReadonlyMap<number, ProcessImage>,
): boolean {
  if (proc.memoryFlags?.mlockFuture) return false;
  // In its parent's fd table: the parent's fd phase, after its program, would close its userfaultfd.
  if (proc.sharesParentFiles) return false;
  for (const other of images?.values() ?? []) {
    if (other.inheritsMemory && other.ppid === proc.pid) return false;
  }
  return true;
}

/** Whether mapping `m` is served lazily (see the module doc). */
export function lazyMappingEligible(m: Mapping): boolean {
  return m.kind === "anon" && !m.inherited && m.sysvShm === undefined && !m.aio &&
    !m.excluded && m.pages.length > 0 && !m.vmFlags.includes("lo") && !m.vmFlags.includes("lf") &&
    // (userfaultfd does not register droppable areas; hugetlb ones take huge pages only.)
    !m.vmFlags.includes("dp") && !m.hugePageSize &&
    // Served from this process's own image file only (a chain is flattened before a restore).
    m.pages.every((r) => r.parent === undefined);
}

/** The lazy regions of `proc` (empty when it is restored eagerly). */
export function lazyRegions(
  proc: ProcessImage,
  images?: ReadonlyMap<number, ProcessImage>,
): LazyRegion[] {
  if (!lazyProcessEligible(proc, images)) return [];
  return proc.mappings.filter(lazyMappingEligible).map((m) => ({
    start: BigInt(m.start),
    end: BigInt(m.end),
    runs: m.pages.map((r) => ({
      addr: BigInt(r.addr),
      length: r.length,
      fileOffset: r.fileOffset,
    })),
  }));
}

/**
 * Pages of `proc` the engine copies in before the tree runs (rseq areas,
 * which the kernel writes while the engine still injects syscalls; the
 * page under and below each stack pointer).
 */
export function hotPages(proc: ProcessImage): Set<bigint> {
  const out = new Set<bigint>();
  for (const t of proc.threads) {
    if (t.rseq) {
      const a = BigInt(t.rseq.addr);
      for (let p = a & ~(PAGE - 1n); p < a + BigInt(t.rseq.len); p += PAGE) out.add(p);
    }
    const sp = regsFromHex(t.regs).rsp & ~(PAGE - 1n);
    out.add(sp);
    out.add(sp - PAGE); // a signal frame or the next call goes just below
  }
  return out;
}

/**
 * Emits, for a lazy mapping `m` (mapped, its pages not read), the reads
 * of its `hot` pages from the image (slot `imageSlot`).
 */
export function emitHotPages(
  p: ProgramBuilder,
  m: Mapping,
  hot: Set<bigint>,
  imageSlot: number,
): void {
  // Only the few hot pages inside this mapping, then one pass over its runs
  // (no per-run work for a mapping without any: most of them).
  const start = BigInt(m.start), end = BigInt(m.end);
  const mine = [...hot].filter((a) => a >= start && a < end).map(Number).sort((a, b) => a - b);
  if (mine.length === 0) return;
  for (const run of m.pages) {
    const addr = parseInt(run.addr.slice(2), 16);
    for (const page of mine) {
      const off = page - addr;
      if (off < 0 || off >= run.length) continue;
      p.op(SYS.pread64, [slot(imageSlot), BigInt(page), 4096, run.fileOffset + off], {
        comment: "lazy restore: a page the kernel or the first instruction needs",
      });
    }
  }
}

/**
 * Emits, at the very end of the program (after the fd phase, which closes
 * every fd it did not restore), the creation of the userfaultfd into slot
 * `uffdSlot` (non-blocking, close-on-exec), the API handshake with
 * {@link LAZY_FEATURES} and the registration of every lazy mapping of
 * `proc` in MISSING mode. Their pages were not read: until the engine
 * serves them, nothing may touch them (engine/memory/lazy_serve.ts checks
 * that none is present when it takes the descriptor).
 */
export function emitLazyRegistration(
  p: ProgramBuilder,
  proc: ProcessImage,
  images: ReadonlyMap<number, ProcessImage> | undefined,
  uffdSlot: number,
): void {
  const regions = lazyRegions(proc, images);
  if (regions.length === 0) return;
  p.op(SYS.userfaultfd, [O_CLOEXEC | O_NONBLOCK], {
    store: uffdSlot,
    comment: "lazy restore: the userfaultfd cryo serves the pages through",
  });
  p.op(SYS.ioctl, [slot(uffdSlot), UFFDIO.API, p.u64s([UFFD_API, LAZY_FEATURES, 0n])], {
    comment: "UFFDIO_API",
  });
  for (const r of regions) {
    p.op(
      SYS.ioctl,
      [
        slot(uffdSlot),
        UFFDIO.REGISTER,
        p.u64s([r.start, r.end - r.start, UFFDIO_REGISTER_MODE_MISSING, 0n]),
      ],
      { comment: `UFFDIO_REGISTER 0x${r.start.toString(16)}-0x${r.end.toString(16)} (missing)` },
    );
  }
}
