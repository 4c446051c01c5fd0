/**
 * inotify instances: every watch is saved with the path of its inode and
 * re-added at restore with the same watch descriptor number and mask.
 *
 * **Dump.** fdinfo lists each watch (`wd`, `ino`, `sdev`, `mask` and the
 * inode's file handle). The path is found by opening the file handle
 * (open_by_handle_at, O_PATH so the watched inode sees no open event)
 * against a mount of that filesystem from the process's mountinfo, then
 * reading the link of the fd; the path must name the same inode again
 * (lstat). The kernel wants a real open fd of that filesystem (not
 * O_PATH), and opening a directory is an open event: a mount point, or
 * else a directory above the process's cwd or open files, that neither the
 * process watches for open events (nor its parent) is used, so the dump
 * queues nothing in the process's own instances. A watch on a deleted
 * inode the tree holds open or mapped (a ghost file, engine/fds/ghost.ts)
 * is recorded with that ghost and re-added on the re-created file
 * (through its transfer fd's /proc/self/fd link); a watch whose inode has
 * no path otherwise (deleted and not held, or its filesystem cannot decode
 * file handles) is refused, and so are events queued in the instance
 * (FIONREAD on a copy of the fd): they cannot be put back.
 *
 * **Restore.** The kernel numbers the watches of an instance cyclically
 * (idr_alloc_cyclic from 1: each new watch gets the number after the last
 * one given out, free or not). The program creates the instance, then for
 * each watch in ascending order takes the numbers below its own and gives
 * them back (add and remove a watch on the same path, IN_MASK_CREATE so
 * each add really allocates), adds the real watch, and reads away the
 * IN_IGNORED events the removals queued. A new watch added after restore
 * gets the number after the highest restored one (the kernel's cursor
 * itself cannot be read).
 *
 * @module
 */

import { devMajor, devMinor, type ProcFd } from "../proc/fds.ts";
import { type InotifyWatch, inotifyWatches } from "../proc/fdinfo.ts";
import { type MountInfo, readMountInfo } from "../proc/mountinfo.ts";
import { readProcLink } from "../proc/io.ts";
import { dirname } from "../path.ts";
import { closeFd, openByHandle, openDirFd } from "../../ffi/fhandle.ts";
import { withTargetFd } from "../../ffi/pidfd.ts";
import { unreadBytes } from "../../ffi/tty.ts";
import { SYS } from "../../ffi/sysno.ts";
import { errnoName } from "../../ffi/errno.ts";
import type { FdInfo, ProcessImage } from "../model.ts";
import { type Refusals, supportOf } from "../support.ts";
import { RestoreError } from "../errors.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";
import { type FdSource, O_CLOEXEC, O_NONBLOCK, SETFL_MASK } from "./types.ts";
import type { PlannedGhosts } from "./ghost.ts";

/** One inotify watch as the image keeps it. */
export interface InotifyWatchImage {
  /** Watch descriptor. */
  wd: number;
  /** Event mask as fdinfo shows it (events, IN_ONESHOT, IN_EXCL_UNLINK). */
  mask: number;
  /** Path of the watched inode at dump time. */
  path: string;
  /** st_dev (user-space encoding) and inode number of the watched object. */
  dev: number;
  ino: number;
  /** The inode was deleted: the id of the ghost file the tree holds it by ("<dev>:<ino>"). */
  ghost?: string;
}

/** Most watch numbers the restore program may take and give back for one instance. */
export const MAX_WD_FILLERS = 2048;

const IN_ATTRIB = 0x4;
/** IN_CLOSE_NOWRITE | IN_OPEN: what opening a mount point to decode a handle causes. */
const OPEN_EVENTS = 0x10 | 0x20;
const IN_DONT_FOLLOW = 0x02000000;
const IN_MASK_CREATE = 0x10000000;
const F_SETFL = 4;
const EVENT_BYTES = 16;
const DELETED = " (deleted)";
const ESTALE = 116;

/** Numbers the restore program must take and give back to reach every wd of `wds`. */
export function wdFillers(wds: readonly number[]): number {
  let next = 1;
  let fillers = 0;
  for (const wd of [...wds].sort((a, b) => a - b)) {
    fillers += wd - next;
    next = wd + 1;
  }
  return fillers;
}

