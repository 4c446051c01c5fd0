/**
 * packet_diag (sock_diag for AF_PACKET): what getsockopt does not tell of a
 * packet socket — its multicast, promiscuous and all-multicast memberships
 * (PACKET_ADD_MEMBERSHIP), whether it has an rx or tx ring, its fanout
 * group — read for every packet socket of this network namespace at once.
 *
 * @module
 */

import { rawSyscall } from "./libc.ts";
import { SYS } from "./sysno.ts";
import {
  NLM_F_REQUEST_DUMP,
  NLMSG_HDR,
  SOCK_DIAG_BY_FAMILY,
  sockDiagDump,
} from "./netlink_diag.ts";

const AF_PACKET = 17;
const SHOW_INFO = 1, SHOW_MCLIST = 2, SHOW_RING_CFG = 4, SHOW_FANOUT = 8;
const ATTR_INFO = 0, ATTR_MCLIST = 1, ATTR_RX_RING = 2, ATTR_TX_RING = 3, ATTR_FANOUT = 4;
/** Size of `struct packet_diag_mclist` (index, count, type, alen, 32 address bytes). */
const MCLIST_SIZE = 44;

/** One PACKET_ADD_MEMBERSHIP entry: interface, kind, address, and how many times it was added. */
export interface PacketMembership {
  ifindex: number;
  /** PACKET_MR_MULTICAST 0, PACKET_MR_PROMISC 1, PACKET_MR_ALLMULTI 2, PACKET_MR_UNICAST 3. */
  type: number;
  /** Hardware address bytes (multicast and unicast kinds), hex. */
  address: string;
  count: number;
}

/** `struct packet_diag_ring`: a ring's geometry as PACKET_RX_RING / PACKET_TX_RING were given it. */
export interface PacketRingGeometry {
  blockSize: number;
  blockNr: number;
  frameSize: number;
  frameNr: number;
  /** TPACKET_V3's block retire timeout, ms (0 for V1/V2). */
  retireTmo: number;
  /** TPACKET_V3's per-block private area, bytes. */
  sizeofPriv: number;
  /** TPACKET_V3's feature_req_word. */
  features: number;
}

/** What packet_diag shows of one packet socket. */
export interface PacketDiag {
  /** `struct packet_diag_info`'s pdi_flags (1 running, 2 auxdata, 4 origdev, 8 vnet_hdr, 16 loss, 32 filter). */
  flags: number;
  /** pdi_copy_thresh (PACKET_COPY_THRESH, not readable by getsockopt). */
  copyThresh: number;
  memberships: PacketMembership[];
  /** An rx or tx ring is set up (PACKET_RX_RING, PACKET_TX_RING). */
  ring: boolean;
  /** The rx ring's geometry (PACKET_DIAG_RX_RING), when it has one. */
  rx?: PacketRingGeometry;
  /** The tx ring's geometry (PACKET_DIAG_TX_RING), when it has one. */
  tx?: PacketRingGeometry;
  /** PACKET_FANOUT's value (id | mode << 16 | flags), when in a group. */
  fanout?: number;
}

function hex(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/** Every packet socket of this network namespace, by inode. Throws a SyscallError. */
export function packetDiags(): Map<number, PacketDiag> {
  const req = new Uint8Array(NLMSG_HDR + 20);
  const dv = new DataView(req.buffer);
  dv.setUint32(0, req.length, true);
  dv.setUint16(4, SOCK_DIAG_BY_FAMILY, true);
  dv.setUint16(6, NLM_F_REQUEST_DUMP, true);
  req[NLMSG_HDR] = AF_PACKET;
  dv.setUint32(NLMSG_HDR + 8, SHOW_INFO | SHOW_MCLIST | SHOW_RING_CFG | SHOW_FANOUT, true);
  const out = new Map<number, PacketDiag>();
  sockDiagDump(req, (body) => {
    const b = new DataView(body.buffer, body.byteOffset, body.length);
    const ino = b.getUint32(4, true);
    const d: PacketDiag = { flags: 0, copyThresh: 0, memberships: [], ring: false };
    for (let at = 16; at + 4 <= body.length;) {
      const len = b.getUint16(at, true);
      const type = b.getUint16(at + 2, true) & 0x3fff;
      if (len < 4 || at + len > body.length) break;
      const p = at + 4;
      if (type === ATTR_INFO && len >= 28) {
        d.copyThresh = b.getUint32(p + 12, true);
        d.flags = b.getUint32(p + 20, true);
      } else if (type === ATTR_MCLIST) {
        for (let m = p; m + MCLIST_SIZE <= at + len; m += MCLIST_SIZE) {
          const alen = b.getUint16(m + 10, true);
          d.memberships.push({
            ifindex: b.getUint32(m, true),
            count: b.getUint32(m + 4, true),
            type: b.getUint16(m + 8, true),
            address: hex(body.subarray(m + 12, m + 12 + Math.min(alen, 32))),
          });
        }
      } else if (type === ATTR_RX_RING || type === ATTR_TX_RING) {
        d.ring = true;
        if (len >= 4 + 28) {
          const g: PacketRingGeometry = {
            blockSize: b.getUint32(p, true),
            blockNr: b.getUint32(p + 4, true),
            frameSize: b.getUint32(p + 8, true),
            frameNr: b.getUint32(p + 12, true),
            retireTmo: b.getUint32(p + 16, true),
            sizeofPriv: b.getUint32(p + 20, true),
            features: b.getUint32(p + 24, true),
          };
          if (type === ATTR_RX_RING) d.rx = g;
          else d.tx = g;
        }
      } else if (type === ATTR_FANOUT && len >= 8) {
        d.fanout = b.getUint32(p, true);
      }
      at += (len + 3) & ~3;
    }
    out.set(ino, d);
  });
  return out;
}

const SIOCGIFNAME = 0x8910;

/**
 * The name of the interface with index `ifindex` in cryo's network
 * namespace (SIOCGIFNAME; /sys/class/net may show another namespace's), or
 * undefined when there is none.
 */
export function interfaceNameOf(ifindex: number): string | undefined {
  // Any socket of the namespace answers: a UDP one needs no capability.
  const fd = Number(rawSyscall(SYS.socket, 2, /* AF_INET */ 2 | 0o2000000, 0));
  if (fd < 0) return undefined;
  const ifr = new Uint8Array(40);
  new DataView(ifr.buffer).setInt32(16, ifindex, true);
  let r;
  try {
    r = rawSyscall(SYS.ioctl, fd, SIOCGIFNAME, ifr);
  } finally {
    rawSyscall(SYS.close, fd);
  }
  if (r < 0n) return undefined;
  const end = ifr.indexOf(0);
  return new TextDecoder().decode(ifr.subarray(0, end < 0 || end > 16 ? 16 : end));
}
