/**
 * The inet_diag netlink query (NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY):
 * what the kernel tells about TCP sockets that getsockopt does not, here
 * each socket's shutdown state (`sk_shutdown`: 1 = no more receiving,
 * 2 = no more sending), by inode.
 *
 * @module
 */

import { rawSyscall, SyscallError } from "./libc.ts";
import { SYS } from "./sysno.ts";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20;
const NLM_F_REQUEST = 1;
const NLM_F_DUMP = 0x300;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const IPPROTO_TCP = 6;
const INET_DIAG_SHUTDOWN = 8;
/** Size of `struct nlmsghdr`. */
const NLMSG_HDR = 16;
/** Size of `struct inet_diag_req_v2`. */
const REQ_V2 = 56;
/** Offset of `idiag_inode` in `struct inet_diag_msg`, and the message size. */
const MSG_INODE = 68;
const MSG_SIZE = 72;

const align4 = (n: number) => (n + 3) & ~3;

/** Encodes the dump request for every TCP socket of `family` in the states `states` (bitmap). */
function request(family: number, states: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(NLMSG_HDR + REQ_V2);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, out.length, true);
  dv.setUint16(4, SOCK_DIAG_BY_FAMILY, true);
  dv.setUint16(6, NLM_F_REQUEST | NLM_F_DUMP, true);
  dv.setUint32(8, 1, true);
  out[16] = family;
  out[17] = IPPROTO_TCP;
  dv.setUint32(20, states >>> 0, true);
  return out;
}

/**
 * The shutdown state of every TCP socket of address family `family` in
 * one of the TCP states of the bitmap `states` (bit n = state n), by inode.
 */
export function tcpShutdownStates(family: number, states: number): Map<number, number> {
  const fd = Number(rawSyscall(SYS.socket, AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (fd < 0) throw new SyscallError("socket(NETLINK_SOCK_DIAG)", [], -fd);
  const out = new Map<number, number>();
  try {
    const kernel = new Uint8Array(12);
    new DataView(kernel.buffer).setUint16(0, AF_NETLINK, true);
    const req = request(family, states);
    const sent = rawSyscall(SYS.sendto, fd, req, req.length, 0, kernel, kernel.length);
    if (sent < 0n) throw new SyscallError("sendto(SOCK_DIAG_BY_FAMILY)", [], Number(-sent));
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = Number(rawSyscall(SYS.recvfrom, fd, buf, buf.length, 0, 0, 0));
      if (n < 0) throw new SyscallError("recv(SOCK_DIAG_BY_FAMILY)", [], -n);
      const dv = new DataView(buf.buffer, 0, n);
      for (let at = 0; at + NLMSG_HDR <= n;) {
        const len = dv.getUint32(at, true);
        const type = dv.getUint16(at + 4, true);
        if (len < NLMSG_HDR || at + len > n) return out;
        if (type === NLMSG_DONE) return out;
        if (type === NLMSG_ERROR) {
          const err = -dv.getInt32(at + NLMSG_HDR, true);
          throw new SyscallError("SOCK_DIAG_BY_FAMILY", [], err);
        }
        const msg = at + NLMSG_HDR;
        const inode = dv.getUint32(msg + MSG_INODE, true);
        for (let a = msg + MSG_SIZE; a + 4 <= at + len;) {
          const alen = dv.getUint16(a, true);
          const atype = dv.getUint16(a + 2, true) & 0x3fff;
          if (alen < 4) break;
          if (atype === INET_DIAG_SHUTDOWN) out.set(inode, buf[a + 4]);
          a += align4(alen);
        }
        at += align4(len);
      }
    }
  } finally {
    rawSyscall(SYS.close, fd);
  }
}