/** "<major>:<minor>:<ino>" of an inode, as {@link resolveWatch} compares them. */
function inodeKey(major: number, minor: number, ino: number): string {
  return `${major}:${minor}:${ino}`;
}

/** A directory opened to decode file handles of its filesystem. */
interface DecodeDir {
  path: string;
  /** Opening it would queue an event the process watches for. */
  unusable?: boolean;
}

function statKey(path: string): string | undefined {
  try {
    const st = Deno.statSync(path);
    return inodeKey(devMajor(st.dev), devMinor(st.dev), st.ino ?? 0);
  } catch {
    return undefined;
  }
}

/**
 * Directories of device `major:minor` to decode handles against: its
 * mount points (whole-filesystem ones first), then the directories above
 * `known` paths of the process. Opening a directory is an open event on it
 * and, below a mount point, on its parent: a directory is unusable when
 * either is in `watchedOpen`.
 */
function decodeDirs(
  major: number,
  minor: number,
  mounts: readonly MountInfo[],
  known: readonly string[],
  watchedOpen: ReadonlySet<string>,
): DecodeDir[] {
  const out: DecodeDir[] = [];
  const seen = new Set<string>();
  const onDevice = (key: string | undefined) => key?.startsWith(`${major}:${minor}:`) === true;
  const mountPoints = mounts.filter((m) => m.major === major && m.minor === minor)
    .sort((a, b) => (a.root === "/" ? 0 : 1) - (b.root === "/" ? 0 : 1))
    .map((m) => m.mountPoint);
  for (const path of mountPoints) {
    const key = statKey(path);
    if (!onDevice(key) || seen.has(path)) continue;
    seen.add(path);
    out.push({ path, unusable: watchedOpen.has(key!) });
  }
  for (const p of known) {
    for (let dir = dirname(p); !seen.has(dir); dir = dirname(dir)) {
      seen.add(dir);
      const key = statKey(dir);
      if (onDevice(key)) {
        const parent = statKey(dirname(dir));
        const bad = watchedOpen.has(key!) || (parent !== undefined && watchedOpen.has(parent));
        out.push({ path: dir, unusable: bad });
      }
      if (dir === "/") break;
    }
  }
  return out;
}

/**
 * Finds the path of a watched inode from its file handle, or says why not
 * (the handle is decoded against the first usable {@link decodeDirs}).
 */
function resolveWatch(
  w: InotifyWatch,
  dirs: (major: number, minor: number) => DecodeDir[],
): InotifyWatchImage | string {
  const what = `watch ${w.wd} (inode ${w.ino})`;
  const hex = w.fields["f_handle"];
  const type = parseInt(w.fields["fhandle-type"] ?? "", 16);
  if (!hex || Number.isNaN(type)) return `${what}: its filesystem gives no file handle`;
  const handle = new Uint8Array((hex.match(/../g) ?? []).map((b) => parseInt(b, 16)));
  // fdinfo prints the kernel's dev_t (major << 20 | minor).
  const major = w.sdev >>> 20;
  const minor = w.sdev & 0xfffff;
  let why = `no directory of device ${major}:${minor} is visible`;
  for (const d of dirs(major, minor)) {
    if (d.unusable) {
      why =
        `opening ${d.path} to decode its file handle would queue an event the process watches for`;
      continue;
    }
    const mfd = openDirFd(d.path);
    if (mfd < 0) continue;
    const fd = openByHandle(mfd, type, handle);
    closeFd(mfd);
    if (fd < 0) {
      why = -fd === ESTALE
        ? "its filesystem cannot open file handles, or the inode is gone"
        : `its file handle does not open (${errnoName(-fd)})`;
      continue;
    }
    let path: string;
    let gone: Deno.FileInfo | undefined;
    try {
      path = Deno.readLinkSync(`/proc/self/fd/${fd}`);
      // A deleted inode: kept with its ghost's id (the plan refuses it if the tree holds none).
      if (path.endsWith(DELETED)) gone = Deno.statSync(`/proc/self/fd/${fd}`);
    } finally {
      closeFd(fd);
    }
    if (gone) {
      const dev = gone.dev;
      path = path.slice(0, -DELETED.length);
      return { wd: w.wd, mask: w.mask, path, dev, ino: w.ino, ghost: `${dev}:${w.ino}` };
    }
    let st: Deno.FileInfo;
    try {
      st = Deno.lstatSync(path);
    } catch {
      why = `${path} cannot be found again`;
      continue;
    }
    if (st.ino === w.ino && devMajor(st.dev) === major && devMinor(st.dev) === minor) {
      return { wd: w.wd, mask: w.mask, path, dev: st.dev, ino: w.ino };
    }
    why = `${path} names another inode`;
  }
  return `${what}: ${why}`;
}

