/**
 * What TCP (tcp.ts), UDP (udp.ts), UDP-Lite, ping and raw (inet_other.ts)
 * sockets share: their kinds, the options cryo
 * saves, addresses, and the restore ops creating a socket, setting options
 * and binding it.
 *
 * @module
 */

import {
  AF,
  decodeInetAddr,
  encodeInetAddr,
  getsockoptBytes,
  getsockoptInt,
  getsockoptLength,
  type InetAddr,
  intBytes,
  newSocket,
  outqBytes,
  peerName,
  SO,
  SOCK,
  SOL,
} from "../../ffi/net.ts";
import { repairableState, TCP, TCP_STATE, tcpInfo } from "../../ffi/tcp_repair.ts";
import { hasPendingError } from "../../ffi/socket.ts";
import { sleepMs } from "../../ffi/udp_queue.ts";
import { SYS } from "../../ffi/sysno.ts";
import { CryoError } from "../errors.ts";
import { decodeBase64, encodeBase64 } from "../base64.ts";
import type { InetSocket, SockAddr, SockOption } from "../model.ts";
import type { SupportId } from "../support.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";

/** IPPROTO_TCP. */
export const IPPROTO_TCP = 6;
/** IPPROTO_UDP. */
export const IPPROTO_UDP = 17;
/** IPPROTO_UDPLITE. */
export const IPPROTO_UDPLITE = 136;
/** IPPROTO_ICMP (an IPv4 ping socket's protocol). */
export const IPPROTO_ICMP = 1;
/** IPPROTO_ICMPV6 (an IPv6 ping socket's protocol). */
export const IPPROTO_ICMPV6 = 58;

/** The kinds of IPv4/IPv6 sockets cryo saves (model `InetSocket.proto`). */
export type InetProto = InetSocket["proto"];

/**
 * The kind of a socket of `family` with SO_TYPE `type` and SO_PROTOCOL
 * `protocol`, or null for one cryo does not save (SCTP, DCCP, ...): TCP,
 * UDP, UDP-Lite, ICMP echo ("ping": SOCK_DGRAM with IPPROTO_ICMP or
 * IPPROTO_ICMPV6) and raw sockets of any protocol.
 */
export function inetProtoOf(
  family: InetSocket["family"],
  type: number | null,
  protocol: number | null,
): InetProto | null {
  if (type === SOCK.STREAM && protocol === IPPROTO_TCP) return "tcp";
  if (type === SOCK.RAW) return "raw";
  if (type !== SOCK.DGRAM) return null;
  if (protocol === IPPROTO_UDP) return "udp";
  if (protocol === IPPROTO_UDPLITE) return "udplite";
  if (protocol === (family === "ipv4" ? IPPROTO_ICMP : IPPROTO_ICMPV6)) return "ping";
  return null;
}

/** socket()'s type and protocol re-creating socket `s` of its kind. */
export function socketArgs(s: Pick<InetSocket, "family" | "proto" | "protocol">): [number, number] {
  switch (s.proto) {
    case "tcp":
      return [SOCK.STREAM, IPPROTO_TCP];
    case "udp":
      return [SOCK.DGRAM, IPPROTO_UDP];
    case "udplite":
      return [SOCK.DGRAM, IPPROTO_UDPLITE];
    case "ping":
      return [SOCK.DGRAM, s.family === "ipv4" ? IPPROTO_ICMP : IPPROTO_ICMPV6];
    case "raw":
      return [SOCK.RAW, s.protocol ?? 0];
  }
}

/** An option cryo saves: level, name, label and its size (4 = int). */
interface OptionSpec {
  level: number;
  name: number;
  label: string;
  size: number;
  /** Only for this kind ("udp": every kind but TCP: UDP-Lite, ping and raw sockets too). */
  only?: InetProto;
  /** Only for this family. */
  family?: "ipv4" | "ipv6";
  /**
   * Only on a socket without a peer: on a connection its value is the
   * kernel's current one (the MSS, the window), not a setting.
   */
  unconnected?: true;
}

/** SO_TIMESTAMPING (SO_TIMESTAMPING_OLD). */
const SO_TIMESTAMPING = 37;

/**
 * Options saved when their value differs from a fresh socket's (so that
 * defaults keep following the host's sysctls). SO_REUSEADDR and
 * IPV6_V6ONLY are always saved: restore needs them around bind().
 */
