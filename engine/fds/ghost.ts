/**
 * Ghost files: files with no name to reopen at restore — deleted while
 * open or mapped, made with O_TMPFILE, or memfds (also /dev/shm files that
 * were removed). Their content is saved in the image directory (data
 * extents only: holes stay holes, the size is exact) with mode, owner,
 * access and modification times, memfd seals and the inode's write-life
 * hint (F_SET_RW_HINT).
 *
 * A file whose name was removed but which has another (a hard link: its
 * link count is not 0) is not one: its content is not copied (the restored
 * process must write to the file the other name shows), it is found again
 * by its kernel file handle ("linked"). A file system without handles
 * refuses it (`fd.deleted-linked`).
 *
 * At restore the engine itself re-creates each one, unlinked — a memfd
 * with the same name, or an O_TMPFILE file in the original directory — or
 * opens a linked one by its handle (it must still exist), and
 * hands it to the tree through the launcher at a transfer fd number
 * (engine/restore/provided.ts). Every fd reopens it through
 * `/proc/self/fd/<transfer>` with its own flags and offset, and every
 * mapping maps it from there, so writes through one are seen by the others
 * as before.
 *
 * @module
 */

import { isMqueueFd } from "./mqueue.ts";
import { noteFileAttributes } from "./inode_flags.ts";
import { type PathFacts, pathFacts } from "../../ffi/statx.ts";
import { basename, dirname } from "../path.ts";
import { crc32 } from "../image/crc32.ts";
import { rawSyscall, syscallNum } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import {
  addSeals,
  chownChmodFd,
  createUnlinked,
  dataExtents,
  getSeals,
  lchown,
  memfdCreate,
  memfdCreateHuge,
  openSymlinkItself,
  openTmpfile,
  reserveRange,
  symlinkContentThrough,
  truncateFd,
  unwrittenExtents,
  withSharedMapping,
} from "../../ffi/files.ts";
import type { FdInfo, GhostFile, Mapping, ProcessImage } from "../model.ts";
import { formatChecksum } from "../image/checksum.ts";
import { RestoreError } from "../errors.ts";
import { errnoName } from "../../ffi/errno.ts";
import { closeFd, nameToHandle, openByHandle, openDirFd } from "../../ffi/fhandle.ts";
import { readMountInfo } from "../proc/mountinfo.ts";
import type { Refusals, SupportId } from "../support.ts";
import { isSecretMem } from "../memory/secretmem.ts";
import { fsMagic } from "../../ffi/mounts.ts";
import { fileTimes, pathTimes, setFileTimes } from "../../ffi/statx.ts";

const DELETED = " (deleted)";
const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_TRUNC = 0o1000;
const O_TMPFILE = 0o20200000;
const O_NOFOLLOW = 0o400000;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const CHUNK = 16 << 20;

const F_SEAL_FUTURE_WRITE = 0x10;
/** statfs magic of hugetlbfs (MFD_HUGETLB memfds, files on a hugetlbfs mount). */
const HUGETLBFS_MAGIC = 0x958458f6;
/** statfs magic of tmpfs (and memfds). */
const TMPFS_MAGIC = 0x01021994;
const F_GET_RW_HINT = 1035;
const F_SET_RW_HINT = 1036;

/** The write-life hint of the inode open at `fd`, when one is set. */
function writeHintOf(fd: number): { writeHint?: number } {
  const v = new BigUint64Array(1);
  return rawSyscall(SYS.fcntl, fd, F_GET_RW_HINT, v) === 0n && v[0]
    ? { writeHint: Number(v[0]) }
    : {};
}

/** The ghost-file name of a fd target or mapping path, or null when it has a name to reopen. */
function ghostKind(path: string): GhostFile["kind"] | null {
  if (path.startsWith("/memfd:")) return "memfd";
  return path.endsWith(DELETED) ? "deleted" : null;
}

function ghostName(path: string, kind: GhostFile["kind"]): string {
  const p = path.endsWith(DELETED) ? path.slice(0, -DELETED.length) : path;
  return kind === "memfd" ? p.slice("/memfd:".length) : p;
}