/**
 * Dump: records the watches of every inotify fd of `pid` (with their
 * paths) in `fdInfos`; reports unresolvable watches, queued events and
 * watch numbers too far apart to `refusals`. `procFds` are the fds as
 * /proc showed them (same order).
 */
export function collectInotify(
  pid: number,
  procFds: readonly ProcFd[],
  fdInfos: FdInfo[],
  refusals: Refusals,
): void {
  let dirCache: Map<string, DecodeDir[]> | undefined;
  const watchedOpen = new Set<string>();
  for (const [i, f] of fdInfos.entries()) {
    if (f.kind !== "inotify") continue;
    for (const w of inotifyWatches(procFds[i].info)) {
      if (w.mask & OPEN_EVENTS) watchedOpen.add(inodeKey(w.sdev >>> 20, w.sdev & 0xfffff, w.ino));
    }
  }
  for (const [i, f] of fdInfos.entries()) {
    if (f.kind !== "inotify" || f.sameAs !== undefined) continue;
    const where = `process ${pid} fd ${f.fd} (${f.target})`;
    dirCache ??= new Map();
    const cache = dirCache;
    const dirs = (major: number, minor: number) => {
      const key = `${major}:${minor}`;
      if (!cache.has(key)) {
        const known = [
          `${readProcLink(pid, "cwd")}/.`,
          ...fdInfos.flatMap((x) => x.file ? [x.file.path] : []),
        ];
        cache.set(key, decodeDirs(major, minor, readMountInfo(pid), known, watchedOpen));
      }
      return cache.get(key)!;
    };
    const watches: InotifyWatchImage[] = [];
    for (const w of inotifyWatches(procFds[i].info)) {
      const r = resolveWatch(w, dirs);
      if (typeof r === "string") refusals.use("fd.inotify-unresolved", where, r);
      else watches.push(r);
    }
    const queued = withTargetFd(pid, f.fd, (copy) => unreadBytes(copy));
    if (queued > 0) {
      refusals.use(
        "fd.inotify-queued",
        where,
        `${queued} bytes of events not yet read; ${supportOf("fd.inotify-queued").note}`,
      );
    }
    const fillers = wdFillers(watches.map((w) => w.wd));
    if (fillers > MAX_WD_FILLERS) {
      refusals.use("fd.inotify-wd-gap", where, `${fillers} unused watch numbers below its watches`);
    }
    f.inotify = watches.sort((a, b) => a.wd - b.wd);
  }
}

/** What is wrong with an image's watch list (untrusted input), or undefined. */
function watchesProblem(watches: unknown): string | undefined {
  if (!Array.isArray(watches)) return "inotify watches not recorded in the image";
  let last = 0;
  for (const w of watches as Partial<InotifyWatchImage>[]) {
    const wd = w?.wd;
    if (!Number.isSafeInteger(wd) || wd! <= last || wd! > 0x7fffffff) {
      return `inotify watch numbers out of order or out of range (${wd})`;
    }
    if (!Number.isSafeInteger(w.mask) || w.mask! < 0 || w.mask! > 0xffffffff) {
      return `inotify watch ${wd} has a bad mask`;
    }
    if (typeof w.path !== "string" || !w.path.startsWith("/") || w.path.includes("\0")) {
      return `inotify watch ${wd} has a bad path`;
    }
    last = wd!;
  }
  return undefined;
}

/**
 * Restore plan of an inotify fd; `ghosts` are the tree's ghost files (a
 * watch on a deleted inode is re-added through its ghost's transfer fd).
 */