const OPTIONS: OptionSpec[] = [
  { level: SOL.SOCKET, name: SO.REUSEPORT, label: "SO_REUSEPORT", size: 4 },
  { level: SOL.SOCKET, name: SO.KEEPALIVE, label: "SO_KEEPALIVE", size: 4 },
  { level: SOL.SOCKET, name: SO.BROADCAST, label: "SO_BROADCAST", size: 4 },
  { level: SOL.SOCKET, name: SO.OOBINLINE, label: "SO_OOBINLINE", size: 4 },
  { level: SOL.SOCKET, name: SO.DONTROUTE, label: "SO_DONTROUTE", size: 4 },
  { level: SOL.SOCKET, name: SO.NO_CHECK, label: "SO_NO_CHECK", size: 4 },
  // IP_TOS sets the priority from the TOS (rt_tos2priority) when it changes it: before SO_PRIORITY.
  { level: SOL.IP, name: 1, label: "IP_TOS", size: 4, family: "ipv4" },
  { level: SOL.IPV6, name: 67, label: "IPV6_TCLASS", size: 4, family: "ipv6" },
  { level: SOL.SOCKET, name: SO.PRIORITY, label: "SO_PRIORITY", size: 4 },
  { level: SOL.SOCKET, name: SO.RCVLOWAT, label: "SO_RCVLOWAT", size: 4 },
  { level: SOL.SOCKET, name: SO.LINGER, label: "SO_LINGER", size: 8 },
  { level: SOL.SOCKET, name: SO.RCVTIMEO, label: "SO_RCVTIMEO", size: 16 },
  { level: SOL.SOCKET, name: SO.SNDTIMEO, label: "SO_SNDTIMEO", size: 16 },
  // TCP: set after the receive queue is back (tcp.ts sets the options last).
  { level: SOL.SOCKET, name: 42, label: "SO_PEEK_OFF", size: 4 },
  { level: SOL.IPV6, name: 11, label: "IPV6_FLOWINFO", size: 4, family: "ipv6", only: "udp" },
  { level: SOL.TCP, name: TCP.NODELAY, label: "TCP_NODELAY", size: 4, only: "tcp" },
  { level: SOL.TCP, name: TCP.CORK, label: "TCP_CORK", size: 4, only: "tcp" },
  { level: SOL.TCP, name: TCP.KEEPIDLE, label: "TCP_KEEPIDLE", size: 4, only: "tcp" },
  { level: SOL.TCP, name: TCP.KEEPINTVL, label: "TCP_KEEPINTVL", size: 4, only: "tcp" },
  { level: SOL.TCP, name: TCP.KEEPCNT, label: "TCP_KEEPCNT", size: 4, only: "tcp" },
  { level: SOL.TCP, name: TCP.USER_TIMEOUT, label: "TCP_USER_TIMEOUT", size: 4, only: "tcp" },
  { level: SOL.TCP, name: TCP.NOTSENT_LOWAT, label: "TCP_NOTSENT_LOWAT", size: 4, only: "tcp" },
  { level: SOL.TCP, name: TCP.DEFER_ACCEPT, label: "TCP_DEFER_ACCEPT", size: 4, only: "tcp" },
  { level: SOL.TCP, name: TCP.FASTOPEN, label: "TCP_FASTOPEN", size: 4, only: "tcp" },
  { level: SOL.TCP, name: TCP.CONGESTION, label: "TCP_CONGESTION", size: 16, only: "tcp" },
  // Multicast settings only for UDP: TCP refuses to set them, and an
  // accepted connection's IP_MULTICAST_TTL is its SYN's TTL.
  { level: SOL.SOCKET, name: 36, label: "SO_MARK", size: 4 },
  { level: SOL.SOCKET, name: 25, label: "SO_BINDTODEVICE", size: 16 },
  // struct so_timestamping: flags and the PHC bound to (SOF_TIMESTAMPING_BIND_PHC).
  // Setting the _OLD form clears SOCK_TSTAMP_NEW (the cmsg format, shared
  // with SO_TIMESTAMP*), and the _NEW form shows the flags only with it
  // set: _OLD, then _NEW, then the SO_TIMESTAMP* switches.
  { level: SOL.SOCKET, name: SO_TIMESTAMPING, label: "SO_TIMESTAMPING", size: 8 },
  { level: SOL.SOCKET, name: 65, label: "SO_TIMESTAMPING_NEW", size: 8 },
  { level: SOL.SOCKET, name: 29, label: "SO_TIMESTAMP", size: 4 },
  { level: SOL.SOCKET, name: 35, label: "SO_TIMESTAMPNS", size: 4 },
  { level: SOL.SOCKET, name: 63, label: "SO_TIMESTAMP_NEW", size: 4 },
  { level: SOL.SOCKET, name: 64, label: "SO_TIMESTAMPNS_NEW", size: 4 },
  { level: SOL.SOCKET, name: 40, label: "SO_RXQ_OVFL", size: 4 },
  { level: SOL.IP, name: 2, label: "IP_TTL", size: 4, family: "ipv4" },
  { level: SOL.IP, name: 6, label: "IP_RECVOPTS", size: 4, family: "ipv4" },
  { level: SOL.IP, name: 7, label: "IP_RETOPTS", size: 4, family: "ipv4" },
  { level: SOL.IP, name: 8, label: "IP_PKTINFO", size: 4, family: "ipv4" },
  { level: SOL.IP, name: 10, label: "IP_MTU_DISCOVER", size: 4, family: "ipv4" },
  { level: SOL.IP, name: 11, label: "IP_RECVERR", size: 4, family: "ipv4" },
  { level: SOL.IP, name: 12, label: "IP_RECVTTL", size: 4, family: "ipv4" },
  { level: SOL.IP, name: 13, label: "IP_RECVTOS", size: 4, family: "ipv4" },
  { level: SOL.IP, name: 15, label: "IP_FREEBIND", size: 4, family: "ipv4" },
  { level: SOL.IP, name: 19, label: "IP_TRANSPARENT", size: 4, family: "ipv4" },
  { level: SOL.IP, name: 20, label: "IP_RECVORIGDSTADDR", size: 4, family: "ipv4" },
  { level: SOL.IP, name: 21, label: "IP_MINTTL", size: 4, family: "ipv4" },
  { level: SOL.IP, name: 22, label: "IP_NODEFRAG", size: 4, family: "ipv4" },
  { level: SOL.IP, name: 24, label: "IP_BIND_ADDRESS_NO_PORT", size: 4, family: "ipv4" },
  { level: SOL.IP, name: 33, label: "IP_MULTICAST_TTL", size: 4, family: "ipv4", only: "udp" },
  { level: SOL.IP, name: 34, label: "IP_MULTICAST_LOOP", size: 4, family: "ipv4", only: "udp" },
  { level: SOL.IP, name: 49, label: "IP_MULTICAST_ALL", size: 4, family: "ipv4", only: "udp" },
  { level: SOL.IPV6, name: 16, label: "IPV6_UNICAST_HOPS", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 18, label: "IPV6_MULTICAST_HOPS", size: 4, family: "ipv6", only: "udp" },
  { level: SOL.IPV6, name: 19, label: "IPV6_MULTICAST_LOOP", size: 4, family: "ipv6", only: "udp" },
  { level: SOL.IPV6, name: 23, label: "IPV6_MTU_DISCOVER", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 25, label: "IPV6_RECVERR", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 49, label: "IPV6_RECVPKTINFO", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 51, label: "IPV6_RECVHOPLIMIT", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 60, label: "IPV6_RECVPATHMTU", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 62, label: "IPV6_DONTFRAG", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 66, label: "IPV6_RECVTCLASS", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 74, label: "IPV6_RECVORIGDSTADDR", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 75, label: "IPV6_TRANSPARENT", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 78, label: "IPV6_FREEBIND", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 2, label: "IPV6_2292PKTINFO", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 3, label: "IPV6_2292HOPOPTS", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 4, label: "IPV6_2292DSTOPTS", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 5, label: "IPV6_2292RTHDR", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 8, label: "IPV6_2292HOPLIMIT", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 53, label: "IPV6_RECVHOPOPTS", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 56, label: "IPV6_RECVRTHDR", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 58, label: "IPV6_RECVDSTOPTS", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 77, label: "IPV6_RECVFRAGSIZE", size: 4, family: "ipv6" },
  // Sticky extension headers: the kernel copies min(room, length) without
  // saying it cut, so the room is the largest header (8 * (255 + 1)).
  { level: SOL.IPV6, name: 54, label: "IPV6_HOPOPTS", size: 2048, family: "ipv6" },
  { level: SOL.IPV6, name: 55, label: "IPV6_RTHDRDSTOPTS", size: 2048, family: "ipv6" },
  { level: SOL.IPV6, name: 57, label: "IPV6_RTHDR", size: 2048, family: "ipv6" },
  { level: SOL.IPV6, name: 59, label: "IPV6_DSTOPTS", size: 2048, family: "ipv6" },
  { level: SOL.IP, name: 4, label: "IP_OPTIONS", size: 40, family: "ipv4" },
  { level: SOL.IP, name: 25, label: "IP_RECVFRAGSIZE", size: 4, family: "ipv4" },
  { level: SOL.TCP, name: 2, label: "TCP_MAXSEG", size: 4, only: "tcp", unconnected: true },
  { level: SOL.TCP, name: 7, label: "TCP_SYNCNT", size: 4, only: "tcp" },
  { level: SOL.TCP, name: 8, label: "TCP_LINGER2", size: 4, only: "tcp" },
  { level: SOL.TCP, name: 10, label: "TCP_WINDOW_CLAMP", size: 4, only: "tcp", unconnected: true },
  { level: SOL.TCP, name: 16, label: "TCP_THIN_LINEAR_TIMEOUTS", size: 4, only: "tcp" },
  // Branch sockprobe2: options found lost by tests/targets/rt_sockprobe2.c.
  { level: SOL.SOCKET, name: 41, label: "SO_WIFI_STATUS", size: 4 },
  { level: SOL.SOCKET, name: 45, label: "SO_SELECT_ERR_QUEUE", size: 4 },
  { level: SOL.SOCKET, name: 46, label: "SO_BUSY_POLL", size: 4 },
  { level: SOL.SOCKET, name: 47, label: "SO_MAX_PACING_RATE", size: 8 },
  { level: SOL.SOCKET, name: 60, label: "SO_ZEROCOPY", size: 4 },
  { level: SOL.SOCKET, name: 61, label: "SO_TXTIME", size: 8 },
  { level: SOL.SOCKET, name: 69, label: "SO_PREFER_BUSY_POLL", size: 4 },
  { level: SOL.SOCKET, name: 74, label: "SO_TXREHASH", size: 4 },
  { level: SOL.SOCKET, name: 75, label: "SO_RCVMARK", size: 4 },
  { level: SOL.SOCKET, name: 49, label: "SO_INCOMING_CPU", size: 4 },
  { level: SOL.IP, name: 18, label: "IP_PASSSEC", size: 4, family: "ipv4" },
  { level: SOL.IP, name: 23, label: "IP_CHECKSUM", size: 4, family: "ipv4" },
  { level: SOL.IP, name: 26, label: "IP_RECVERR_RFC4884", size: 4, family: "ipv4" },
  { level: SOL.IP, name: 32, label: "IP_MULTICAST_IF", size: 4, family: "ipv4", only: "udp" },
  { level: SOL.IP, name: 50, label: "IP_UNICAST_IF", size: 4, family: "ipv4" },
  { level: SOL.IP, name: 51, label: "IP_LOCAL_PORT_RANGE", size: 4, family: "ipv4" },
  { level: SOL.IPV6, name: 17, label: "IPV6_MULTICAST_IF", size: 4, family: "ipv6", only: "udp" },
  { level: SOL.IPV6, name: 29, label: "IPV6_MULTICAST_ALL", size: 4, family: "ipv6", only: "udp" },
  { level: SOL.IPV6, name: 31, label: "IPV6_RECVERR_RFC4884", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 33, label: "IPV6_FLOWINFO_SEND", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 70, label: "IPV6_AUTOFLOWLABEL", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 72, label: "IPV6_ADDR_PREFERENCES", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 73, label: "IPV6_MINHOPCOUNT", size: 4, family: "ipv6" },
  { level: SOL.IPV6, name: 76, label: "IPV6_UNICAST_IF", size: 4, family: "ipv6" },
  { level: SOL.TCP, name: 27, label: "TCP_SAVE_SYN", size: 4, only: "tcp" },
  {
    level: SOL.TCP,
    name: 30,
    label: "TCP_FASTOPEN_CONNECT",
    size: 4,
    only: "tcp",
    unconnected: true,
  },
  { level: SOL.TCP, name: 34, label: "TCP_FASTOPEN_NO_COOKIE", size: 4, only: "tcp" },
  // A listener's own key (getsockopt shows the namespace's when it has none): 16 or 32 bytes.
  { level: SOL.TCP, name: 33, label: "TCP_FASTOPEN_KEY", size: 32, only: "tcp" },
  { level: SOL.TCP, name: 36, label: "TCP_INQ", size: 4, only: "tcp" },
  { level: SOL.TCP, name: 37, label: "TCP_TX_DELAY", size: 4, only: "tcp" },
  { level: SOL.TCP, name: 45, label: "TCP_RTO_MIN_US", size: 4, only: "tcp" },
  { level: SOL.TCP, name: 46, label: "TCP_DELACK_MAX_US", size: 4, only: "tcp" },
  { level: SOL.UDP, name: 1, label: "UDP_CORK", size: 4, only: "udp" },
  { level: SOL.UDP, name: 101, label: "UDP_NO_CHECK6_TX", size: 4, family: "ipv6", only: "udp" },
  { level: SOL.UDP, name: 102, label: "UDP_NO_CHECK6_RX", size: 4, family: "ipv6", only: "udp" },
  { level: SOL.UDP, name: 103, label: "UDP_SEGMENT", size: 4, only: "udp" },
  // ESP in UDP (IKE's NAT-T socket) only: optionProblem refuses the other types.
  { level: SOL.UDP, name: 100, label: "UDP_ENCAP", size: 4, only: "udp" },
  // UDP-Lite's checksum coverage (SOL_UDPLITE).
  { level: 136, name: 10, label: "UDPLITE_SEND_CSCOV", size: 4, only: "udplite" },
  { level: 136, name: 11, label: "UDPLITE_RECV_CSCOV", size: 4, only: "udplite" },
  // Raw sockets: the program writes the IP header; which ICMP types it receives; IPv6 checksum.
  { level: SOL.IP, name: 3, label: "IP_HDRINCL", size: 4, family: "ipv4", only: "raw" },
  { level: SOL.IPV6, name: 36, label: "IPV6_HDRINCL", size: 4, family: "ipv6", only: "raw" },
  { level: 255, name: 1, label: "ICMP_FILTER", size: 4, family: "ipv4", only: "raw" },
  { level: 58, name: 1, label: "ICMPV6_FILTER", size: 32, family: "ipv6", only: "raw" },
  { level: SOL.IPV6, name: 7, label: "IPV6_CHECKSUM", size: 4, family: "ipv6", only: "raw" },
];

