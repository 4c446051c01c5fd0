/**
 * Pre-flight checks of a restore, run before any process is created:
 * pids free, backing files unchanged, same kernel vdso, privileges.
 *
 * @module
 */

import { isDeletedCwd } from "./deleted_cwd.ts";
import { zombiePids } from "../task/zombies.ts";
import { placeholderPids } from "../task/groups.ts";
import { unixCredHelperPids } from "../fds/unix.ts";
import { vdsoFacts } from "../vdso.ts";
import { recallOwnVdso, rememberOwnVdso } from "../proc/vm_flags_memo.ts";
import { readStatus } from "../proc/status.ts";
import type { FdInfo, FileIdentity, Manifest, ProcessImage } from "../model.ts";
import { lockConflict, locksOf } from "../fds/locks.ts";
import { RestoreError } from "../errors.ts";
import { deletedFifoProblem } from "../fds/fifo.ts";
import { isAncestorProcPath } from "../fds/procfs.ts";
import { credsProblems } from "../task/creds_check.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { Errno } from "../../ffi/errno.ts";
import { findFrom } from "../find_from.ts";
import { changeTimeNs } from "../../ffi/statx.ts";

const O_NOFOLLOW = 0o400000;

function describeHolder(pid: number): string | undefined {
  try {
    const { name, state, tgid, ppid } = readStatus(pid);
    if (state === "Z") {
      return `pid ${pid} is held by a zombie (${name}) that its parent ${ppid} has not reaped`;
    }
    return tgid === pid
      ? `pid ${pid} is in use by ${name}`
      : `pid ${pid} is in use by a thread of process ${tgid} (${name})`;
  } catch {
    return undefined;
  }
}

/**
 * A live process whose process group or session id is one of `ids` (such an
 * id cannot be given to a new process either). Every process of the host
 * is asked by `getpgid` and `getsid` (one system call each) instead of
 * reading and parsing its /proc/<pid>/stat (open, read, close and a text
 * decode): the same two fields, a third of the CPU (docs/PERFORMANCE.md).
 */
function groupHolder(ids: Set<number>): { id: number; pid: number; what: string } | undefined {
  for (const e of Deno.readDirSync("/proc")) {
    const c = e.name.charCodeAt(0);
    if (c < 48 || c > 57) continue; // not a pid
    const pid = Number(e.name);
    const pgrp = Number(rawSyscall(SYS.getpgid, pid));
    if (pgrp < 0) continue; // gone meanwhile
    if (ids.has(pgrp)) return { id: pgrp, pid, what: "process group" };
    const session = Number(rawSyscall(SYS.getsid, pid));
    if (session < 0) continue; // gone meanwhile
    if (ids.has(session)) return { id: session, pid, what: "session" };
  }
  return undefined;
}

/**
 * Throws if any pid or tid of the image is taken, naming it and its holder;
 * with `groups` (default) also if a pid is still a process group or
 * session id ({@link checkGroupIdsFree}).
 */
export function checkPidsFree(processes: readonly ProcessImage[], groups = true): void {
  // Placeholders of groups whose leader is gone take the leaders' pids (engine/task/groups.ts).
  // And listeners' credential helpers take the pids their credentials name (engine/fds/unix.ts).
  const placeholders = [
    ...placeholderPids(processes).map((x) => x.pid),
    ...unixCredHelperPids(processes),
  ];
  for (const [i, p] of processes.entries()) {
    const more = i === 0 ? placeholders : [];
    for (const id of [p.pid, ...p.threads.map((t) => t.tid), ...zombiePids([p]), ...more]) {
      // kill(id, 0): ESRCH when no task has this id (a thread's tid included),
      // without a /proc lookup and an exception per free id.
      if (rawSyscall(SYS.kill, id, 0) !== -BigInt(Errno.ESRCH)) {
        throw new RestoreError(`cannot restore: ${describeHolder(id) ?? `pid ${id} is in use`}`);
      }
    }
  }
  if (groups) checkGroupIdsFree(processes);
}

/**
 * Throws if a pid of the processes (or of their zombies) is still the
 * process group or session id of a live process, naming it: a walk of
 * /proc, two system calls per process of the host. `clone3` with such a
 * `set_tid` fails (EEXIST: the kernel keeps the id while a group or
 * session uses it), so a restore runs this walk only once a creation
 * failed, to say why (engine/restore/mod.ts).
 */
export function checkGroupIdsFree(processes: readonly ProcessImage[]): void {
  const holder = groupHolder(
    new Set([
      ...processes.map((p) => p.pid),
      ...zombiePids(processes),
      ...placeholderPids(processes).map((x) => x.pid),
    ]),
  );
  if (holder) {
    throw new RestoreError(
      `cannot restore: pid ${holder.id} is still in use as the ${holder.what} id of process ${holder.pid}`,
    );
  }
}

