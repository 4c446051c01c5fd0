/**
 * Dirty tracking that outlives cryo between the dumps of a pre-copy chain
 * (`dump --pre-dump`, `dump --parent`).
 *
 * A pre-dump leaves in each tracked process a copy of the userfaultfd
 * (WP_ASYNC) that write-protects its private anonymous memory, at a high
 * fd number (just below its RLIMIT_NOFILE soft limit, close-on-exec); the
 * image's manifest records which (`tracking`). The next dump of the chain
 * finds that fd again, reads which pages were written with PAGEMAP_SCAN,
 * and either arms it again (another pre-dump) or closes it inside the
 * target (the final dump): the kernel then unregisters every range and
 * lifts every protection, so no trace is left. While a chain is open, the
 * fd and the VmFlag "uw" are cryo's own: they are left out of every image
 * (never restored), and `cryo pre-dump --cancel <pid>` removes them from
 * a tree whose chain is abandoned.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { pidfdGetfd } from "../../ffi/uffd.ts";
import { withInjection } from "./injected.ts";
import { freezeTree, thawTree } from "./freeze.ts";
import { readMaps } from "../proc/maps.ts";
import { trackable } from "./precopy.ts";
import { releaseUffd } from "./uffd_release.ts";
import { registerOwnTrackingCheck } from "../memory/own_tracking.ts";

/** What /proc shows for a userfaultfd. */
const UFFD_TARGET = "anon_inode:[userfaultfd]";

/** Tracking fds known to be cryo's own in this run, by pid. */
const owned = new Map<number, Set<number>>();

/** Records that fd `fd` of process `pid` is cryo's tracking userfaultfd. */
export function setTrackingFd(pid: number, fd: number): void {
  if (fd < 0) return;
  const s = owned.get(pid) ?? new Set<number>();
  s.add(fd);
  owned.set(pid, s);
}

/**
 * Copies of cryo's tracking fds that processes forked since the tracking
 * was armed inherited, by pid ({@link markInheritedTracking}): left out of
 * the image like the tracking itself, but these processes are not tracked
 * (a fork does not inherit the registration: their writes are not seen).
 */
const inherited = new Map<number, Set<number>>();

/** Forgets the tracking fds of `pid` (closed, or the process is gone). */
export function clearTracking(pid: number): void {
  owned.delete(pid);
  inherited.delete(pid);
}

/** Whether fd `fd` of `pid` is cryo's tracking userfaultfd, or a copy of it (left out of the image). */
export function isTrackingFd(pid: number, fd: number): boolean {
  return (owned.get(pid)?.has(fd) || inherited.get(pid)?.has(fd)) ?? false;
}

/** kcmp's type comparing two fds' open file descriptions. */
const KCMP_FILE = 0;

/**
 * With the tree frozen: finds, among the fds `procs` listed, the
 * userfaultfds that are copies of a tracking fd of cryo's own (the same
 * open file description, kcmp KCMP_FILE): a child forked while a pre-copy
 * ran inherits the one its parent keeps. Each is recorded as cryo's
 * ({@link isTrackingFd}: left out of the image, closed with the tracking
 * by the chain's final dump, which closes every userfaultfd at a tracking
 * fd number), without making its process tracked ({@link hasOwnTracking},
 * {@link trackingFdsOf}). Returns how many were found.
 */
export function markInheritedTracking(
  procs: readonly { pid: number; fds: readonly { fd: number; target: string }[] }[],
): number {
  const known = [...owned].flatMap(([pid, fds]) => [...fds].map((fd) => ({ pid, fd })));
  if (known.length === 0) return 0;
  let n = 0;
  for (const { pid, fds } of procs) {
    for (const f of fds) {
      if (f.target !== UFFD_TARGET || isTrackingFd(pid, f.fd)) continue;
      const copy = known.some((k) =>
        rawSyscall(SYS.kcmp, k.pid, pid, KCMP_FILE, k.fd, f.fd) === 0n
      );
      if (!copy) continue;
      const s = inherited.get(pid) ?? new Set<number>();
      s.add(f.fd);
      inherited.set(pid, s);
      n++;
    }
  }
  return n;
}