/** Whether option `o` applies to sockets of kind `proto` and `family`. */
function applies(o: OptionSpec, proto: InetProto, family: "ipv4" | "ipv6"): boolean {
  if (o.family && o.family !== family) return false;
  return !o.only || o.only === proto || (o.only === "udp" && proto !== "tcp");
}

/** SOF_TIMESTAMPING_OPT_ID: timestamps carry a counter setsockopt restarts. */
const SOF_TIMESTAMPING_OPT_ID = 1 << 7;

/**
 * Why socket `fd` holds option state cryo cannot set again (the
 * `socket.inet-option` row), or null: SO_TIMESTAMPING with
 * SOF_TIMESTAMPING_OPT_ID, whose per-socket counter setsockopt restarts, a
 * UDP socket a kernel tunnel took over (UDP_ENCAP other than ESP in UDP),
 * an upper layer protocol on TCP.
 */
export function optionProblem(fd: number): string | null {
  const flags = getsockoptInt(fd, SOL.SOCKET, SO_TIMESTAMPING) ?? 0;
  if (flags & SOF_TIMESTAMPING_OPT_ID) {
    return `SO_TIMESTAMPING 0x${flags.toString(16)} with SOF_TIMESTAMPING_OPT_ID (its counter)`;
  }
  const encap = getsockoptInt(fd, SOL.UDP, UDP_ENCAP) ?? 0;
  if (encap > UDP_ENCAP_ESPINUDP) {
    return `UDP_ENCAP type ${encap} (a kernel tunnel: L2TP, GTP, RxRPC, ...; its state is the module's)`;
  }
  return ulpProblem(getsockoptBytes(fd, SOL.TCP, TCP.ULP, 16));
}

