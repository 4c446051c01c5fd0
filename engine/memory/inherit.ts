/**
 * Memory a child shares with its parent since a fork, found at dump time.
 *
 * A child that did not exec since its fork still shares with its parent
 * the private pages neither wrote since (copy-on-write: one physical page,
 * the same page frame at the same address in both pagemaps), and shared
 * anonymous memory created before the fork (one shmem object: the same
 * inode in both maps). Such a child is restored by inheritance: its parent
 * forks it once the parent's own memory is in, and the child, instead of
 * exec'ing its image, fixes up the address space it inherited (see
 * inherit_restore.ts). Its image stores only the pages that differ from the
 * parent's; the shared ones are stored once, in the parent's image.
 *
 * A mapping of the child is kept ("inherited") when a mapping of the parent
 * covers its range with the same backing, file offset and the flags a fork
 * passes on (its protection and locks the child sets itself), and they
 * share at least one page frame (private memory) or the shmem object
 * (shared memory). Same page frame while the tree is frozen means
 * same content, so this never depends on how the sharing came about.
 *
 * A child sharing its parent's fd table (`sharesParentFiles`) is restored
 * this way even when it keeps no mapping: exec would unshare the table.
 *
 * Shared anonymous memory held by several processes that do not all
 * inherit it this way is refused: restoring it as separate copies would
 * silently stop writes from propagating.
 *
 * @module
 */

import type { Mapping, ProcessImage } from "../model.ts";
import type { Refusals } from "../support.ts";
import { bootstrapSizeFor, chooseBootstrap, type Vma } from "../dump/vmas.ts";
import {
  openPagemap,
  type PagemapEntries,
  type PagemapReader,
  PM,
  ZeroFrames,
} from "../proc/pagemap.ts";
import { parseSmaps, readSmaps, type SmapsEntry } from "../proc/smaps.ts";
import { NOT_INHERITED_FLAGS } from "./flags.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";

/** One described process of the frozen tree. */
export interface InheritanceInput {
  image: ProcessImage;
  /** Its vmas, index for index with `image.mappings`. */
  vmas: readonly Vma[];
}

/** A run of pages: [address, length in bytes]. */
export interface PageSpan {
  addr: bigint;
  length: number;
}

/** What {@link planInheritance} decided. */
export interface InheritancePlan {
  /**
   * The pages of mapping `index` of `pid` to save, when they differ from the
   * usual selection (inherited mappings: only pages not shared with the parent).
   */
  runs(pid: number, index: number): PageSpan[] | undefined;
  /** Bytes of page data not stored in a child because its parent's image has them. */
  sharedBytes: number;
  /** Of those, the bytes of child `pid` (0 for a process that inherits nothing). */
  sharedBytesOf(pid: number): number;
}

const PAGE = 4096;
const DATA = PM.PRESENT | PM.SWAPPED;

/** Whether entry i holds data the process's image would store (anonymous, not a guard). */
function stored(e: PagemapEntries, i: number): boolean {
  const hi = e.hi(i);
  return (hi & DATA) !== 0 && (hi & (PM.FILE | PM.GUARD)) === 0;
}

/**
 * Whether entries i of `a` and `b` are one page: both present with the same
 * frame, or both swapped to the same slot. Frame 0 (pagemap without
 * CAP_SYS_ADMIN hides frames) never counts as the same page.
 */
function samePage(a: PagemapEntries, b: PagemapEntries, i: number): boolean {
  if ((a.hi(i) & DATA) !== (b.hi(i) & DATA)) return false;
  const loA = a.lo(i), hiA = a.words[2 * i + 1] & 0x7fffff;
  if (loA === 0 && hiA === 0) return false;
  return loA === b.lo(i) && hiA === (b.words[2 * i + 1] & 0x7fffff);
}

/** Flags that follow from the protection (mprotect sets them) or that a fork drops. */
const FREE_FLAGS = new Set(["rd", "wr", "ex", ...NOT_INHERITED_FLAGS]);

function flagsForFork(m: Mapping): string {
  return m.vmFlags.filter((f) => !FREE_FLAGS.has(f)).join(" ");
}

/** The guard ranges of `m` inside [start, end), as text. */
function guardsIn(m: Mapping, start: bigint, end: bigint): string {
  return (m.guards ?? []).filter((g) => BigInt(g.addr) >= start && BigInt(g.addr) < end)
    .map((g) => `${g.addr}+${g.length}`).join();
}