/** Whether `pid` holds cryo's tracking (its "uw" VmFlags are cryo's, not the program's). */
export function hasOwnTracking(pid: number): boolean {
  return (owned.get(pid)?.size ?? 0) > 0 || lifting.has(pid);
}

/** Processes whose tracking fds are closed but still registered through cryo's copies. */
const lifting = new Set<number>();

/** The mappings a pre-copy registered in each process, while their release waits for the thaw. */
const liftingRanges = new Map<number, [number, number][]>();

/**
 * Marks the mappings `ranges` ([start, end), address order) of `pid` as
 * still registered with a userfaultfd of cryo's own until {@link endLifting}
 * (a pre-copy whose release waits for the thaw): their "uw" VmFlags are
 * cryo's meanwhile, and only theirs.
 */
export function beginLifting(pid: number, ranges: [number, number][]): void {
  const merged: [number, number][] = [];
  for (const [s, e] of ranges) {
    const last = merged[merged.length - 1];
    // Adjacent mappings registered apart may merge into one later.
    if (last && last[1] === s) last[1] = e;
    else merged.push([s, e]);
  }
  liftingRanges.set(pid, merged);
}

/** Ends {@link beginLifting}: cryo's userfaultfd of `pid` is closed. */
export function endLifting(pid: number): void {
  liftingRanges.delete(pid);
}

/**
 * Whether the "uw" VmFlag of mapping [start, end) of `pid` is cryo's own
 * tracking: any mapping of a process holding a chain's tracking, or one
 * overlapping what a pre-copy registered ({@link beginLifting}; a mapping
 * keeps its registration when it grows, splits or merges; one registered
 * by another userfaultfd overlaps only if it replaced one of cryo's since).
 */
export function isOwnTrackingFlag(pid: number, start: number, end: number): boolean {
  if (hasOwnTracking(pid)) return true;
  return liftingRanges.get(pid)?.some(([s, e]) => s < end && start < e) ?? false;
}
registerOwnTrackingCheck(isOwnTrackingFlag);

/** The fds of `pid` cryo tracks with, as recorded for the manifest. */
export function trackingFdsOf(pid: number): number[] {
  return [...(owned.get(pid) ?? [])];
}

/** Every tracking fd number known in this run (any process). */
export function allTrackingFds(): number[] {
  return [...new Set([...owned.values()].flatMap((s) => [...s]))];
}

/** The lowest fd number a kept tracking fd may take in `pid`: 16 below its soft RLIMIT_NOFILE. */
export function trackingFdBase(pid: number): number {
  let soft = 1024;
  try {
    const line = Deno.readTextFileSync(`/proc/${pid}/limits`).split("\n")
      .find((l) => l.startsWith("Max open files"));
    const v = Number(line?.split(/\s{2,}/)[1]);
    if (Number.isFinite(v) && v > 0) soft = Math.min(v, 1 << 20);
  } catch { /* gone: the caller fails next */ }
  return Math.max(3, soft - 16);
}

/** Whether fd `fd` of `pid` is a userfaultfd now. */
export function isUffd(pid: number, fd: number): boolean {
  try {
    return Deno.readLinkSync(`/proc/${pid}/fd/${fd}`) === UFFD_TARGET;
  } catch {
    return false;
  }
}

/** cryo's own copy of fd `fd` of `pid` (pidfd_getfd), or -1. */
export function adoptFd(pid: number, fd: number): number {
  const pidfd = rawSyscall(SYS.pidfd_open, pid, 0);
  if (pidfd < 0n) return -1;
  try {
    const copy = pidfdGetfd(Number(pidfd), fd);
    return copy < 0n ? -1 : Number(copy);
  } finally {
    rawSyscall(SYS.close, pidfd);
  }
}

/** Closes fd `fd` inside stopped process `pid` (an injected close). */
export function closeInTarget(pid: number, fd: number): void {
  withInjection(pid, (s) => s.call(pid, SYS.close, fd));
}