/** UDP_ENCAP, and its ESP-in-UDP type: what setsockopt alone sets up. */
const UDP_ENCAP = 100;
const UDP_ENCAP_ESPINUDP = 2;

/** TCP_SAVED_SYN: the SYN a TCP_SAVE_SYN listener kept for the connection (read once). */
const TCP_SAVED_SYN = 28;

/**
 * Why socket `fd` (`proto`) holds data no setsockopt can give back (the
 * `socket.inet-pending` row), or null: a UDP datagram being built (UDP_CORK
 * or MSG_MORE: its bytes count in SIOCOUTQ until it is sent; still there
 * after 60 ms, as one in a device's queue would not be), or a
 * connection's SYN saved by TCP_SAVE_SYN and not read yet (TCP_SAVED_SYN
 * with no room fails with EINVAL only then, and does not consume it), or an
 * error waiting for the program: an ICMP error in sk_err (what SO_ERROR
 * returns) or on the error queue (IP_RECVERR, MSG_ZEROCOPY completions,
 * timestamps), seen as POLLERR by a poll that consumes nothing.
 */
export function pendingProblem(fd: number, proto: InetProto): string | null {
  // A TCP socket in another state is refused by its state, with a better reason (a failed
  // connect leaves its error pending).
  const tcpState = proto === "tcp" ? tcpInfo(fd).state : 0;
  const checked = proto !== "tcp" || repairableState(tcpState) || tcpState === TCP_STATE.LISTEN;
  if (checked && hasPendingError(fd)) {
    return "an error pending on it (SO_ERROR) or on its error queue (IP_RECVERR, MSG_ERRQUEUE)";
  }
  // Ping and raw sockets send each datagram at once (no corking).
  if (proto === "ping" || proto === "raw") return null;
  if (proto === "udp" || proto === "udplite") {
    // A datagram sent but still in a device's queue is charged too, for a moment: looked at
    // again a few times before it is taken for one being built.
    let queued = outqBytes(fd);
    for (let i = 0; i < 3 && queued > 0; i++) {
      sleepMs(20);
      queued = outqBytes(fd);
    }
    return queued > 0
      ? `a datagram being built, not sent yet (UDP_CORK or MSG_MORE; ${queued} bytes charged to its send buffer)`
      : null;
  }
  return getsockoptLength(fd, SOL.TCP, TCP_SAVED_SYN) === -22
    ? "the connection's SYN saved by TCP_SAVE_SYN and not read yet (TCP_SAVED_SYN)"
    : null;
}