function preadFully(fd: number, buf: Uint8Array, offset: number): void {
  for (let done = 0; done < buf.length;) {
    const n = Number(
      rawSyscall(SYS.pread64, fd, buf.subarray(done), buf.length - done, offset + done),
    );
    if (n <= 0) throw new Error(`short read of a ghost file at ${offset + done}`);
    done += n;
  }
}

const PAGE = 4096;

/** Whether every byte of `b` (a multiple of 4 bytes long, 4-aligned) is 0. */
function allZero(b: Uint8Array): boolean {
  const words = new Uint32Array(b.buffer, b.byteOffset, b.length >> 2);
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
  return true;
}

/**
 * The data extents of a hugetlbfs file: its huge pages of `pageSize` bytes
 * that hold a non-zero byte, adjacent ones merged (SEEK_DATA there shows
 * the whole file as data; a page never written reads as zeros, and is left
 * a hole at restore).
 */
function hugeDataExtents(fd: number, size: number, pageSize: number): [number, number][] {
  const out: [number, number][] = [];
  const buf = new Uint8Array(pageSize);
  for (let at = 0; at < size; at += pageSize) {
    const len = Math.min(pageSize, size - at);
    preadFully(fd, buf.subarray(0, len), at);
    if (allZero(buf.subarray(0, len))) continue;
    const last = out[out.length - 1];
    if (last && last[0] + last[1] === at) last[1] += len;
    else out.push([at, len]);
  }
  return out;
}

/**
 * Why a ghost file on a file system without FIEMAP (tmpfs, memfds) cannot be
 * copied faithfully, or null: it holds more blocks than the pages of its
 * data extents, i.e. pages fallocate reserved and nothing wrote (SEEK_DATA
 * skips them, and mincore does not show them: they are not up to date), in
 * its size or past it (FALLOC_FL_KEEP_SIZE).
 */
function reservedPages(st: Deno.FileInfo, extents: readonly [number, number][]): string | null {
  const allocated = (st.blocks ?? 0) * 512;
  let pages = 0;
  for (const [offset, length] of extents) {
    pages += Math.ceil((offset + length) / PAGE) - Math.floor(offset / PAGE);
  }
  return allocated > pages * PAGE
    ? `${allocated - pages * PAGE} bytes allocated beyond its ${pages * PAGE} bytes of data pages`
    : null;
}

/**
 * Dump: finds the deleted files and memfds used by fds (regular files
 * only) and file mappings of the tree, writes each one's content into
 * `dir` (the image directory being written) and marks the fds and
 * mappings with its id. What cannot be saved is reported to `refusals`.
 */