/**
 * With the tree frozen: closes in each process every fd of `fds` that is a
 * userfaultfd (cryo's tracking, also copies inherited by children forked
 * since), and forgets them. Returns how many were closed.
 */
export function closeTracking(pids: number[], fds: number[]): number {
  let n = 0;
  for (const pid of pids) {
    for (const fd of new Set([...fds, ...trackingFdsOf(pid)])) {
      if (!isUffd(pid, fd)) continue;
      closeInTarget(pid, fd);
      n++;
    }
    clearTracking(pid);
  }
  return n;
}

/**
 * Removes the tracking of an abandoned chain from the tree of `root`:
 * freezes it, closes the fds `fds` that are userfaultfds, and thaws it.
 * Returns how many fds were closed.
 */
export function cancelTracking(root: number, fds: number[]): number {
  const tree = freezeTree(root);
  try {
    return closeTracking(tree.processes.map((p) => p.pid), fds);
  } finally {
    thawTree(tree);
  }
}

/**
 * The mappings of `pid` a tracking may have registered (the trackable ones,
 * engine/dump/precopy.ts), [start, end) in address order; none if it is gone.
 */
function trackableRanges(pid: number): [number, number][] {
  try {
    return readMaps(pid).filter((m) => trackable({ ...m, vmFlags: [] }))
      .map((m) => [Number(m.start), Number(m.end)]);
  } catch {
    return [];
  }
}

/**
 * The tracking of a final dump, taken out of the frozen tree without
 * paying for its removal while frozen: what {@link detachTracking} left to
 * do once the tree runs again, or is dead.
 */
export class TrackingRelease {
  readonly #copies: { fd: number; pid: number }[];
  readonly #pids: number[];

  constructor(copies: { fd: number; pid: number }[], pids: number[]) {
    this.#copies = copies;
    this.#pids = pids;
  }

  /**
   * Releases cryo's copies of the tracking userfaultfds, now with the tree
   * running: unregisters the trackable mappings and lifts their
   * protections a chunk at a time, then closes the copy, the last
   * reference (engine/dump/uffd_release.ts: the target's mmap lock is never
   * held for the whole walk; a dead process's memory is not walked).
   * Idempotent.
   */
  release(): void {
    for (const { fd, pid } of this.#copies.splice(0)) releaseUffd(fd, trackableRanges(pid));
    for (const pid of this.#pids.splice(0)) lifting.delete(pid);
  }
}

/**
 * With the tree frozen, for a final dump: takes cryo's tracking (every fd
 * of `fds` or known for the process that is a userfaultfd) out of each
 * process of `pids`. With `kill` (the tree is killed once dumped), the fds
 * are only marked as cryo's: left out of the image with their "uw" flags,
 * and closed by the tree's death (a failed dump closes them,
 * engine/dump/chain_dump.ts). Otherwise cryo takes a copy of each
 * (pidfd_getfd) and closes it inside the target, which is cheap while the
 * copy holds the userfaultfd open: the protections stay until
 * {@link TrackingRelease.release} (after the thaw), and the image leaves out
 * their "uw" flags meanwhile. Without a copy the fd is closed in the target
 * as before (the walk happens there, frozen).
 */
export function detachTracking(pids: number[], fds: number[], kill: boolean): TrackingRelease {
  const copies: { fd: number; pid: number }[] = [], lifted: number[] = [];
  for (const pid of pids) {
    for (const fd of new Set([...fds, ...trackingFdsOf(pid)])) {
      if (!isUffd(pid, fd)) continue;
      if (kill) {
        setTrackingFd(pid, fd);
        continue;
      }
      const copy = adoptFd(pid, fd);
      if (copy >= 0) {
        copies.push({ fd: copy, pid });
        if (!lifting.has(pid)) lifted.push(pid);
        lifting.add(pid);
      }
      closeInTarget(pid, fd);
    }
    if (!kill) clearTracking(pid);
  }
  return new TrackingRelease(copies, lifted);
}