/**
 * Whether a fork gives the child, where it has `child`, a piece of the
 * parent's mapping `parent` that only needs its protection (and locks)
 * set: the piece covers the child's range, with the same backing, file
 * offset, sharing and flags.
 */
function inheritable(parent: Mapping, pv: Vma, child: Mapping, cv: Vma): boolean {
  const ps = BigInt(parent.start), cs = BigInt(child.start);
  return ps <= cs && BigInt(child.end) <= BigInt(parent.end) &&
    // maps shows no offset for private anonymous memory (0 for every piece).
    (parent.kind === "anon" || pv.offset + (cs - ps) === cv.offset) &&
    parent.perms[3] === child.perms[3] &&
    parent.kind === child.kind && parent.name === child.name &&
    pv.dev === cv.dev && pv.inode === cv.inode &&
    !parent.excluded && !child.excluded &&
    !parent.vmFlags.includes("dc") && !parent.vmFlags.includes("wf") &&
    flagsForFork(parent) === flagsForFork(child) &&
    guardsIn(parent, cs, BigInt(child.end)) === guardsIn(child, cs, BigInt(child.end));
}

/** Index of the parent mapping containing `addr` (mappings sorted by address), or -1. */
function containing(mappings: readonly Mapping[], addr: bigint): number {
  let lo = 0, hi = mappings.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (BigInt(mappings[mid].end) <= addr) lo = mid + 1;
    else if (BigInt(mappings[mid].start) > addr) hi = mid - 1;
    else return mid;
  }
  return -1;
}

/** Appends page i (at `start`) to the runs, merging with the last run. */
function addPage(runs: PageSpan[], start: bigint, i: number): void {
  const addr = start + BigInt(i * PAGE);
  const last = runs[runs.length - 1];
  if (last && last.addr + BigInt(last.length) === addr) last.length += PAGE;
  else runs.push({ addr, length: PAGE });
}

/**
 * The page comparison's shortcuts: `exclusive` false reads and compares
 * every page (tests compare both; the smaps shortcut is off then too);
 * `taken` counts the mappings the exclusive-page shortcut settled
 * ({@link comparePages}), `bySmaps` those settled from the child's smaps
 * ({@link unsharedBySmaps}), `smaps` false turns the latter off,
 * `smapsMinBytes` is its threshold; `pagemapPages` counts the pagemap
 * entries the check read, `smapsAhead` the smaps texts it took from
 * {@link startSmapsReads} (tests).
 */
export const inheritShortcut = {
  exclusive: true,
  taken: 0,
  smaps: true,
  bySmaps: 0,
  smapsMinBytes: 32 * 1024 * 1024,
  pagemapPages: 0,
  smapsAhead: 0,
};

/**
 * Starts reading the smaps of each of `pids` (children of the frozen tree
 * whose candidates may pass {@link unsharedBySmaps}'s threshold) on
 * Deno's blocking threads, beside the rest of the collect; the texts (as
 * of the freeze: the tree is frozen; an area the collect's injected calls
 * split or merged meanwhile matches no candidate and is compared page by
 * page) are handed to {@link planInheritance}, by pid (none for a read
 * that failed: the check reads it itself).
 */
export function startSmapsReads(pids: readonly number[]): Promise<Map<number, string>> {
  if (!inheritShortcut.exclusive || !inheritShortcut.smaps || pids.length === 0) {
    return Promise.resolve(new Map());
  }
  return Promise.all(
    pids.map((pid) => Deno.readTextFile(`/proc/${pid}/smaps`).catch(() => undefined)),
  ).then((texts) => {
    const out = new Map<number, string>();
    texts.forEach((t, i) => t && out.set(pids[i], t));
    return out;
  });
}

/** Whether a child of `bytes` resident and `mappings` mappings is worth {@link startSmapsReads}. */
export function smapsAheadWorth(bytes: number, mappings: number): boolean {
  return bytes >= inheritShortcut.smapsMinBytes && mappings <= SMAPS_MAX_MAPPINGS;
}

/**
 * Mappings beyond which a child's smaps is not read (its text grows with
 * every mapping; the pagemap read only with the candidates' pages).
 */
const SMAPS_MAX_MAPPINGS = 512;

/**
 * The start addresses of the child's mappings (among `areas`, its
 * candidate private ones) of which smaps counts no page mapped by another
 * mm (Shared_Clean, Shared_Dirty, Shared_Hugetlb 0) and none swapped (Swap
 * 0): none of their frames can be the parent's (the parent mapping one
 * makes its map count 2), so the page comparison would count 0 shared and
 * keep none of them. Read when the candidates hold at least
 * `inheritShortcut.smapsMinBytes` (one smaps read of the whole process
 * against their pagemap: 512 MiB's pagemap 15 to 22 ms read and 2 to 8 ms
 * looped, the process's smaps 7 to 10 ms, docs/PERFORMANCE.md nineteenth
 * pass); empty when not read. Whatever smaps says, the images stay exact: a
 * mapping not kept is stored whole in the child.
 */
