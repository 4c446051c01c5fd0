/**
 * One NETLINK_SOCK_DIAG dump: send a request, collect every answer message
 * until NLMSG_DONE. The request and the messages' bodies are the callers'
 * (inet_diag.ts for TCP, sock_diag.ts for unix sockets).
 *
 * @module
 */

import { rawSyscall, SyscallError } from "./libc.ts";
import { SYS } from "./sysno.ts";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_SOCK_DIAG = 4;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
/** Size of `struct nlmsghdr`. */
export const NLMSG_HDR = 16;
/** The SOCK_DIAG_BY_FAMILY message type. */
export const SOCK_DIAG_BY_FAMILY = 20;
/** Request flags of a dump. */
export const NLM_F_REQUEST_DUMP = 1 | 0x300;

/**
 * Sends `request` (a whole netlink message) to the kernel's sock_diag and
 * calls `onMessage` with the body of every SOCK_DIAG_BY_FAMILY answer.
 * Throws a SyscallError for a failed call or an error answer.
 */
export function sockDiagDump(request: Uint8Array, onMessage: (body: Uint8Array) => void): void {
  const fd = Number(rawSyscall(SYS.socket, AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (fd < 0) throw new SyscallError("socket(NETLINK_SOCK_DIAG)", [], -fd);
  try {
    const kernel = new Uint8Array(12);
    new DataView(kernel.buffer).setUint16(0, AF_NETLINK, true);
    const sent = rawSyscall(SYS.sendto, fd, request, request.length, 0, kernel, kernel.length);
    if (sent < 0n) throw new SyscallError("sendto(SOCK_DIAG_BY_FAMILY)", [], Number(-sent));
    const buf = new Uint8Array(64 << 10);
    const dv = new DataView(buf.buffer);
    for (;;) {
      const n = Number(rawSyscall(SYS.recvfrom, fd, buf, buf.length, 0, 0, 0));
      if (n < 0) throw new SyscallError("recv(SOCK_DIAG_BY_FAMILY)", [], -n);
      if (n === 0) return;
      for (let at = 0; at + NLMSG_HDR <= n;) {
        const len = dv.getUint32(at, true);
        const type = dv.getUint16(at + 4, true);
        if (len < NLMSG_HDR || at + len > n || type === NLMSG_DONE) return;
        if (type === NLMSG_ERROR) {
          const err = -dv.getInt32(at + NLMSG_HDR, true);
          if (err === 0) return;
          throw new SyscallError("SOCK_DIAG_BY_FAMILY", [], err);
        }
        if (type === SOCK_DIAG_BY_FAMILY) onMessage(buf.subarray(at + NLMSG_HDR, at + len));
        at += (len + 3) & ~3;
      }
    }
  } finally {
    rawSyscall(SYS.close, fd);
  }
}