export async function collectGhosts(
  images: readonly ProcessImage[],
  dir: string,
  refusals: Refusals,
): Promise<GhostFile[]> {
  const ghosts = new Map<string, GhostFile>();
  const save = async (
    source: string,
    path: string,
    where: string,
    notRegular: SupportId,
  ): Promise<string | null> => {
    const kind = ghostKind(path)!;
    const st = Deno.statSync(source);
    if (((st.mode ?? 0) & S_IFMT) !== S_IFREG) {
      refusals.use(notRegular, where);
      return null;
    }
    const id = `${st.dev}:${st.ino}`;
    if (ghosts.has(id)) return id;
    if (kind === "deleted" && (st.nlink ?? 0) > 0) {
      // Its name was removed, not the file: another name links it.
      const linked = linkedGhost(id, source, ghostName(path, kind), st);
      if (typeof linked === "string") {
        refusals.use("fd.deleted-linked", `${where}: ${linked}`);
        return null;
      }
      ghosts.set(id, linked);
      return id;
    }
    const fd = syscallNum(SYS.open, new TextEncoder().encode(source + "\0"), O_RDONLY | O_CLOEXEC);
    try {
      // Before the content is read: the read may move the access time.
      const times = fileTimes(fd);
      // hugetlbfs: its stat's block size is its huge page size; its pages that hold data.
      // (A MFD_HUGETLB memfd, or a deleted file of a hugetlbfs mount.)
      const huge = fsMagic(source) === HUGETLBFS_MAGIC ? (st.blksize ?? 0) : 0;
      const extents = huge ? hugeDataExtents(fd, st.size, huge) : dataExtents(fd, st.size);
      const unwritten = huge ? [] : unwrittenExtents(fd);
      const reserved = unwritten.length === 0 && fsMagic(source) === TMPFS_MAGIC
        ? reservedPages(st, extents)
        : null;
      if (reserved) {
        refusals.use("fd.ghost-reserved", `${where}: ${reserved}`);
        return null;
      }
      const file = `ghost-${st.dev}-${st.ino}.data`;
      using out = await Deno.open(`${dir}/${file}`, { write: true, createNew: true, mode: 0o600 });
      let crc = 0;
      for (const [offset, length] of extents) {
        for (let done = 0; done < length; done += CHUNK) {
          const buf = new Uint8Array(Math.min(CHUNK, length - done));
          preadFully(fd, buf, offset + done);
          crc = crc32(buf, crc);
          for (let w = 0; w < buf.length;) w += await out.write(buf.subarray(w));
        }
      }
      ghosts.set(id, {
        id,
        kind,
        name: ghostName(path, kind),
        size: st.size,
        mode: (st.mode ?? 0) & 0o7777,
        uid: st.uid ?? 0,
        gid: st.gid ?? 0,
        seals: kind === "memfd" ? getSeals(fd) : 0,
        ...writeHintOf(fd),
        ...(times ? { times } : {}),
        ...(huge ? { hugePageSize: huge } : {}),
        extents,
        ...(unwritten.length ? { unwritten } : {}),
        file,
        checksum: formatChecksum(crc),
      });
      return id;
    } finally {
      rawSyscall(SYS.close, fd);
    }
  };
  // The mount namespaces' inodes, read for a process with a file fd to look at only.
  let ownMntNs: number | undefined;
  // One statx per path however many fds name it (a process's stdout and stderr).
  const named = new Map<string, PathFacts | undefined>();
  for (const p of images) {
    let sameView: boolean | undefined;
    for (const f of p.fds) {
      if (
        !f.excluded && f.kind === "file" && f.file && !ghostKind(f.target) &&
        !f.target.startsWith("/proc/") &&
        (sameView ??= p.root === "/" &&
          statIno(`/proc/${p.pid}/ns/mnt`) === (ownMntNs ??= statIno("/proc/self/ns/mnt")))
      ) {
        shadowedFile(p.pid, f, ghosts, refusals, named);
        continue;
      }
      if (!f.excluded && f.kind === "directory" && f.target.endsWith(DELETED)) {
        const id = deletedDir(`/proc/${p.pid}/fd/${f.fd}`, f.target, ghosts);
        if (id) f.ghost = id; // else refused by the fd plan (`fd.deleted`)
        continue;
      }
      if (!f.excluded && f.kind === "path" && f.target.endsWith(DELETED)) {
        const id = deletedSymlink(`/proc/${p.pid}/fd/${f.fd}`, f.target, ghosts);
        if (id) f.ghost = id; // else refused by the fd plan
        continue;
      }
      if (f.excluded || (f.kind !== "memfd" && f.kind !== "file") || !ghostKind(f.target)) continue;
      // A queue unlinked while open shows as a deleted file: refused by name (fds/mqueue.ts).
      if (isMqueueFd(p.pid, f.fd)) continue;
      const where = `process ${p.pid} fd ${f.fd} (${f.target})`;
      if (isSecretMem(f.target)) {
        refusals.use("memory.secretmem", where);
        refusedGhostFds.add(f);
        continue;
      }
      const id = await save(`/proc/${p.pid}/fd/${f.fd}`, f.target, where, "fd.deleted");
      if (id) {
        f.ghost = id;
        refusals.use("fd.ghost", `process ${p.pid} fd ${f.fd}`);
      } else refusedGhostFds.add(f);
    }
    // Filtered first: no loop of 10,000 rounds for V8 to compile (engine/find_from.ts).
    for (const m of p.mappings.filter(maybeGhostMapping)) {
      const range = `${BigInt(m.start).toString(16)}-${BigInt(m.end).toString(16)}`;
      const where = `process ${p.pid} mapping ${m.start}-${m.end} (${m.name})`;
      const id = await save(
        `/proc/${p.pid}/map_files/${range}`,
        m.name,
        where,
        "memory.deleted-special",
      );
      if (id) {
        m.ghost = id;
        refusals.use("memory.ghost", where);
        if (
          (ghosts.get(id)!.seals & F_SEAL_FUTURE_WRITE) && m.perms[1] === "w" && m.perms[3] === "s"
        ) {
          refusals.use("fd.memfd-future-write-mapped", where);
        }
      }
    }
  }
  return [...ghosts.values()];
}

