/**
 * statx(2) for the change time of a file in nanoseconds: Deno's
 * `FileInfo.ctime` keeps whole seconds only, and the change time is what
 * tells a rewritten file whose modification time was set back (utimes
 * cannot set it) from the file a dump saw.
 *
 * @module
 */

import { cstr, rawSyscall } from "./libc.ts";
import { SYS } from "./sysno.ts";

const AT_FDCWD = -100;
const STATX_CTIME = 0x80;
const STATX_MTIME = 0x40;
/** Offsets in struct statx of stx_ctime and stx_mtime (struct statx_timestamp: i64 sec, u32 nsec). */
const CTIME_AT = 0x60;
const MTIME_AT = 0x70;

const buf = new Uint8Array(256);
const view = new DataView(buf.buffer);

/** The change and modification times of `path` (symlinks followed) in ns since the epoch, or -errno. */
export function fileTimesNs(path: string): { ctimeNs: bigint; mtimeNs: bigint } | number {
  const r = rawSyscall(SYS.statx, AT_FDCWD, cstr(path), 0, STATX_CTIME | STATX_MTIME, buf);
  if (r < 0n) return Number(r);
  const at = (o: number) =>
    view.getBigInt64(o, true) * 1_000_000_000n + BigInt(view.getUint32(o + 8, true));
  return { ctimeNs: at(CTIME_AT), mtimeNs: at(MTIME_AT) };
}