/**
 * Throws if a file differs from its recorded identity (or is gone). With
 * `sameFileOnly`, only its device and inode must match: its content and
 * size may have changed (a shared mapping's, see {@link checkFiles}).
 */
export function checkFileIdentity(what: string, f: FileIdentity, sameFileOnly = false): void {
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(f.path);
  } catch {
    throw new RestoreError(`cannot restore: ${what} ${f.path} is missing`);
  }
  if (st.ino !== f.ino || st.dev !== f.dev) {
    throw new RestoreError(`cannot restore: ${what} ${f.path} is another file than at the dump`);
  }
  if (sameFileOnly) return;
  const mtime = st.mtime?.getTime() ?? 0;
  if (st.size !== f.size || mtime !== f.mtimeMs) {
    throw new RestoreError(`cannot restore: ${what} ${f.path} changed since the dump`);
  }
  if (f.ctimeNs === undefined) return;
  // Same size and mtime, but utimes can set an mtime back: the change time it cannot.
  if (changeTimeNs(f.path) !== f.ctimeNs) {
    throw new RestoreError(
      `cannot restore: ${what} ${f.path} changed since the dump (its change time moved: rewritten with its old mtime, or renamed, linked or chmod'ed)`,
    );
  }
}

/**
 * Checks every backing file and executable of the processes. A file only
 * mapped shared must be the same file (device, inode) but may have been
 * written since: the image keeps none of its pages (the file has them), and
 * other processes writing it is how shared file memory lives on (SQLite's
 * `-shm` index, which every Deno process maps from its cache). A file also
 * mapped private, or an executable, must be unchanged: its pages not copied
 * into the image would come back from the new content.
 */
export function checkFiles(processes: readonly ProcessImage[]): void {
  for (const p of processes) {
    if (p.exe) checkFileIdentity(`executable of ${p.pid}`, p.exe);
    const strict = new Set<string>();
    const loose = new Set<string>();
    // (10,000 mappings, one pass: by findFrom, no long loop here: engine/find_from.ts.)
    findFrom(p.mappings, (m) => {
      if (!m.file || m.ghost !== undefined || strict.has(m.file.path)) return false;
      const shared = m.kind === "file-shared";
      if (shared && loose.has(m.file.path)) return false;
      (shared ? loose : strict).add(m.file.path);
      checkFileIdentity(`file mapped by ${p.pid}`, m.file, shared);
      return false;
    });
  }
}

/**
 * Throws if a process's image was written by another dump than the
 * manifest (a file copied in from another image directory): the checksum
 * check finds that too, but not with `--no-verify`. Images without ids
 * (older cryo versions) are not compared.
 */
export function checkSameDump(manifest: Manifest, processes: readonly ProcessImage[]): void {
  if (manifest.dumpId === undefined) return;
  for (const p of processes) {
    if (p.dumpId === undefined || p.dumpId === manifest.dumpId) continue;
    const file = manifest.processes.find((e) => e.pid === p.pid)?.file ?? `${p.pid}.elf`;
    throw new RestoreError(
      `cannot restore: ${file} was written by another dump (${p.dumpId}) than the manifest (${manifest.dumpId})`,
    );
  }
}

/**
 * Throws if the cwd or root directory of a process is gone or is another
 * directory than at the dump (same device and inode, when the image
 * recorded them). A directory under one of `remade` (the tmpfs mounts a
 * launched tree's restore makes again) is not there yet, and gets a new
 * inode: left out.
 */
export function checkProcessDirs(
  processes: readonly ProcessImage[],
  remade: readonly string[] = [],
): void {
  const under = (p: string) =>
    remade.some((m) => p === m || p.startsWith(m.endsWith("/") ? m : `${m}/`));
  for (const p of processes) {
    for (const which of ["cwd", "root"] as const) {
      const path = p[which];
      // A deleted cwd: its path must be free (engine/restore/deleted_cwd.ts checks that).
      if (under(path) || (which === "cwd" && isDeletedCwd(path))) continue;
      let st: Deno.FileInfo;
      try {
        st = Deno.statSync(path);
      } catch {
        throw new RestoreError(
          `cannot restore: the ${which} of process ${p.pid}, ${path}, is missing`,
        );
      }
      const id = p.dirIds?.[which];
      if (!st.isDirectory) {
        throw new RestoreError(
          `cannot restore: the ${which} of process ${p.pid}, ${path}, is no longer a directory`,
        );
      }
      if (id && (st.ino !== id.ino || st.dev !== id.dev)) {
        throw new RestoreError(
          `cannot restore: the ${which} of process ${p.pid}, ${path}, was replaced by another directory since the dump`,
        );
      }
    }
  }
}