function unsharedBySmaps(
  pid: number,
  areas: readonly Vma[],
  mappings: number,
  ahead: string | undefined,
): Set<bigint> {
  const out = new Set<bigint>();
  if (!inheritShortcut.exclusive || !inheritShortcut.smaps || mappings > SMAPS_MAX_MAPPINGS) {
    return out;
  }
  let bytes = 0;
  for (const a of areas) bytes += Number(a.end - a.start);
  if (bytes < inheritShortcut.smapsMinBytes) return out;
  let smaps: SmapsEntry[];
  try {
    if (ahead) inheritShortcut.smapsAhead++;
    smaps = ahead ? parseSmaps(ahead, pid) : readSmaps(pid);
  } catch {
    return out; // the pagemap decides
  }
  const wanted = new Map(areas.map((a) => [a.start, a.end]));
  for (const e of smaps) {
    if (wanted.get(e.start) !== e.end) continue;
    const z = e.sizes;
    if (
      (z.Shared_Clean ?? 1) + (z.Shared_Dirty ?? 1) + (z.Shared_Hugetlb ?? 0) + (z.Swap ?? 1) === 0
    ) out.add(e.start);
  }
  return out;
}

/**
 * Whether every page entry `e` holds data for is present and mapped by this
 * mm only (pagemap bit 56: the kernel sets it only for a page no other mm
 * maps), so that none can be a frame of the parent's.
 */
function onlyExclusive(e: PagemapEntries, zero: ZeroFrames): boolean {
  const need = PM.PRESENT | PM.EXCLUSIVE;
  for (let i = 0; i < e.length; i++) {
    const hi = e.hi(i);
    if ((hi & DATA) === 0 || (hi & (PM.FILE | PM.GUARD)) !== 0) continue; // not stored
    if ((hi & need) !== need && !e.zeroPage(i, zero)) return false; // (the zero page: a hole)
  }
  return true;
}

/**
 * Compares a private mapping page by page: what the child must store and
 * drop. The zero page (a hole in every image, engine/proc/pagemap_scan.ts)
 * is neither stored nor dropped: a child's zero page over a page of the
 * parent's is dropped (the inherited page discarded reads zeros again), a
 * parent's zero page is no page to drop. `zero` is asked only about frames
 * that are not the same in both (a shared frame is the same content).
 */
function comparePages(
  child: PagemapReader,
  parent: PagemapReader,
  start: bigint,
  end: bigint,
  zero: ZeroFrames,
): { shared: number; runs: PageSpan[]; discard: PageSpan[] } {
  const c = child.read(start, end);
  inheritShortcut.pagemapPages += c.length;
  // No stored page of the child is mapped by another mm: none is shared, the
  // loop below would count 0, and the parent's entries need not be read (a
  // 512 MiB mapping: ~8 ms of pagemap read and the loop, in the freeze).
  if (inheritShortcut.exclusive && onlyExclusive(c, zero)) {
    inheritShortcut.taken++;
    return { shared: 0, runs: [], discard: [] };
  }
  const p = parent.read(start, end);
  inheritShortcut.pagemapPages += p.length;
  const runs: PageSpan[] = [];
  const discard: PageSpan[] = [];
  let shared = 0;
  for (let i = 0; i < c.length; i++) {
    const inChild = stored(c, i);
    const inParent = stored(p, i);
    if (inChild && inParent && samePage(c, p, i)) shared++;
    else if (inChild && !c.zeroPage(i, zero)) addPage(runs, start, i);
    else if (inParent && !p.zeroPage(i, zero)) addPage(discard, start, i);
  }
  return { shared, runs, discard };
}

/** Whether two processes share one mm (kcmp KCMP_VM). */
function sameMm(a: number, b: number): boolean {
  return rawSyscall(SYS.kcmp, a, b, 1, /* KCMP_VM */ 0, 0) === 0n;
}

function depthOf(pid: number, parentOf: Map<number, number>): number {
  let d = 0;
  for (let p = parentOf.get(pid); p !== undefined; p = parentOf.get(p)) d++;
  return d;
}

function vdsoLayout(image: ProcessImage): string {
  return image.mappings.filter((m) => m.kind === "vdso").map((m) => `${m.name}@${m.start}`).join();
}

