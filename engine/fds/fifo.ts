/**
 * Named pipes (FIFOs) opened by path. Each open file description is opened
 * again by path with its access mode (O_NONBLOCK while the FIFO is held
 * open read-write by a helper, so no open blocks; the exact flags are set
 * afterwards); the bytes that were buffered are written back through the
 * helper when the FIFO is empty.
 *
 * A FIFO whose path was removed while open comes back the way ghost files
 * do: made again (mknod) under its old name, which must be free at
 * restore, given its mode and owner through the helper, and unlinked at
 * once; its descriptions are then opened through `/proc/self/fd/<helper>`
 * and its bytes written back. A holder outside the tree would keep the old
 * FIFO, as it keeps the old inode of any other deleted file.
 *
 * @module
 */

import type { FdInfo } from "../model.ts";
import type { FdSource } from "./types.ts";
import { pipePackets } from "./pipe.ts";

const O_CREAT_TRUNC_EXCL = 0o100 | 0o1000 | 0o200;
/** open() refuses O_DIRECT on a FIFO (EINVAL); F_SETFL sets it after (state.ts). */
const O_DIRECT = 0o40000;
const DELETED = " (deleted)";

/** The identity of the FIFO behind `f` (device and inode). */
export function fifoId(f: FdInfo): string {
  return f.file ? `fifo:${f.file.dev}:${f.file.ino}` : `fifo:${f.target}`;
}

/**
 * Dump: the fdinfo extras of FIFO fd `fd` of process `pid` whose path was
 * removed: the FIFO's mode and owner (`fifo-mode`, `fifo-uid`, `fifo-gid`).
 */
export function collectDeletedFifo(pid: number, fd: number): Record<string, string> {
  const st = Deno.statSync(`/proc/${pid}/fd/${fd}`);
  return {
    "fifo-mode": String((st.mode ?? 0) & 0o7777),
    "fifo-uid": String(st.uid ?? 0),
    "fifo-gid": String(st.gid ?? 0),
  };
}

/** Restore plan of a FIFO fd. */
export function planFifo(f: FdInfo): FdSource | string {
  const deleted = f.target.endsWith(DELETED);
  if (deleted && f.extra["fifo-mode"] === undefined) {
    return "FIFO whose path was removed: its mode and owner were not recorded";
  }
  const packets = pipePackets(f);
  if (typeof packets === "string") return packets;
  return {
    kind: "fifo",
    id: fifoId(f),
    path: deleted ? f.target.slice(0, -DELETED.length) : f.target,
    flags: f.flags & ~O_CREAT_TRUNC_EXCL & ~O_DIRECT,
    ...(f.extra["pipe-data"] ? { data: f.extra["pipe-data"] } : {}),
    ...(f.extra["pipe-size"] ? { size: Number(f.extra["pipe-size"]) } : {}),
    ...packets,
    ...(deleted
      ? {
        deleted: {
          mode: Number(f.extra["fifo-mode"]),
          uid: Number(f.extra["fifo-uid"]),
          gid: Number(f.extra["fifo-gid"]),
        },
      }
      : {}),
  };
}

/**
 * Restore check (in cryo): why a FIFO whose path was removed cannot be
 * made again at `path` (the name is taken, or its directory is missing),
 * or null.
 */
export function deletedFifoProblem(path: string): string | null {
  try {
    Deno.lstatSync(path);
    return `${path} exists again, so the FIFO removed from there cannot get its name back`;
  } catch {
    // Free: its directory must exist.
  }
  const dir = path.slice(0, path.lastIndexOf("/")) || "/";
  try {
    if (Deno.statSync(dir).isDirectory) return null;
  } catch {
    // missing
  }
  return `${dir}, the directory of the FIFO removed from ${path}, is missing`;
}