/** cryo's own vvar/vdso layout and vdso hash, as {@link vdsoFacts} gives them. */
export type OwnVdso = Awaited<ReturnType<typeof vdsoFacts>>;

/**
 * Starts reading cryo's own vdso facts ({@link checkVdso} awaits them):
 * as read earlier on this boot when remembered (engine/proc/vm_flags_memo.ts:
 * the kernel's vdso does not change before the next boot), else read and
 * hashed (on Deno's blocking pool while the restore plans), then remembered.
 * A failure is kept for the check (never an unhandled rejection).
 */
export function startOwnVdso(): Promise<OwnVdso> {
  const known = recallOwnVdso();
  if (known) return Promise.resolve(known);
  const facts = (async () => {
    const own = await vdsoFacts(Deno.pid);
    rememberOwnVdso(own);
    return own;
  })();
  facts.catch(() => {}); // handled by the check's await
  return facts;
}

/**
 * Refuses a restore on a kernel whose vdso differs from the dumped one;
 * `own`: cryo's own facts when started already ({@link startOwnVdso}).
 */
export async function checkVdso(manifest: Manifest, own?: Promise<OwnVdso>): Promise<void> {
  const cur = await (own ?? vdsoFacts(Deno.pid));
  const want = manifest.host.vdso.map((v) => `${v.name}:${v.size}`).join(" ");
  const have = cur.layout.map((v) => `${v.name}:${v.size}`).join(" ");
  if (want !== have) {
    throw new RestoreError(
      `cannot restore: this kernel's vdso layout (${have}) differs from the dumped one (${want})`,
    );
  }
  if (manifest.host.vdsoSha256 && manifest.host.vdsoSha256 !== cur.sha256) {
    throw new RestoreError(
      `cannot restore: this kernel's vdso differs from the dumped one (kernel ${Deno.osRelease()}, image from ${manifest.host.kernelRelease})`,
    );
  }
}

/** Refuses early when the privileges for same-pid restore are missing. */
export function checkPrivileges(): void {
  const status = Deno.readTextFileSync("/proc/self/status");
  const cap = BigInt(`0x${status.match(/^CapEff:\s+([0-9a-f]+)/m)?.[1] ?? "0"}`);
  const has = (bit: number) => (cap >> BigInt(bit)) & 1n;
  if (!has(19)) {
    throw new RestoreError(
      "cannot restore: needs CAP_SYS_PTRACE (run as root; without it, only trees started with cryo launch restore, rootless)",
    );
  }
  if (!has(21) && !has(40)) {
    throw new RestoreError(
      "cannot restore: restoring the original pids needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN",
    );
  }
}

/** Files (and FIFOs) that restored fds reopen must exist (files: the same, by device and inode). */
export function checkFdFiles(
  units: readonly {
    image: ProcessImage;
    compiled: {
      fds: { fd: number; source: { kind: string; path?: string; deleted?: unknown } }[];
      sharedCreated?: {
        pid: number;
        fd: number;
        source: { kind: string; path?: string; deleted?: unknown };
      }[];
    };
  }[],
): void {
  const opened = units.flatMap(({ image, compiled }) => [
    ...compiled.fds.map((f) => ({ image, ...f })),
    ...(compiled.sharedCreated ?? []).map((f) => ({
      ...f,
      image: units.find((u) => u.image.pid === f.pid)?.image ?? image,
    })),
  ]);
  const byPid = new Map(units.map((u) => [u.image.pid, u.image]));
  const ppidOf = (pid: number) => {
    const ppid = byPid.get(pid)?.ppid;
    return ppid !== undefined && byPid.has(ppid) ? ppid : undefined;
  };
  for (const { image, fd, source } of opened) {
    if ((source.kind !== "open" && source.kind !== "fifo") || !source.path) continue;
    const info = image.fds.find((f) => f.fd === fd);
    // A pty slave of the tree appears once the engine has opened its master.
    if (info?.extra["tty-role"] === "slave") continue;
    // Deleted files and memfds are re-created by the engine from the image.
    if (info?.ghost !== undefined) continue;
    // A file of the process's own /proc directory, or of an ancestor's, appears with the process.
    if (source.kind === "open" && isAncestorProcPath(source.path, image.pid, ppidOf)) continue;
    // A FIFO whose path was removed is made again there.
    if (source.kind === "fifo" && source.deleted) {
      const why = deletedFifoProblem(source.path);
      if (why) throw new RestoreError(`cannot restore: fd ${fd} of process ${image.pid}: ${why}`);
      continue;
    }
    let st: Deno.FileInfo;
    try {
      // The link itself for an O_PATH fd of one (kind "path", or opened O_NOFOLLOW).
      st = info?.kind === "path" || (info?.flags ?? 0) & O_NOFOLLOW
        ? Deno.lstatSync(source.path)
        : Deno.statSync(source.path);
    } catch {
      throw new RestoreError(
        `cannot restore: fd ${fd} of process ${image.pid} was ${source.path}, which is missing (use --inherit-fd ${fd}=PATH)`,
      );
    }
    if (source.kind === "fifo" && !st.isFifo) {
      throw new RestoreError(
        `cannot restore: fd ${fd} of process ${image.pid}: ${source.path} is no longer a FIFO`,
      );
    }
    const why = info?.file && info.file.path === source.path
      ? reopenedFileProblem(info.kind, info.file, st)
      : undefined;
    if (why) {
      throw new RestoreError(
        `cannot restore: fd ${fd} of process ${image.pid}: ${source.path} ${why} (--inherit-fd ${fd}=${source.path} takes it as it is now)`,
      );
    }
    for (const l of info && source.kind === "open" ? locksOf(info) : []) {
      // A lease's conflicts (an open for writing elsewhere) fail its F_SETLEASE, named by the op.
      if (l.class === "other" || l.class === "LEASE") continue;
      const held = lockConflict(source.path, l);
      if (held) {
        const range = l.class === "FLOCK" ? "" : ` ${l.start}-${l.end}`;
        throw new RestoreError(
          `cannot restore: process ${image.pid} held a ${l.type.toLowerCase()} ${l.class} lock${range} on ${source.path} (fd ${fd}), which ${held} now conflicts with`,
        );
      }
    }
  }
}

