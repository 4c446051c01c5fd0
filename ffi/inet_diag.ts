/**
 * The inet_diag netlink query (NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY):
 * what the kernel tells about TCP and UDP sockets that getsockopt does not,
 * here each socket's shutdown state (`sk_shutdown`: 1 = no more receiving,
 * 2 = no more sending) and whether a TCP socket has MD5 signature keys
 * (shown to CAP_NET_ADMIN only), by inode.
 *
 * @module
 */

import {
  NLM_F_REQUEST_DUMP,
  NLMSG_HDR,
  SOCK_DIAG_BY_FAMILY,
  sockDiagDump,
} from "./netlink_diag.ts";

const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const INET_DIAG_INFO = 2;
const INET_DIAG_SHUTDOWN = 8;
const INET_DIAG_MD5SIG = 18;
/** Size of `struct inet_diag_req_v2`. */
const REQ_V2 = 56;
/** Offset of `idiag_inode` in `struct inet_diag_msg`, and the message size. */
const MSG_INODE = 68;
const MSG_SIZE = 72;

const align4 = (n: number) => (n + 3) & ~3;

/** Encodes the dump request for every `protocol` socket of `family` in the states `states` (bitmap). */
function request(family: number, states: number, protocol: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(NLMSG_HDR + REQ_V2);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, out.length, true);
  dv.setUint16(4, SOCK_DIAG_BY_FAMILY, true);
  dv.setUint16(6, NLM_F_REQUEST_DUMP, true);
  dv.setUint32(8, 1, true);
  out[16] = family;
  out[17] = protocol;
  // idiag_ext: INET_DIAG_INFO, without which the kernel adds no protocol attributes (MD5SIG).
  out[18] = 1 << (INET_DIAG_INFO - 1);
  dv.setUint32(20, states >>> 0, true);
  return out;
}

/** What the dump says of one TCP socket. */
export interface TcpDiagState {
  /** sk_shutdown (absent when the kernel did not say). */
  shutdown?: number;
  /** It has TCP MD5 signature keys (TCP_MD5SIG). */
  md5: boolean;
}

/**
 * The diag state of every TCP socket of address family `family` in one of
 * the TCP states of the bitmap `states` (bit n = state n), by inode.
 */
export function tcpDiagStates(family: number, states: number): Map<number, TcpDiagState> {
  return diagStates(family, states, IPPROTO_TCP);
}

/** The diag state of every UDP socket of address family `family`, by inode (`md5` is false). */
export function udpDiagStates(family: number): Map<number, TcpDiagState> {
  return diagStates(family, 0xffffffff, IPPROTO_UDP);
}

function diagStates(family: number, states: number, protocol: number): Map<number, TcpDiagState> {
  const out = new Map<number, TcpDiagState>();
  sockDiagDump(request(family, states, protocol), (body) => {
    const dv = new DataView(body.buffer, body.byteOffset, body.length);
    const inode = dv.getUint32(MSG_INODE, true);
    const state: TcpDiagState = { md5: false };
    for (let a = MSG_SIZE; a + 4 <= body.length;) {
      const alen = dv.getUint16(a, true);
      const atype = dv.getUint16(a + 2, true) & 0x3fff;
      if (alen < 4) break;
      if (atype === INET_DIAG_SHUTDOWN) state.shutdown = body[a + 4];
      if (atype === INET_DIAG_MD5SIG && alen > 4) state.md5 = true;
      a += align4(alen);
    }
    out.set(inode, state);
  });
  return out;
}