/**
 * Decides, for every child of the frozen tree, which of its mappings it
 * inherits from its parent; marks them in the images (`inheritsMemory`,
 * `inherited`, `discard`), moves each inheriting child's bootstrap clear
 * of its parent's address space, and refuses shared anonymous memory that
 * inheritance cannot keep shared.
 * `procs` may come in any order.
 */
export function planInheritance(
  procs: readonly InheritanceInput[],
  refusals: Refusals,
  /** Children's smaps texts read in this freeze ({@link startSmapsReads}), by pid. */
  smapsAhead?: ReadonlyMap<number, string>,
): InheritancePlan {
  const byPid = new Map(procs.map((x) => [x.image.pid, x]));
  const parentOf = new Map<number, number>();
  for (const x of procs) for (const c of x.image.children) parentOf.set(c, x.image.pid);
  const order = [...procs].sort((a, b) =>
    depthOf(a.image.pid, parentOf) - depthOf(b.image.pid, parentOf)
  );
  const overrides = new Map<number, Map<number, PageSpan[]>>();
  const sharedOf = new Map<number, number>();
  let sharedBytes = 0;
  for (const child of order) {
    const ppid = parentOf.get(child.image.pid);
    const parent = ppid === undefined ? undefined : byPid.get(ppid);
    if (!parent) continue;
    // One address space for both (CLONE_VM): refused as task.shared-vm (dump/tree_state.ts).
    if (sameMm(parent.image.pid, child.image.pid)) continue;
    // In its parent's fd table (engine/task/shared_tables.ts): never exec'ed, even with nothing kept.
    const sharer = child.image.sharesParentFiles === true;
    if (vdsoLayout(parent.image) !== vdsoLayout(child.image)) {
      if (sharer) {
        refusals.use(
          "task.shared-files",
          `processes ${parent.image.pid} and ${child.image.pid}`,
          "they share one fd table and their vdso moved apart",
        );
      }
      continue;
    }
    const kept = new Map<number, { runs: PageSpan[]; discard: PageSpan[] }>();
    using cr = openPagemap(child.image.pid);
    using pr = openPagemap(parent.image.pid);
    using zero = new ZeroFrames();
    const candidates: number[] = [];
    child.image.mappings.forEach((m, k) => {
      if (m.kind !== "anon" && m.kind !== "anon-shared" && m.kind !== "file-private") return;
      const j = containing(parent.image.mappings, BigInt(m.start));
      if (j < 0) return;
      if (!inheritable(parent.image.mappings[j], parent.vmas[j], m, child.vmas[k])) return;
      if (m.kind === "anon-shared") {
        kept.set(k, { runs: [], discard: [] });
        return;
      }
      candidates.push(k);
    });
    const unshared = unsharedBySmaps(
      child.image.pid,
      candidates.map((k) => child.vmas[k]),
      child.image.mappings.length,
      smapsAhead?.get(child.image.pid),
    );
    for (const k of candidates) {
      const m = child.image.mappings[k];
      if (unshared.has(child.vmas[k].start)) {
        inheritShortcut.bySmaps++;
        continue;
      }
      const cmp = comparePages(cr, pr, BigInt(m.start), BigInt(m.end), zero);
      if (cmp.shared === 0) continue;
      sharedBytes += cmp.shared * PAGE;
      sharedOf.set(child.image.pid, (sharedOf.get(child.image.pid) ?? 0) + cmp.shared * PAGE);
      kept.set(k, cmp);
    }
    if (kept.size === 0 && !sharer) continue;
    child.image.inheritsMemory = true;
    const runs = new Map<number, PageSpan[]>();
    for (const [k, { runs: r, discard }] of kept) {
      const m = child.image.mappings[k];
      m.inherited = true;
      if (discard.length) {
        m.discard = discard.map((d) => ({ addr: `0x${d.addr.toString(16)}`, length: d.length }));
      }
      runs.set(k, r);
    }
    overrides.set(child.image.pid, runs);
    moveBootstrap(child, parent);
  }
  refuseSeparatedShmem(procs, refusals);
  return {
    runs: (pid, index) => overrides.get(pid)?.get(index),
    sharedBytes,
    sharedBytesOf: (pid) => sharedOf.get(pid) ?? 0,
  };
}

/**
 * Chooses the bootstrap of an inheriting child clear of both its own
 * mappings and everything its parent has when it forks (its mappings and
 * its bootstrap).
 */