export function planInotify(f: FdInfo, ghosts: PlannedGhosts = new Map()): FdSource | string {
  const problem = watchesProblem(f.inotify);
  if (problem || !f.inotify) return problem ?? "inotify watches not recorded in the image";
  const fillers = wdFillers(f.inotify.map((w) => w.wd));
  if (fillers > MAX_WD_FILLERS) {
    const row = supportOf("fd.inotify-wd-gap");
    return `${row.what}: ${row.note}`;
  }
  const watches = [];
  for (const w of f.inotify) {
    if (w.ghost === undefined) {
      watches.push({ wd: w.wd, mask: w.mask, path: w.path });
      continue;
    }
    const g = ghosts.get(w.ghost);
    if (!g) {
      const row = supportOf("fd.inotify-unresolved");
      return `${row.what}: watch ${w.wd} (inode ${w.ino}): ${w.path} was deleted and no process of the tree holds it open or mapped`;
    }
    watches.push({ wd: w.wd, mask: w.mask, path: w.path, via: g.transferFd });
  }
  return { kind: "inotify", flags: f.flags, watches };
}

/**
 * Emits the creation of an inotify instance with its watches into
 * `scratchSlot` (see the module doc for how the numbers are reached).
 */
export function emitInotify(
  p: ProgramBuilder,
  s: Extract<FdSource, { kind: "inotify" }>,
  scratchSlot: number,
  /** The number transfer fd `fd` has by now (the fd phase may have moved it). */
  current: (fd: number) => number = (fd) => fd,
): void {
  const fd = slot(scratchSlot);
  // Non-blocking while the IN_IGNORED events of the given-back numbers are read away.
  p.op(SYS.inotify_init1, [O_CLOEXEC | O_NONBLOCK], { store: scratchSlot });
  let next = 1;
  let fillers = 0;
  for (const w of [...s.watches].sort((a, b) => a.wd - b.wd)) {
    // A deleted inode's ghost is reached through the magic link, which must be followed.
    const path = p.cstring(w.via !== undefined ? `/proc/self/fd/${current(w.via)}` : w.path);
    const follow = w.via !== undefined ? 0 : IN_DONT_FOLLOW;
    for (; next < w.wd; next++, fillers++) {
      p.op(SYS.inotify_add_watch, [fd, path, IN_ATTRIB | IN_MASK_CREATE | follow], {
        comment: `inotify: take watch number ${next}`,
      });
      // A constant wd: fails (and so fails the restore) unless the add got exactly `next`.
      p.op(SYS.inotify_rm_watch, [fd, next], { comment: `inotify: give ${next} back` });
    }
    p.op(SYS.inotify_add_watch, [fd, path, w.mask | IN_MASK_CREATE | follow], {
      comment: `inotify: watch ${w.wd} on ${w.path}${
        w.via !== undefined ? " (deleted)" : ""
      } mask 0x${w.mask.toString(16)}`,
    });
    next = w.wd + 1;
  }
  if (fillers > 0) {
    const size = fillers * EVENT_BYTES + 4096;
    const buf = p.reserve(size);
    for (let i = 0; i < 2; i++) {
      p.op(SYS.read, [fd, buf, size], {
        allowFail: true,
        comment: `inotify: read away the IN_IGNORED events of ${fillers} given-back numbers`,
      });
    }
  }
  if ((s.flags & SETFL_MASK) !== O_NONBLOCK) {
    p.op(SYS.fcntl, [fd, F_SETFL, s.flags & SETFL_MASK], { comment: "inotify: status flags" });
  }
}

/**
 * Pre-flight: every path an inotify fd of the tree watches exists and is
 * still the inode that was watched.
 */
export function checkInotifyPaths(processes: readonly ProcessImage[]): void {
  for (const image of processes) {
    for (const f of image.fds) {
      if (f.kind !== "inotify" || f.excluded || f.sameAs !== undefined) continue;
      for (const w of f.inotify ?? []) {
        if (w.ghost !== undefined) continue; // (re-created with the ghost files)
        const what = `fd ${f.fd} of process ${image.pid} watched ${w.path} (inotify watch ${w.wd})`;
        let st: Deno.FileInfo;
        try {
          st = Deno.lstatSync(w.path);
        } catch {
          throw new RestoreError(`cannot restore: ${what}, which is missing`);
        }
        if (st.ino !== w.ino || st.dev !== w.dev) {
          throw new RestoreError(`cannot restore: ${what}, which was replaced since the dump`);
        }
      }
    }
  }
}