/**
 * Records the removed directory an fd holds (`source`: its /proc link,
 * `target` what the link reads) as a ghost of kind "dir": its path, mode,
 * owner and times; nothing to copy (a removed directory is empty and takes
 * no new entry). Returns its id, or undefined when it cannot be stat'ed.
 */
function deletedDir(
  source: string,
  target: string,
  ghosts: Map<string, GhostFile>,
): string | undefined {
  return contentlessGhost(source, target, ghosts, "dir", (st) => {
    if (!st.isDirectory) return undefined;
    const times = pathTimes(source);
    return { mode: (st.mode ?? 0o700) & 0o7777, ...(times ? { times } : {}) };
  });
}

/**
 * Records the removed symlink an O_PATH fd holds (`source`: its /proc
 * link) as a ghost of kind "symlink": its path, content and owner. Returns
 * its id, or undefined when it is no symlink or cannot be read.
 */
function deletedSymlink(
  source: string,
  target: string,
  ghosts: Map<string, GhostFile>,
): string | undefined {
  return contentlessGhost(source, target, ghosts, "symlink", (st) => {
    if (!st.isSymlink) return undefined;
    const content = symlinkContentThrough(source);
    return typeof content === "string" ? { mode: 0o777, linkTarget: content } : undefined;
  });
}

/**
 * Records a ghost with nothing to copy (a removed directory or symlink)
 * for `source`, with its owner and the fields `fields` gives from its stat
 * (undefined: not of this kind, nothing recorded). Returns its id (one per
 * inode), or undefined.
 */
function contentlessGhost(
  source: string,
  target: string,
  ghosts: Map<string, GhostFile>,
  kind: "dir" | "symlink",
  fields: (st: Deno.FileInfo) => Pick<GhostFile, "mode" | "times" | "linkTarget"> | undefined,
): string | undefined {
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(source);
  } catch {
    return undefined;
  }
  const id = `${st.dev}:${st.ino}`;
  if (ghosts.has(id)) return ghosts.get(id)!.kind === kind ? id : undefined;
  const own = fields(st);
  if (!own) return undefined;
  ghosts.set(id, {
    id,
    kind,
    name: ghostName(target, "deleted"),
    size: 0,
    uid: st.uid ?? 0,
    gid: st.gid ?? 0,
    seals: 0,
    ...own,
    extents: [],
    file: "",
    checksum: "",
  });
  return id;
}

/** The inode number of `path`, or -1. */
function statIno(path: string): number {
  return pathFacts(path)?.ino ?? -1;
}

/**
 * A regular file fd whose path no longer leads to its file though the file
 * keeps a name (nlink > 0): a mount was made over its directory since the
 * open (the path is missing, or names the mount's file). Reopening by path
 * would fail or take the other file, so it is recorded like a file whose
 * name was removed while a hard link keeps it: by its file handle, marked
 * as a ghost of kind "linked" (`f.ghost`).
 */
function shadowedFile(
  pid: number,
  f: FdInfo,
  ghosts: Map<string, GhostFile>,
  refusals: Refusals,
  /** The paths stat'ed so far (undefined: missing), shared by the dump's fds. */
  named: Map<string, PathFacts | undefined>,
): void {
  if (!named.has(f.target)) named.set(f.target, pathFacts(f.target));
  // Missing: shadowed (or removed and re-made, which stat of the fd tells).
  const at = named.get(f.target);
  if (at && at.dev === f.file!.dev && at.ino === f.file!.ino) {
    // The path's inode is the fd's: its attributes are the open file's (fds/inode_flags.ts).
    noteFileAttributes(f, at.attributes);
    return;
  }
  // A POSIX message queue's fd shows "/name", a path of its own file system (fds/mqueue.ts).
  if (isMqueueFd(pid, f.fd)) return;
  const source = `/proc/${pid}/fd/${f.fd}`;
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(source);
  } catch {
    return;
  }
  if (!st.isFile || (st.nlink ?? 0) === 0) return;
  const id = `${st.dev}:${st.ino}`;
  if (!ghosts.has(id)) {
    const linked = linkedGhost(id, source, f.target, st);
    if (typeof linked === "string") {
      refusals.use("fd.path-shadowed", `process ${pid} fd ${f.fd} (${f.target}): ${linked}`);
      return;
    }
    ghosts.set(id, linked);
  }
  f.ghost = id;
}