/**
 * Why a TCP socket with an upper layer protocol (TCP_ULP, `value` as
 * getsockopt gave it, or -errno) cannot be saved, or null: kernel TLS keeps
 * its keys and record state where no getsockopt returns all of them, and a
 * socket restored without it would send in the clear.
 */
export function ulpProblem(value: Uint8Array | number): string | null {
  if (typeof value === "number") return null; // not TCP
  const end = value.indexOf(0);
  const name = new TextDecoder().decode(value.subarray(0, end < 0 ? value.length : end));
  return name ? `an upper layer protocol on the connection (TCP_ULP "${name}")` : null;
}

/** SO_REUSEADDR's option record (restore sets it around bind). */
export const REUSEADDR = { level: SOL.SOCKET, name: SO.REUSEADDR, label: "SO_REUSEADDR" };
/** IPV6_V6ONLY's option record (restore sets it before bind). */
export const V6ONLY = { level: SOL.IPV6, name: 26, label: "IPV6_V6ONLY" };

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** A fresh socket's value of each option of {@link OPTIONS}, per protocol and family. */
const defaultsCache = new Map<string, (Uint8Array | number)[]>();

/**
 * The values of {@link OPTIONS} on fresh socket `fresh` (read once per
 * protocol and family in a cryo process: the defaults follow sysctls, which
 * a dump does not change; unix sockets cache theirs the same way).
 */