const TYPE_NAMES: Partial<Record<FdInfo["kind"], [string, (st: Deno.FileInfo) => boolean]>> = {
  file: ["a regular file", (st) => st.isFile],
  directory: ["a directory", (st) => st.isDirectory],
  path: [
    "a symbolic link, socket file or FIFO",
    (st) => st.isSymlink || st.isSocket === true || st.isFifo === true,
  ],
  chardev: ["a character device", (st) => st.isCharDevice === true],
  blockdev: ["a block device", (st) => st.isBlockDevice === true],
  fifo: ["a FIFO", (st) => st.isFifo === true],
  // O_PATH fds (engine/fds/mod.ts): a symlink opened O_NOFOLLOW, a socket's file.
  unknown: ["a symlink", (st) => st.isSymlink],
  socket: ["a socket file", (st) => st.isSocket === true],
};

/**
 * Why the file at a reopened fd's path is not the one the fd had, or
 * undefined: it must be of the same type, and the same file (device and
 * inode) for files, directories and FIFOs; a device node must open the
 * same device (its inode may differ: /dev is made anew at every boot).
 * The content of a file is not the fd's: it may have changed (as it may
 * under a running process).
 */
export function reopenedFileProblem(
  kind: FdInfo["kind"],
  f: FileIdentity,
  st: Deno.FileInfo,
): string | undefined {
  const type = TYPE_NAMES[kind];
  if (!type) return undefined;
  // procfs and sysfs make their inodes as they are looked up (and a launched tree's /proc is
  // mounted again): only a regular file there is compared, as before.
  if (kind !== "file" && /^\/(proc|sys)(\/|$)/.test(f.path)) return undefined;
  if (!type[1](st)) return `is no longer ${type[0]}`;
  if (kind === "chardev" || kind === "blockdev") {
    if (f.rdev === undefined || st.rdev === f.rdev) return undefined;
    const dev = (d: number) => `${Math.floor(d / 256) & 0xfff}:${(d & 0xff) | ((d >> 12) & ~0xff)}`;
    return `is now device ${dev(st.rdev ?? 0)}, not ${dev(f.rdev)}`;
  }
  if (st.ino !== f.ino || st.dev !== f.dev) {
    return `was replaced by another ${kind === "directory" ? "directory" : "file"} since the dump`;
  }
  return undefined;
}

/**
 * Capabilities the restored tasks start with: they are exec'd as root by
 * the launcher, so they get this process's bounding set (less what it
 * does not hold itself).
 */
export function restorerCapabilities(): bigint {
  const st = readStatus(Deno.pid);
  return st.capBnd & st.capPrm;
}

/** Refuses credentials the restored tasks could not be given (capabilities this restorer lacks). */
export function checkCredentials(
  processes: readonly ProcessImage[],
  available = restorerCapabilities(),
): void {
  const problems = credsProblems(processes, available);
  if (problems.length) throw new RestoreError(`cannot restore: ${problems.join("; ")}`);
}
