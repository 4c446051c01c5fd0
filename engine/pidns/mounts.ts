/**
 * The private mounts of a launched tree: tmpfs file systems it mounted in
 * its own mount namespace (beyond the /proc cryo makes). Anything else
 * mounted there (other file systems, bind mounts, a tmpfs that is also
 * mounted outside) is refused by name.
 *
 * - Which mounts: {@link extraMounts} (outside, by the tree's host pid)
 *   lists the lines of the tree's mountinfo that cryo's own does not have.
 * - Dump (inside the tree's mount namespace, tree frozen): each tmpfs with
 *   its mount and superblock options and every entry under it: directories,
 *   regular files (contents in one image file per mount, with a CRC-32),
 *   symlinks, with modes, owners and times. Hard links, special files and
 *   extended attributes are refused by name.
 * - Restore (inside the fresh mount namespace, before the tree is
 *   created): each tmpfs is mounted again at its mount point with its
 *   options and filled; a read-only one is made read-only afterwards.
 *
 * Files are read without touching their access times (O_NOATIME); listing
 * a directory may still update its own (a tree left running sees that).
 * Not kept: the inode numbers and change times of the files, access and
 * modification times of symlinks, mount propagation flags.
 *
 * @module
 */

import { crc32 } from "../image/crc32.ts";
import { lchown, mount, readFileNoAtime, xattrNamesSize } from "../../ffi/mounts.ts";
import { MS } from "../../ffi/ns.ts";
import type { TmpfsEntry, TmpfsMount } from "../model.ts";
import { formatChecksum } from "../image/checksum.ts";
import { RestoreError } from "../errors.ts";
import type { Refusals } from "../support.ts";

/** One line of a mountinfo file. */
export interface MountLine {
  id: number;
  parent: number;
  /** "major:minor" of the superblock. */
  dev: string;
  /** Root of the mount within its file system ("/" unless a bind of a subtree). */
  root: string;
  mountPoint: string;
  mountOptions: string;
  fstype: string;
  source: string;
  superOptions: string;
}

const unescape = (s: string) =>
  s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));

/** Parses a mountinfo file's text. */
export function parseMountinfo(text: string): MountLine[] {
  return text.split("\n").filter((l) => l.includes(" - ")).map((l) => {
    const [left, right] = l.split(" - ");
    const f = left.split(" ");
    const [fstype, source, superOptions = ""] = right.split(" ");
    return {
      id: Number(f[0]),
      parent: Number(f[1]),
      dev: f[2],
      root: unescape(f[3]),
      mountPoint: unescape(f[4]),
      mountOptions: f[5],
      fstype,
      source: unescape(source),
      superOptions,
    };
  });
}

const key = (m: MountLine) => `${m.mountPoint} ${m.fstype} ${m.source}`;

/**
 * The mounts of process `pid` that cryo's namespace does not have (one
 * proc mount on /proc, cryo's own, left out), in mount order; each also
 * says whether its superblock is one of cryo's (a bind from outside).
 */
export function extraMounts(pid: number): (MountLine & { outside: boolean })[] {
  const ours = parseMountinfo(Deno.readTextFileSync("/proc/self/mountinfo"));
  const devs = new Set(ours.map((m) => m.dev));
  const left = ours.map(key);
  const out: (MountLine & { outside: boolean })[] = [];
  let proc = false;
  for (const m of parseMountinfo(Deno.readTextFileSync(`/proc/${pid}/mountinfo`))) {
    const i = left.indexOf(key(m));
    if (i >= 0) {
      left.splice(i, 1);
      continue;
    }
    if (!proc && key(m) === "/proc proc proc") {
      proc = true;
      continue;
    }
    out.push({ ...m, outside: devs.has(m.dev) });
  }
  return out;
}

const MOUNT_FLAGS: Record<string, number> = {
  nosuid: MS.NOSUID,
  nodev: MS.NODEV,
  noexec: MS.NOEXEC,
  noatime: MS.NOATIME,
  nodiratime: MS.NODIRATIME,
  relatime: MS.RELATIME,
  strictatime: MS.STRICTATIME,
};

function flagsOf(options: string): { flags: number; readOnly: boolean } {
  let flags = 0;
  let readOnly = false;
  for (const o of options.split(",")) {
    if (o === "ro") readOnly = true;
    flags |= MOUNT_FLAGS[o] ?? 0;
  }
  return { flags, readOnly };
}

/** Walks one tmpfs; regular files' contents go to `out`. */
function walk(
  m: MountLine,
  out: Deno.FsFile,
  refusals: Refusals,
): { entries: TmpfsEntry[]; crc: number } {
  const entries: TmpfsEntry[] = [];
  let crc = 0;
  let offset = 0;
  const rootDev = Deno.lstatSync(m.mountPoint).dev;
  const visit = (rel: string) => {
    const path = rel ? `${m.mountPoint}/${rel}` : m.mountPoint;
    const st = Deno.lstatSync(path);
    const where = `tmpfs ${m.mountPoint}: ${rel || "."}`;
    const base = {
      path: rel,
      mode: (st.mode ?? 0) & 0o7777,
      uid: st.uid ?? 0,
      gid: st.gid ?? 0,
      mtime: st.mtime?.getTime() ?? 0,
      atime: st.atime?.getTime() ?? 0,
    };
    if (rel.includes("\uFFFD")) {
      refusals.use("task.launched-tmpfs-entry", where, "a name that is not UTF-8");
      return;
    }
    if (xattrNamesSize(path) > 0) {
      refusals.use("task.launched-tmpfs-entry", where, "it has extended attributes");
    }
    if (st.isSymlink) {
      entries.push({ ...base, type: "symlink", target: Deno.readLinkSync(path) });
    } else if (st.isDirectory) {
      entries.push({ ...base, type: "dir" });
      if (st.dev !== rootDev) return; // another mount's root: its own entry
      for (const e of [...Deno.readDirSync(path)].sort((a, b) => a.name < b.name ? -1 : 1)) {
        visit(rel ? `${rel}/${e.name}` : e.name);
      }
    } else if (st.isFile) {
      if ((st.nlink ?? 1) > 1) {
        refusals.use("task.launched-tmpfs-entry", where, `a file with ${st.nlink} hard links`);
        return;
      }
      const data = readFileNoAtime(path, Number(st.size));
      crc = crc32(data, crc);
      for (let w = 0; w < data.length;) w += out.writeSync(data.subarray(w));
      entries.push({ ...base, type: "file", offset, size: data.length });
      offset += data.length;
    } else {
      refusals.use("task.launched-tmpfs-entry", where, "a special file (device, fifo or socket)");
    }
  };
  visit("");
  return { entries, crc };
}