function freshDefaults(
  fresh: number,
  proto: InetProto,
  family: "ipv4" | "ipv6",
  protocol: number,
): (Uint8Array | number)[] {
  // A raw socket's defaults depend on its protocol (IPPROTO_RAW has IP_HDRINCL on).
  const key = `${proto}/${family}/${proto === "raw" ? protocol : ""}`;
  let out = defaultsCache.get(key);
  if (!out) {
    out = OPTIONS.map((o) =>
      applies(o, proto, family) ? getsockoptBytes(fresh, o.level, o.name, o.size) : -22
    );
    defaultsCache.set(key, out);
  }
  return out;
}

/**
 * The options of socket `fd` worth saving: SO_REUSEADDR, IPV6_V6ONLY (v6),
 * and every option of {@link OPTIONS} whose value differs from `fresh`'s.
 */
export function readOptions(
  fd: number,
  fresh: number,
  proto: InetProto,
  family: "ipv4" | "ipv6",
  protocol = 0,
): SockOption[] {
  const out: SockOption[] = [{
    ...REUSEADDR,
    int: getsockoptInt(fd, SOL.SOCKET, SO.REUSEADDR) ?? 0,
  }];
  if (family === "ipv6") {
    out.push({ ...V6ONLY, int: getsockoptInt(fd, SOL.IPV6, V6ONLY.name) ?? 0 });
  }
  const connected = peerName(fd) !== null;
  const defaults = freshDefaults(fresh, proto, family, protocol);
  for (const [i, o] of OPTIONS.entries()) {
    if (!applies(o, proto, family)) continue;
    if (o.unconnected && connected) continue;
    const mine = getsockoptBytes(fd, o.level, o.name, o.size);
    const theirs = defaults[i];
    if (typeof mine === "number") continue; // not applicable to this socket
    if (typeof theirs !== "number" && sameBytes(mine, theirs)) continue;
    out.push(
      o.size === 4 && mine.length === 4
        ? {
          level: o.level,
          name: o.name,
          label: o.label,
          int: new DataView(mine.buffer).getInt32(0, true),
        }
        : { level: o.level, name: o.name, label: o.label, bytes: encodeBase64(mine) },
    );
  }
  return out;
}

/**
 * SO_SNDBUF / SO_RCVBUF of `fd` where they differ from `fresh`'s, and its
 * SO_BUF_LOCK when it is not 0 or a size is recorded (setting a size locks
 * it: the restore sets the lock as saved afterwards, {@link emitBufferLock}).
 */
