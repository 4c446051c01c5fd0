/**
 * Named pipes (FIFOs) opened by path. Each open file description is opened
 * again by path with its access mode (O_NONBLOCK while the FIFO is held
 * open read-write by a helper, so no open blocks; the exact flags are set
 * afterwards); the bytes that were buffered are written back through the
 * helper when the FIFO is empty. A FIFO whose path was removed is refused.
 *
 * @module
 */

import type { FdInfo } from "../model.ts";
import { supportOf } from "../support.ts";
import type { FdSource } from "./types.ts";

const O_CREAT_TRUNC_EXCL = 0o100 | 0o1000 | 0o200;

/** The identity of the FIFO behind `f` (device and inode). */
export function fifoId(f: FdInfo): string {
  return f.file ? `fifo:${f.file.dev}:${f.file.ino}` : `fifo:${f.target}`;
}

/** Restore plan of a FIFO fd. */
export function planFifo(f: FdInfo): FdSource | string {
  if (f.target.endsWith(" (deleted)")) {
    const row = supportOf("fd.fifo-deleted");
    return `${row.what}: ${row.note}`;
  }
  return {
    kind: "fifo",
    id: fifoId(f),
    path: f.target,
    flags: f.flags & ~O_CREAT_TRUNC_EXCL,
    ...(f.extra["pipe-data"] ? { data: f.extra["pipe-data"] } : {}),
    ...(f.extra["pipe-size"] ? { size: Number(f.extra["pipe-size"]) } : {}),
  };
}