/**
 * Dump (inside the tree's mount namespace, tree frozen): the tmpfs mounts
 * among `extra` with their files, written into `dir`; every other mount is
 * refused by name.
 */
export function collectMounts(
  extra: readonly (MountLine & { outside: boolean })[],
  dir: string,
  refusals: Refusals,
): TmpfsMount[] {
  const out: TmpfsMount[] = [];
  const seen = new Set<string>();
  for (const m of extra) {
    const where = `mount ${m.mountPoint} (${m.fstype} from ${m.source})`;
    if (m.fstype !== "tmpfs") {
      refusals.use("task.launched-mount-other", where, `a ${m.fstype} file system`);
      continue;
    }
    if (m.outside || m.root !== "/" || seen.has(m.dev)) {
      refusals.use(
        "task.launched-mount-other",
        where,
        "a bind mount (its files are also seen elsewhere)",
      );
      continue;
    }
    seen.add(m.dev);
    refusals.use("task.launched-tmpfs", where);
    const file = `tmpfs-${out.length}.data`;
    using f = Deno.openSync(`${dir}/${file}`, { write: true, createNew: true, mode: 0o600 });
    const { entries, crc } = walk(m, f, refusals);
    out.push({
      mountPoint: m.mountPoint,
      source: m.source,
      mountOptions: m.mountOptions,
      superOptions: m.superOptions,
      file,
      checksum: formatChecksum(crc),
      entries,
    });
  }
  return out;
}

function fill(m: TmpfsMount, data: Uint8Array): void {
  const at = (e: TmpfsEntry) => e.path ? `${m.mountPoint}/${e.path}` : m.mountPoint;
  for (const e of m.entries) {
    const path = at(e);
    if (e.type === "dir") {
      if (e.path) Deno.mkdirSync(path);
    } else if (e.type === "symlink") Deno.symlinkSync(e.target!, path);
    else Deno.writeFileSync(path, data.subarray(e.offset!, e.offset! + e.size!));
    lchown(path, e.uid, e.gid);
    if (e.type !== "symlink") Deno.chmodSync(path, e.mode);
  }
  // Times last, children before their directories (creating an entry changes its directory's).
  for (const e of [...m.entries].reverse()) {
    if (e.type !== "symlink") Deno.utimeSync(at(e), new Date(e.atime), new Date(e.mtime));
  }
}

/** Refuses a mount record whose names would reach outside the image or the mount. */
function checkNames(m: TmpfsMount): void {
  const bad = !/^tmpfs-[0-9]+\.data$/.test(m.file) || !m.mountPoint.startsWith("/") ||
    m.mountPoint.split("/").includes("..") ||
    m.entries.some((e) =>
      e.path.startsWith("/") || e.path.split("/").some((c) => c === ".." || c === ".") ||
      e.path.includes("\0")
    );
  // Each entry's parent is a directory recorded before it (never through a symlink).
  const dirs = new Set<string>();
  const orphan = m.entries.some((e, i) => {
    const parent = e.path.includes("/") ? e.path.slice(0, e.path.lastIndexOf("/")) : "";
    const ok = i === 0 ? e.path === "" && e.type === "dir" : e.path !== "" && dirs.has(parent);
    if (e.type === "dir") dirs.add(e.path);
    return !ok;
  });
  if (bad || orphan) {
    throw new RestoreError(`cannot restore: the record of tmpfs ${m.mountPoint} is malformed`);
  }
}

/**
 * Restore (inside the fresh mount namespace, before the tree is created):
 * mounts each tmpfs again and fills it from `dir`. Throws a RestoreError.
 */
export function restoreMounts(mounts: readonly TmpfsMount[], dir: string): void {
  for (const m of mounts) {
    checkNames(m);
    let data: Uint8Array;
    try {
      data = Deno.readFileSync(`${dir}/${m.file}`);
    } catch (e) {
      throw new RestoreError(`cannot restore: ${m.file}: ${(e as Error).message}`);
    }
    const crc = formatChecksum(crc32(data));
    if (crc !== m.checksum) {
      throw new RestoreError(
        `cannot restore: ${m.file}: checksum ${crc} differs from the manifest's ${m.checksum}`,
      );
    }
    const { flags, readOnly } = flagsOf(m.mountOptions);
    const opts = m.superOptions.split(",").filter((o) => o !== "rw" && o !== "ro").join(",");
    try {
      mount(m.source, m.mountPoint, "tmpfs", flags, opts);
      fill(m, data);
      if (readOnly) {
        mount("none", m.mountPoint, "", MS.REMOUNT | MS.BIND | MS.RDONLY | flags, "");
      }
    } catch (e) {
      throw new RestoreError(
        `cannot restore: tmpfs ${m.mountPoint} cannot be re-created: ${(e as Error).message}`,
      );
    }
  }
}