export function readBuffers(fd: number, fresh: number): InetSocket["buffers"] {
  const out: NonNullable<InetSocket["buffers"]> = {};
  for (const [key, name] of [["snd", SO.SNDBUF], ["rcv", SO.RCVBUF]] as const) {
    const v = getsockoptInt(fd, SOL.SOCKET, name);
    if (v !== null && v !== getsockoptInt(fresh, SOL.SOCKET, name)) out[key] = v;
  }
  const lock = getsockoptInt(fd, SOL.SOCKET, SO.BUF_LOCK);
  if (lock !== null && (lock !== 0 || Object.keys(out).length)) out.lock = lock;
  return Object.keys(out).length ? out : undefined;
}

/** The model's form of an address. */
export function toSockAddr(a: InetAddr | null): SockAddr | null {
  if (!a) return null;
  return {
    address: a.address,
    port: a.port,
    ...(a.flowinfo ? { flowinfo: a.flowinfo } : {}),
    ...(a.scopeId ? { scopeId: a.scopeId } : {}),
  };
}

/** "127.0.0.1:80" / "[::1]:80". */
export function formatAddr(a: SockAddr | null): string {
  if (!a) return "*";
  return a.address.includes(":") ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** The result of collecting one socket: its state, or the row refusing it. */
export type Collected =
  | {
    inet: InetSocket;
    repairCopy?: boolean;
    /** With `repairCopy`: tcpi_bytes_received just before the connection was read. */
    bytesReceived?: bigint;
  }
  | { refused: SupportId; detail?: string };

/** A fresh socket of the same kind in this process, for reading kernel defaults. */
export function freshSocket(family: number, type: number, protocol: number): number {
  const fd = newSocket(family, type, protocol);
  if (fd < 0) {
    throw new CryoError(
      `cannot create a socket of type ${type} protocol ${protocol} to read its defaults (errno ${-fd})`,
    );
  }
  return fd;
}

/** The address family number of a model family. */
export function familyNumber(family: InetSocket["family"]): number {
  return family === "ipv4" ? AF.INET : AF.INET6;
}

/** Emits setsockopt(fd in `fdSlot`, level, name, int). */
export function emitSetInt(
  p: ProgramBuilder,
  fdSlot: number,
  level: number,
  name: number,
  value: number,
  comment: string,
): void {
  p.op(SYS.setsockopt, [slot(fdSlot), level, name, p.data(intBytes(value), 4), 4], { comment });
}

/** Emits setsockopt for one saved option. */
export function emitOption(p: ProgramBuilder, fdSlot: number, o: SockOption): void {
  if (o.int !== undefined) {
    emitSetInt(p, fdSlot, o.level, o.name, o.int, `${o.label} = ${o.int}`);
    return;
  }
  const bytes = decodeBase64(o.bytes ?? "");
  p.op(SYS.setsockopt, [slot(fdSlot), o.level, o.name, p.data(bytes, 8), bytes.length], {
    comment: o.label,
  });
}

/** This host's net.core.<name> (wmem_max, rmem_max), or 0 when it cannot be read. */
function coreSysctl(name: string): number {
  try {
    return Number(Deno.readTextFileSync(`/proc/sys/net/core/${name}`).trim()) || 0;
  } catch {
    return 0;
  }
}

/**
 * Emits SO_SNDBUF / SO_RCVBUF (setsockopt doubles the value given; getsockopt
 * showed the double). A size above what they can give (net.core.wmem_max /
 * rmem_max cap them: the program used SO_SNDBUFFORCE / SO_RCVBUFFORCE) is set
 * with the FORCE option (CAP_NET_ADMIN; without it the restore fails rather
 * than come back with a smaller buffer).
 */
export function emitBuffers(p: ProgramBuilder, fdSlot: number, b: InetSocket["buffers"]): void {
  for (
    const [size, cap, plain, force, label] of [
      [b?.snd, "wmem_max", SO.SNDBUF, SO.SNDBUFFORCE, "SO_SNDBUF"],
      [b?.rcv, "rmem_max", SO.RCVBUF, SO.RCVBUFFORCE, "SO_RCVBUF"],
    ] as const
  ) {
    if (!size) continue;
    const forced = (size >> 1) > coreSysctl(cap);
    const name = forced ? force : plain;
    emitSetInt(p, fdSlot, SOL.SOCKET, name, size >> 1, `${label}${forced ? "FORCE" : ""} ${size}`);
  }
  emitBufferLock(p, fdSlot, b);
}

/**
 * Emits SO_BUF_LOCK as saved, after the sizes (setting one locks it: a
 * buffer the kernel autotuned would stop growing; a lock the program set
 * without changing the size would be lost). Nothing for an image without it.
 */
export function emitBufferLock(p: ProgramBuilder, fdSlot: number, b: InetSocket["buffers"]): void {
  if (b?.lock === undefined) return;
  emitSetInt(p, fdSlot, SOL.SOCKET, SO.BUF_LOCK, b.lock, `SO_BUF_LOCK = ${b.lock}`);
}

/** The saved SO_REUSEADDR value (0 when not recorded). */
export function reuseaddrOf(s: Pick<InetSocket, "options">): number {
  return s.options.find((o) => o.level === SOL.SOCKET && o.name === SO.REUSEADDR)?.int ?? 0;
}

/** The options other than SO_REUSEADDR and IPV6_V6ONLY (those are set around bind). */
export function plainOptions(s: InetSocket): SockOption[] {
  return s.options.filter((o) =>
    !(o.level === SOL.SOCKET && o.name === SO.REUSEADDR) &&
    !(o.level === SOL.IPV6 && o.name === V6ONLY.name)
  );
}

/** Emits IPV6_V6ONLY for an IPv6 socket (it must precede bind). */
export function emitV6only(p: ProgramBuilder, fdSlot: number, s: InetSocket): void {
  const v = s.options.find((o) => o.level === SOL.IPV6 && o.name === V6ONLY.name);
  if (s.family === "ipv6" && v?.int !== undefined) {
    emitSetInt(p, fdSlot, SOL.IPV6, V6ONLY.name, v.int, `IPV6_V6ONLY = ${v.int}`);
  }
}

/**
 * The saved options that let a socket bind an address this host does not
 * have (IP_FREEBIND, IP_TRANSPARENT and their IPv6 names) and were on: they
 * must be set before bind, or the bind fails with EADDRNOTAVAIL.
 */
export function nonLocalBindOptions(s: Pick<InetSocket, "options">): SockOption[] {
  return s.options.filter((o) =>
    o.int && NON_LOCAL_BIND.some(([level, name]) => o.level === level && o.name === name)
  );
}

/** IP_FREEBIND, IP_TRANSPARENT, IPV6_TRANSPARENT, IPV6_FREEBIND. */
const NON_LOCAL_BIND: readonly (readonly [number, number])[] = [
  [SOL.IP, 15],
  [SOL.IP, 19],
  [SOL.IPV6, 75],
  [SOL.IPV6, 78],
];

/** IP_FREEBIND or IPV6_FREEBIND (one flag of the socket) for a socket of `family`. */
export function freebindOption(family: InetSocket["family"]): [number, number] {
  return family === "ipv4" ? [SOL.IP, 15] : [SOL.IPV6, 78];
}

/**
 * Emits bind() to the saved local address, after the options that allow a
 * non-local one; a socket bound to a non-local address with them off
 * (`nonLocal`) gets IP_FREEBIND for the bind only.
 */
export function emitBind(p: ProgramBuilder, fdSlot: number, s: InetSocket): void {
  for (const o of nonLocalBindOptions(s)) {
    emitSetInt(p, fdSlot, o.level, o.name, o.int!, `${o.label} = ${o.int} (before bind)`);
  }
  const [level, name] = freebindOption(s.family);
  if (s.nonLocal) emitSetInt(p, fdSlot, level, name, 1, "IP_FREEBIND for a non-local bind");
  const addr = encodeInetAddr(familyNumber(s.family), s.local!);
  p.op(SYS.bind, [slot(fdSlot), p.data(addr, 8), addr.length], {
    comment: `bind ${formatAddr(s.local)}`,
  });
  if (s.nonLocal) emitSetInt(p, fdSlot, level, name, 0, "IP_FREEBIND off again");
}

/** Emits connect() to the saved peer. */
export function emitConnect(p: ProgramBuilder, fdSlot: number, s: InetSocket, note = ""): void {
  const addr = encodeInetAddr(familyNumber(s.family), s.peer!);
  p.op(SYS.connect, [slot(fdSlot), p.data(addr, 8), addr.length], {
    comment: `connect ${formatAddr(s.peer)}${note}`,
  });
}

/** A bound address, or null for port 0 (an unbound socket). */
export function boundOrNull(a: SockAddr | null): SockAddr | null {
  return a && a.port !== 0 ? a : null;
}

/** Decodes a sockaddr into the model's form (null for another family). */
export function sockAddrOf(bytes: Uint8Array | null): SockAddr | null {
  return toSockAddr(bytes ? decodeInetAddr(bytes) : null);
}

/** `FdInfo.restore` of a socket the dump refused: this prefix, then the table row's id. */
export const REFUSED_PREFIX = "inet-refused:";
