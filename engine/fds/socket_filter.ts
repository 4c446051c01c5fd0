/**
 * A classic BPF socket filter (SO_ATTACH_FILTER) of a TCP or UDP socket:
 * read back at dump with SO_GET_FILTER (the instructions as attached) with
 * its SO_LOCK_FILTER flag, attached again at restore through a copy of the
 * restored fd once the socket's queued datagrams are back (they had passed
 * it already), then locked if it was. An eBPF filter (SO_ATTACH_BPF) has
 * no instructions to read back: refused (`socket.filter`).
 *
 * @module
 */

import { decodeBase64, encodeBase64 } from "../base64.ts";
import type { InetSocket } from "../model.ts";
import {
  attachClassicFilter,
  closeFd,
  getsockoptInt,
  getsockoptLength,
  getsockoptWith,
  pidfdGetfd,
  setsockoptInt,
  SOL,
} from "../../ffi/net.ts";

/** SO_ATTACH_FILTER; getsockopt with the same number is SO_GET_FILTER. */
const SO_ATTACH_FILTER = 26;
const SO_LOCK_FILTER = 44;
/** Size of `struct sock_filter` (code u16, jt u8, jf u8, k u32). */
const INSN = 8;

/** What {@link readFilter} found: the filter to save, or why it cannot be. */
export type FilterRead = { filter?: InetSocket["filter"] } | { problem: string };

/** The classic filter of socket `fd` (a copy of the target's) and its lock. */
export function readFilter(fd: number): FilterRead {
  // With no room for it, the kernel tells the filter's length in instructions; an eBPF
  // filter cannot be read (EACCES).
  const n = getsockoptLength(fd, SOL.SOCKET, SO_ATTACH_FILTER);
  if (n < 0) return { problem: "an eBPF filter (SO_ATTACH_BPF) is attached" };
  const locked = getsockoptInt(fd, SOL.SOCKET, SO_LOCK_FILTER) === 1;
  if (n === 0) return locked ? { filter: { locked } } : {};
  const buf = new Uint8Array(n * INSN);
  const got = getsockoptWith(fd, SOL.SOCKET, SO_ATTACH_FILTER, buf);
  if (got !== n) {
    return { problem: `its classic BPF filter of ${n} instructions could not be read back` };
  }
  return { filter: { code: encodeBase64(buf), ...(locked ? { locked } : {}) } };
}

/**
 * Attaches the saved filter of `s` to fd `fd` of restored process `pid`
 * (through a pidfd_getfd copy), then sets SO_LOCK_FILTER as saved. Throws
 * a SyscallError.
 */
export function attachFilter(pid: number, fd: number, s: InetSocket): void {
  const f = s.filter;
  if (!f) return;
  const copy = pidfdGetfd(pid, fd);
  try {
    if (f.code) attachClassicFilter(copy, decodeBase64(f.code));
    if (f.locked) setsockoptInt(copy, SOL.SOCKET, SO_LOCK_FILTER, 1);
  } finally {
    closeFd(copy);
  }
}
