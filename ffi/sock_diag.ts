/**
 * The sock_diag netlink interface (NETLINK_SOCK_DIAG) for unix sockets:
 * the request codec (`unix_diag_req`), the response codec (`unix_diag_msg`
 * and its attributes) and one dump of every unix socket of the network
 * namespace.
 *
 * @module
 */

import { NLM_F_REQUEST_DUMP, SOCK_DIAG_BY_FAMILY, sockDiagDump } from "./netlink_diag.ts";

const AF_UNIX = 1;

/** `udiag_show` flags: which attributes the kernel adds to each answer. */
export const UDIAG_SHOW = {
  NAME: 0x01,
  VFS: 0x02,
  PEER: 0x04,
  ICONS: 0x08,
  RQLEN: 0x10,
  MEMINFO: 0x20,
  UID: 0x40,
} as const;

/** Attribute types of a `unix_diag_msg` answer. */
const UNIX_DIAG = { NAME: 0, VFS: 1, PEER: 2, ICONS: 3, RQLEN: 4, MEMINFO: 5, SHUTDOWN: 6, UID: 7 };

/** One unix socket as sock_diag describes it. */
export interface UnixDiag {
  /** SOCK_STREAM 1, SOCK_DGRAM 2, SOCK_SEQPACKET 5. */
  type: number;
  /** TCP-style state: 1 established, 7 close (unconnected), 10 listen. */
  state: number;
  /** Socket inode. */
  ino: number;
  /** Bound address (sun_path bytes as the kernel keeps them), if bound. */
  name?: Uint8Array;
  /** The socket file of a path-bound socket. */
  vfs?: { ino: number; dev: number };
  /** Inode of the peer, if connected. */
  peer?: number;
  /** Inodes of connections waiting to be accepted (listeners). */
  icons?: number[];
  /** Listeners: pending count and backlog; others: bytes queued to read and written. */
  rqlen?: { rqueue: number; wqueue: number };
  /** sk_meminfo (SK_MEMINFO_* order: rmem_alloc, rcvbuf, wmem_alloc, sndbuf, ...). */
  meminfo?: number[];
  /** sk_shutdown: bit 0 receive side shut down, bit 1 send side. */
  shutdown: number;
  /** Owner uid. */
  uid?: number;
}

/** Encodes a SOCK_DIAG_BY_FAMILY dump request for unix sockets in every state. */
export function encodeUnixDiagRequest(show: number, seq = 1): Uint8Array<ArrayBuffer> {
  const buf = new Uint8Array(16 + 24);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, buf.length, true); // nlmsg_len
  dv.setUint16(4, SOCK_DIAG_BY_FAMILY, true);
  dv.setUint16(6, NLM_F_REQUEST_DUMP, true);
  dv.setUint32(8, seq, true);
  dv.setUint32(12, 0, true);
  buf[16] = AF_UNIX; // sdiag_family
  buf[17] = 0; // sdiag_protocol
  dv.setUint32(20, 0xffffffff, true); // udiag_states: all
  dv.setUint32(24, 0, true); // udiag_ino
  dv.setUint32(28, show, true); // udiag_show
  dv.setUint32(32, 0xffffffff, true); // cookie: none
  dv.setUint32(36, 0xffffffff, true);
  return buf;
}

/** Decodes one `unix_diag_msg` with its attributes (`body` starts after the nlmsghdr). */
export function decodeUnixDiag(body: Uint8Array): UnixDiag {
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const out: UnixDiag = { type: body[1], state: body[2], ino: dv.getUint32(4, true), shutdown: 0 };
  for (let o = 16; o + 4 <= body.length;) {
    const len = dv.getUint16(o, true);
    const type = dv.getUint16(o + 2, true) & 0x3fff;
    if (len < 4) break;
    const a = body.subarray(o + 4, o + len);
    const av = new DataView(a.buffer, a.byteOffset, a.byteLength);
    switch (type) {
      case UNIX_DIAG.NAME:
        out.name = a.slice();
        break;
      case UNIX_DIAG.VFS:
        out.vfs = { ino: av.getUint32(0, true), dev: av.getUint32(4, true) };
        break;
      case UNIX_DIAG.PEER:
        out.peer = av.getUint32(0, true);
        break;
      case UNIX_DIAG.ICONS:
        out.icons = [];
        for (let i = 0; i + 4 <= a.length; i += 4) out.icons.push(av.getUint32(i, true));
        break;
      case UNIX_DIAG.RQLEN:
        out.rqlen = { rqueue: av.getUint32(0, true), wqueue: av.getUint32(4, true) };
        break;
      case UNIX_DIAG.MEMINFO:
        out.meminfo = [];
        for (let i = 0; i + 4 <= a.length; i += 4) out.meminfo.push(av.getUint32(i, true));
        break;
      case UNIX_DIAG.SHUTDOWN:
        out.shutdown = a[0];
        break;
      case UNIX_DIAG.UID:
        out.uid = av.getUint32(0, true);
        break;
    }
    o += (len + 3) & ~3;
  }
  return out;
}

/**
 * Every unix socket of this network namespace, by inode, with the
 * attributes chosen by `show` (see {@link UDIAG_SHOW}).
 */
export function dumpUnixSockets(
  show = UDIAG_SHOW.NAME | UDIAG_SHOW.VFS | UDIAG_SHOW.PEER | UDIAG_SHOW.ICONS |
    UDIAG_SHOW.RQLEN | UDIAG_SHOW.MEMINFO | UDIAG_SHOW.UID,
): Map<number, UnixDiag> {
  const out = new Map<number, UnixDiag>();
  sockDiagDump(encodeUnixDiagRequest(show), (body) => {
    const d = decodeUnixDiag(body);
    out.set(d.ino, d);
  });
  return out;
}
