/**
 * Inode attributes (chattr) that forbid the restore's reopen of a file:
 * an fd open for writing on a file made immutable (FS_IMMUTABLE_FL) since
 * its open, or open for writing without O_APPEND (or with O_TRUNC) on one
 * made append-only (FS_APPEND_FL). The open file goes on writing (or
 * failing to) as the kernel checked at its open, but a new open() with the
 * same flags is EPERM even for root, so the restore would fail after the
 * tree was killed: refused at dump by name (`fd.inode-flags`). Costs one
 * statx (its attributes) per regular file fd open for writing, none where
 * the dump's check of shadowed paths (engine/fds/ghost.ts) read them already.
 *
 * @module
 */

import { fileAttributes } from "../../ffi/statx.ts";
import type { FdInfo, ProcessImage } from "../model.ts";
import type { Refusals } from "../support.ts";

const O_ACCMODE = 3;
const O_APPEND = 0o2000;
const O_TRUNC = 0o1000;
const STATX_ATTR_IMMUTABLE = 0x10;
const STATX_ATTR_APPEND = 0x20;

/** Attributes of fds' open files already read by the dump (fds/ghost.ts: their path's statx). */
const known = new WeakMap<FdInfo, number>();

/**
 * Records the attributes of `f`'s open file, read by a statx of a path
 * found to lead to that very inode (engine/fds/ghost.ts): {@link checkInodeFlags}
 * then asks nothing more of it.
 */
export function noteFileAttributes(f: FdInfo, attributes: number): void {
  known.set(f, attributes);
}

/** Refuses the fds of `images` that a restore could not open again because of chattr flags. */
export function checkInodeFlags(images: readonly ProcessImage[], refusals: Refusals): void {
  for (const p of images) {
    for (const f of p.fds) {
      if (f.excluded || f.kind !== "file" || f.ghost !== undefined) continue;
      if ((f.flags & O_ACCMODE) === 0) continue;
      const flags = known.get(f) ?? fileAttributes(`/proc/${p.pid}/fd/${f.fd}`);
      const why = flags & STATX_ATTR_IMMUTABLE
        ? "immutable (chattr +i)"
        : flags & STATX_ATTR_APPEND && (!(f.flags & O_APPEND) || f.flags & O_TRUNC)
        ? "append-only (chattr +a) and the fd is not O_APPEND"
        : undefined;
      if (why) refusals.use("fd.inode-flags", `process ${p.pid} fd ${f.fd} (${f.target}): ${why}`);
    }
  }
}