/**
 * The record of a file reached through `source` whose name `name` was
 * removed while another name links it: its file handle and the mount
 * point to decode it on; or why it cannot be found again.
 */
function linkedGhost(
  id: string,
  source: string,
  name: string,
  st: Deno.FileInfo,
): GhostFile | string {
  const h = nameToHandle(source);
  if (typeof h === "number") return `no file handle (${errnoName(-h)})`;
  const mount = readMountInfo(Deno.pid).find((m) => m.mountId === h.mountId)?.mountPoint;
  if (!mount) return `its mount ${h.mountId} is not in cryo's mount namespace`;
  const hex = [...h.bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return {
    id,
    kind: "linked",
    name,
    handle: { type: h.type, hex, mount },
    size: st.size,
    mode: (st.mode ?? 0) & 0o7777,
    uid: st.uid ?? 0,
    gid: st.gid ?? 0,
    seals: 0,
    extents: [],
    file: "",
    checksum: "",
  };
}

/**
 * Restore: the fd (O_PATH, close-on-exec) of linked ghost `g`, opened by
 * its file handle; a RestoreError when it is gone or is another file.
 */
function openLinked(g: GhostFile): number {
  const h = g.handle!;
  const mountFd = openDirFd(h.mount);
  if (mountFd < 0) {
    throw new RestoreError(
      `cannot restore: ${g.name} (deleted, linked elsewhere): its mount ${h.mount} cannot be opened (${
        errnoName(-mountFd)
      })`,
    );
  }
  let fd: number;
  try {
    const bytes = new Uint8Array(h.hex.match(/../g)!.map((x) => parseInt(x, 16)));
    fd = openByHandle(mountFd, h.type, bytes);
  } finally {
    closeFd(mountFd);
  }
  if (fd < 0) {
    throw new RestoreError(
      `cannot restore: ${g.name} (deleted, linked elsewhere) is gone since the dump (${
        errnoName(-fd)
      })`,
    );
  }
  const st = Deno.statSync(`/proc/self/fd/${fd}`);
  if (`${st.dev}:${st.ino}` !== g.id || !st.isFile) {
    closeFd(fd);
    throw new RestoreError(
      `cannot restore: ${g.name} (deleted, linked elsewhere): its file handle opens another file`,
    );
  }
  return fd;
}

/** Whether mapping `m` is saved if its file is a ghost (its file deleted, of a kind saved). */
function maybeGhostMapping(m: Mapping): boolean {
  return !m.excluded && (m.kind === "file-private" || m.kind === "file-shared") &&
    ghostKind(m.name) !== null && !isSecretMem(m.name); // (refused: engine/memory/flags.ts)
}

/**
 * The fds of the dump being made whose file the ghost collection refused
 * (and named): the fd plan of the dump's check leaves them out instead of
 * refusing them a second time, as deleted files of no kind it knows.
 */
const refusedGhostFds = new WeakSet<FdInfo>();

/** Whether the ghost collection refused (and named) the file of fd `f`. */
export function ghostRefused(f: FdInfo): boolean {
  return refusedGhostFds.has(f);
}

/**
 * Ghost files with the transfer fd number each is handed to the tree at.
 * `own`: for a memfd, the key ({@link ghostDescriptionKey}) of the one
 * read-write description of the tree that takes the memfd's own
 * description (the transfer fd's, from memfd_create) instead of a reopen.
 */
export type PlannedGhosts = Map<string, { ghost: GhostFile; transferFd: number; own?: string }>;

const O_ACCMODE = 3;
const O_RDWR = 2;

/** The key of the open file description of fd `f` of process `pid` (one per description in the tree). */
export function ghostDescriptionKey(pid: number, f: FdInfo): string {
  return f.description ?? `${pid}:${f.sameAs ?? f.fd}`;
}

/**
 * Assigns transfer fd numbers from `firstTransferFd` on, and gives each
 * memfd's own description to the first read-write description of it in
 * `images` (process order, then fd order). The description memfd_create
 * returns is not counted as a writer of the inode (execveat of it works
 * while it is open read-write); a read-write reopen through /proc is
 * counted, and exec of the memfd then fails with ETXTBSY. The tree's
 * other read-write descriptions of a memfd were reopens, as they are
 * again.
 */
export function planGhosts(
  ghosts: readonly GhostFile[],
  firstTransferFd: number,
  images: readonly ProcessImage[] = [],
): PlannedGhosts {
  const own = new Map<string, string>();
  for (const p of images) {
    for (const f of p.fds) {
      if (f.ghost === undefined || f.excluded || own.has(f.ghost)) continue;
      if ((f.flags & O_ACCMODE) === O_RDWR) own.set(f.ghost, ghostDescriptionKey(p.pid, f));
    }
  }
  return new Map(ghosts.map((g, i) => {
    const key = g.kind === "memfd" ? own.get(g.id) : undefined;
    return [g.id, { ghost: g, transferFd: firstTransferFd + i, ...(key ? { own: key } : {}) }];
  }));
}

/**
 * Flags an fd of a ghost file is reopened with: its access mode and status
 * flags, without creation flags, O_TMPFILE (which includes O_DIRECTORY) or
 * O_NOFOLLOW: the reopen goes through the magic link /proc/self/fd/<n>,
 * which O_NOFOLLOW refuses (ELOOP). A file made by mkstemp (Python's
 * tempfile, gunicorn's worker heartbeats) has it; it only governs the
 * lookup at open, so the open file behaves the same without it (only
 * F_GETFL and fdinfo no longer show it).
 */
export function ghostOpenFlags(f: FdInfo): number {
  // O_TMPFILE is O_DIRECTORY and a bit of its own: a removed directory's fd keeps O_DIRECTORY.
  const tmpfile = (f.flags & O_TMPFILE) === O_TMPFILE ? O_TMPFILE : 0;
  return f.flags & ~(O_CREAT | O_EXCL | O_TRUNC | tmpfile | O_NOFOLLOW);
}

/** The path a restored process reopens ghost `id` by, and the transfer fd it names. */
export function ghostPath(
  planned: PlannedGhosts,
  id: string,
): { path: string; transferFd: number } {
  const g = planned.get(id);
  if (!g) throw new RestoreError(`cannot restore: the image lists no ghost file ${id}`);
  return { path: `/proc/self/fd/${g.transferFd}`, transferFd: g.transferFd };
}

/**
 * Makes the directories of `dir` that do not exist (mode 0700, as root's
 * private scratch), outermost first; returns those it made, in that order.
 * Nothing when `dir` exists; a path component that is not a directory is
 * left for the create to fail on.
 */
export function makeMissingDirs(dir: string): string[] {
  const missing: string[] = [];
  for (let d = dir; d !== "/" && d !== "" && !pathExistsLstat(d); d = dirname(d)) {
    missing.unshift(d);
  }
  const made: string[] = [];
  for (const d of missing) {
    try {
      Deno.mkdirSync(d, { mode: 0o700 });
      made.push(d);
    } catch {
      break;
    }
  }
  return made;
}

function pathExistsLstat(p: string): boolean {
  try {
    Deno.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * Restore (in cryo): re-creates ghost `g` from the image directory `dir`
 * and returns its fd (close-on-exec). The content's checksum is verified
 * on the way; a missing original directory or a damaged file is a
 * RestoreError.
 */
export async function createGhost(
  g: GhostFile,
  dir: string,
  /** Deleted cwds made for the restore: path -> "<dev>:<ino>" at dump (engine/restore/deleted_cwd.ts). */
  madeCwds: ReadonlyMap<string, string> = new Map(),
): Promise<number> {
  if (g.kind === "linked") return openLinked(g);
  if (g.kind === "dir") return createDeletedDir(g, madeCwds.get(g.name) === g.id);
  if (g.kind === "symlink") return createDeletedSymlink(g);
  let fd: number;
  if (g.kind === "memfd" && g.hugePageSize) {
    fd = memfdCreateHuge(g.name, g.hugePageSize);
    if (fd < 0) {
      throw new RestoreError(
        `cannot restore: memfd ${g.name}: memfd_create with MFD_HUGETLB of ${g.hugePageSize} bytes failed (${
          errnoName(-fd)
        })`,
      );
    }
  } else if (g.kind === "memfd") fd = memfdCreate(g.name);
  else {
    // Its directory removed too (a temporary directory deleted with the file open): made
    // again for the moment of the create, then removed, so the /proc link reads the same.
    const made = makeMissingDirs(dirname(g.name));
    try {
      // A named file gets its name back while its path is free (an O_TMPFILE one never had one).
      const named = !/^#\d+$/.test(basename(g.name));
      fd = (named ? createUnlinked(g.name, g.mode) : null) ?? openTmpfile(dirname(g.name), g.mode);
      // A deleted file of a hugetlbfs mount: made again on a mount of the same huge page size.
      const blksize = g.hugePageSize ? Deno.statSync(`/proc/self/fd/${fd}`).blksize : undefined;
      if (g.hugePageSize && blksize !== g.hugePageSize) {
        rawSyscall(SYS.close, fd);
        throw new Error(
          `its ${g.hugePageSize}-byte huge pages: the file made there has pages of ${blksize} bytes (not a hugetlbfs mount of that size now)`,
        );
      }
    } catch (e) {
      throw new RestoreError(
        `cannot restore: deleted file ${g.name} cannot be re-created in ${dirname(g.name)}: ${
          (e as Error).message
        }`,
      );
    } finally {
      for (const d of made.reverse()) {
        try {
          Deno.removeSync(d); // only while empty
        } catch { /* something else was put there meanwhile: left */ }
      }
    }
  }
  try {
    // Blocks reserved and never written come back reserved (first: the data writes convert theirs).
    for (const [offset, length] of g.unwritten ?? []) {
      const r = reserveRange(fd, offset, length);
      if (r < 0) {
        throw new RestoreError(
          `cannot restore: deleted file ${g.name}: cannot reserve its ${length} fallocated bytes at ${offset} (${
            errnoName(-r)
          })`,
        );
      }
    }
    using src = await Deno.open(`${dir}/${g.file}`, { read: true }).catch((e) => {
      throw new RestoreError(`cannot restore: ${g.file}: ${(e as Error).message}`);
    });
    let crc = 0;
    if (g.hugePageSize) {
      // hugetlbfs takes no write(): sized first, each extent filled through a mapping of it.
      truncateFd(fd, g.size);
      for (const [offset, length] of g.extents) {
        const r = await withSharedMapping(fd, offset, length, async (view) => {
          for (let r = 0; r < length;) {
            const n = await src.read(view.subarray(r));
            if (n === null) throw new RestoreError(`cannot restore: ${g.file} is truncated`);
            r += n;
          }
          crc = crc32(view, crc);
        });
        if (r < 0) {
          throw new RestoreError(
            `cannot restore: memfd ${g.name}: cannot map its huge pages (${errnoName(-r)})`,
          );
        }
      }
    }
    for (const [offset, length] of g.hugePageSize ? [] : g.extents) {
      for (let done = 0; done < length; done += CHUNK) {
        const buf = new Uint8Array(Math.min(CHUNK, length - done));
        for (let r = 0; r < buf.length;) {
          const n = await src.read(buf.subarray(r));
          if (n === null) throw new RestoreError(`cannot restore: ${g.file} is truncated`);
          r += n;
        }
        crc = crc32(buf, crc);
        for (let w = 0; w < buf.length;) {
          const n = Number(
            rawSyscall(SYS.pwrite64, fd, buf.subarray(w), buf.length - w, offset + done + w),
          );
          if (n <= 0) throw new RestoreError(`cannot restore: writing ghost file ${g.name} failed`);
          w += n;
        }
      }
    }
    if (formatChecksum(crc) !== g.checksum) {
      throw new RestoreError(
        `cannot restore: ${g.file}: checksum ${
          formatChecksum(crc)
        } differs from the manifest's ${g.checksum}`,
      );
    }
    truncateFd(fd, g.size);
    chownChmodFd(fd, g.uid, g.gid, g.mode);
    if (g.writeHint) {
      rawSyscall(SYS.fcntl, fd, F_SET_RW_HINT, new BigUint64Array([BigInt(g.writeHint)]));
    }
    // Last of what writes to it: the writes and the truncate moved its modification time.
    if (g.times) {
      const r = setFileTimes(fd, g.times.atime, g.times.mtime);
      if (r < 0) {
        throw new RestoreError(
          `cannot restore: deleted file ${g.name}: cannot set its times back (${errnoName(-r)})`,
        );
      }
    }
    addSeals(fd, g.seals);
    return fd;
  } catch (e) {
    rawSyscall(SYS.close, fd);
    throw e;
  }
}

/**
 * Restore: a removed directory made again at its path (and its missing
 * parents), given its mode, owner and times, opened, and removed again with
 * the parents made: its fd (close-on-exec) holds an empty, removed
 * directory whose /proc link reads as before. The path must be free, unless
 * the directory is also a deleted cwd, made for the restore already
 * (`madeAsCwd`: the same directory at dump), which is opened.
 */
function createDeletedDir(g: GhostFile, madeAsCwd: boolean): number {
  // Also some process's deleted cwd: the directory made for that one (removed with it).
  if (madeAsCwd) return openDeletedDir(g);
  if (pathExistsLstat(g.name)) {
    throw new RestoreError(
      `cannot restore: the removed directory ${g.name} some fd holds cannot be made again: its path is taken now`,
    );
  }
  const made = makeMissingDirs(dirname(g.name));
  try {
    try {
      Deno.mkdirSync(g.name, { mode: 0o700 });
    } catch (e) {
      throw new RestoreError(
        `cannot restore: the removed directory ${g.name} cannot be made again: ${
          (e as Error).message
        }`,
      );
    }
    try {
      return openDeletedDir(g);
    } finally {
      Deno.removeSync(g.name);
    }
  } finally {
    for (const d of made.reverse()) {
      try {
        Deno.removeSync(d); // only while empty
      } catch { /* something else was put there meanwhile: left */ }
    }
  }
}

/** Opens the directory made at `g.name` and gives it `g`'s owner, mode and times; its fd. */
function openDeletedDir(g: GhostFile): number {
  const fd = openDirFd(g.name);
  if (fd < 0) {
    throw new RestoreError(
      `cannot restore: the removed directory ${g.name} cannot be opened (${errnoName(-fd)})`,
    );
  }
  chownChmodFd(fd, g.uid, g.gid, g.mode);
  if (g.times) setFileTimes(fd, g.times.atime, g.times.mtime);
  return fd;
}

/**
 * Restore: a removed symlink made again at its path (and its missing
 * parents) with its content and owner, opened itself (O_PATH|O_NOFOLLOW)
 * and removed again with the parents made: its fd (close-on-exec). The
 * path must be free.
 */
function createDeletedSymlink(g: GhostFile): number {
  if (pathExistsLstat(g.name)) {
    throw new RestoreError(
      `cannot restore: the removed symlink ${g.name} an O_PATH fd holds cannot be made again: its path is taken now`,
    );
  }
  const made = makeMissingDirs(dirname(g.name));
  try {
    try {
      Deno.symlinkSync(g.linkTarget ?? "", g.name);
    } catch (e) {
      throw new RestoreError(
        `cannot restore: the removed symlink ${g.name} cannot be made again: ${
          (e as Error).message
        }`,
      );
    }
    try {
      lchown(g.name, g.uid, g.gid);
      const fd = openSymlinkItself(g.name);
      if (fd < 0) {
        throw new RestoreError(
          `cannot restore: the removed symlink ${g.name} cannot be opened (${errnoName(-fd)})`,
        );
      }
      return fd;
    } finally {
      Deno.removeSync(g.name);
    }
  } finally {
    for (const d of made.reverse()) {
      try {
        Deno.removeSync(d); // only while empty
      } catch { /* something else was put there meanwhile: left */ }
    }
  }
}