function moveBootstrap(child: InheritanceInput, parent: InheritanceInput): void {
  const pb = BigInt(parent.image.bootstrap.start);
  const parentBoot: Vma = {
    start: pb,
    end: pb + BigInt(parent.image.bootstrap.size),
    perms: "rwxp",
    offset: 0n,
    dev: "00:00",
    inode: 0,
    path: "",
    vmFlags: [],
  };
  // Its program also unmaps what it inherited and does not keep: room for the parent's mappings
  // too. What its own size held beyond its mappings, fds and threads (the data its program
  // carries: queued socket and pipe bytes, pending signals; engine/dump/mod.ts) stays.
  const own = (mappings: number) =>
    bootstrapSizeFor(mappings, child.image.fds.length, child.image.threads.length);
  const data = Math.max(0, child.image.bootstrap.size - own(child.image.mappings.length));
  const size = own(child.image.mappings.length + parent.image.mappings.length) + data;
  const start = chooseBootstrap([...child.vmas, ...parent.vmas, parentBoot], size);
  child.image.bootstrap = { start: `0x${start.toString(16)}`, size };
}

/**
 * The process among `pids` of which every other is a child restored by
 * inheritance (it can make the object and keep it mapped when it forks
 * them), or undefined.
 */
function makerOf(pids: readonly number[], procs: readonly InheritanceInput[]): number | undefined {
  const image = (pid: number) => procs.find((x) => x.image.pid === pid)?.image;
  return pids.find((maker) =>
    pids.every((pid) =>
      pid === maker ||
      (image(maker)?.children.includes(pid) === true && image(pid)?.inheritsMemory === true)
    )
  );
}

/**
 * Marks every piece of one shared anonymous object that `maker` and its
 * inheriting children map themselves (`roots`; `all` with the inherited
 * ones) as a piece of one object (`Mapping.shmemObject`): the maker's
 * `forChildren`, the children's `inParent`. Its size: the object's
 * (markShmemObjects) where a process read it, else the largest offset and
 * length of any piece.
 */
function markTreeObject(
  roots: readonly { pid: number; m: Mapping; v: Vma }[],
  all: readonly { pid: number; m: Mapping; v: Vma }[],
  maker: number,
): void {
  let size = 0;
  for (const h of all) size = Math.max(size, h.m.shmemObject?.size ?? 0);
  // A piece grown past the object tells its size exactly.
  for (const h of all) {
    if (h.m.shmemSize !== undefined) size = Number(h.v.offset) + h.m.shmemSize;
  }
  if (size === 0) {
    for (const h of all) size = Math.max(size, Number(h.v.offset + h.v.end - h.v.start));
  }
  const id = roots[0].v.inode;
  for (const h of roots) {
    h.m.shmemObject = h.pid === maker
      ? { id, size, forChildren: true }
      : { id, size, inParent: true };
  }
}

/**
 * Refuses shared anonymous memory (one shmem inode) held by several
 * processes unless all but one inherit it from their parent, or all but
 * one are children of it that it forks with its memory (restored by
 * inheritance) and map it elsewhere themselves: then one object is made
 * in it and mapped by all (engine/memory/shmem_restore.ts).
 */
function refuseSeparatedShmem(procs: readonly InheritanceInput[], refusals: Refusals): void {
  const holders = new Map<string, { pid: number; m: Mapping; v: Vma }[]>();
  for (const x of procs) {
    x.image.mappings.forEach((m, k) => {
      if (m.kind !== "anon-shared" || m.excluded) return;
      const v = x.vmas[k];
      const key = `${v.dev}:${v.inode}`;
      const list = holders.get(key) ?? [];
      list.push({ pid: x.image.pid, m, v });
      holders.set(key, list);
    });
  }
  for (const list of holders.values()) {
    const roots = list.filter((h) => !h.m.inherited);
    const pids = [...new Set(roots.map((h) => h.pid))];
    const where = (h: { pid: number; m: Mapping }) =>
      `process ${h.pid} mapping ${h.m.start}-${h.m.end} (${h.m.name})`;
    if (pids.length > 1) {
      const maker = makerOf(pids, procs);
      if (maker !== undefined) {
        markTreeObject(roots, list, maker);
        continue;
      }
      for (const h of roots.filter((r) => r.pid !== pids[0])) {
        refusals.use(
          "memory.anon-shared-tree",
          where(h),
          `shared with process ${pids[0]} but not inherited from its parent at the same address`,
        );
      }
    }
    // Several pieces in one process (even over the same pages) are one object again at restore
    // (Mapping.shmemObject, engine/memory/shmem_restore.ts).
  }
}
