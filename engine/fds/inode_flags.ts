/**
 * Inode attributes (chattr) that forbid the restore's reopen of a file:
 * an fd open for writing on a file made immutable (FS_IMMUTABLE_FL) since
 * its open, or open for writing without O_APPEND (or with O_TRUNC) on one
 * made append-only (FS_APPEND_FL). The open file goes on writing (or
 * failing to) as the kernel checked at its open, but a new open() with the
 * same flags is EPERM even for root, so the restore would fail after the
 * tree was killed: refused at dump by name (`fd.inode-flags`). Costs one
 * open and one FS_IOC_GETFLAGS per regular file fd open for writing.
 *
 * @module
 */

import { cstr, rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import type { ProcessImage } from "../model.ts";
import type { Refusals } from "../support.ts";

const O_ACCMODE = 3;
const O_APPEND = 0o2000;
const O_TRUNC = 0o1000;
const O_RDONLY_NONBLOCK_CLOEXEC = 0o4000 | 0o2000000;
const FS_IOC_GETFLAGS = 0x80086601;
const FS_APPEND_FL = 0x20;
const FS_IMMUTABLE_FL = 0x10;

/** The inode flags (FS_IOC_GETFLAGS) of what `path` opens, or 0 when they cannot be read. */
function inodeFlags(path: string): number {
  const fd = Number(rawSyscall(SYS.open, cstr(path), O_RDONLY_NONBLOCK_CLOEXEC));
  if (fd < 0) return 0;
  try {
    const v = new Int32Array(1);
    return rawSyscall(SYS.ioctl, fd, FS_IOC_GETFLAGS, v) < 0n ? 0 : v[0];
  } finally {
    rawSyscall(SYS.close, fd);
  }
}

/** Refuses the fds of `images` that a restore could not open again because of chattr flags. */
export function checkInodeFlags(images: readonly ProcessImage[], refusals: Refusals): void {
  for (const p of images) {
    for (const f of p.fds) {
      if (f.excluded || f.kind !== "file" || f.ghost !== undefined) continue;
      if ((f.flags & O_ACCMODE) === 0) continue;
      const flags = inodeFlags(`/proc/${p.pid}/fd/${f.fd}`);
      const why = flags & FS_IMMUTABLE_FL
        ? "immutable (chattr +i)"
        : flags & FS_APPEND_FL && (!(f.flags & O_APPEND) || f.flags & O_TRUNC)
        ? "append-only (chattr +a) and the fd is not O_APPEND"
        : undefined;
      if (why) refusals.use("fd.inode-flags", `process ${p.pid} fd ${f.fd} (${f.target}): ${why}`);
    }
  }
}
