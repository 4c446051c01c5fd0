/**
 * Datagrams waiting in a UDP socket's receive queue.
 *
 * Dump (through cryo's copy of the frozen target's fd) peeks at them one by
 * one without consuming them: the first with a plain MSG_PEEK, then the
 * others by setting SO_PEEK_OFF to 0 (MSG_PEEK then moves past each
 * datagram it returns) and putting the socket's own SO_PEEK_OFF back after.
 * Each keeps its payload and its sender's address and port.
 *
 * Restore, once every socket of the tree exists and before the tree runs,
 * sends each datagram again, in order, as a raw IP packet (IPPROTO_RAW,
 * with our own IP and UDP headers) whose source is the original sender and
 * whose destination is the restored socket's address (the loopback address
 * for a wildcard bind); the kernel routes it through the loopback and
 * queues it like one received from that sender, so recvfrom reports the
 * same source. No socket is bound to the sender's address, so a sender that
 * still holds its port (in the tree or outside) does not stand in the way.
 * Each datagram must reach the socket (its receive memory grows, its drop
 * count does not) or the restore fails naming it.
 *
 * Refused at dump (row "socket.udp-queued-other"): a sender that cannot be
 * re-created exactly (unspecified, multicast or reserved address, an
 * interface-scoped IPv6 address), a datagram queued on a connected socket
 * from another address than its peer (the re-sent one would not be
 * accepted), SO_PEEK_OFF in use by the process (a zero-length datagram it
 * peeked at past the first would be invisible to the walk), UDP_GRO
 * (merged datagrams).
 *
 * Known gap: the kernel marks an empty datagram as peeked when a peek
 * returns it, and a peek at an offset skips empty datagrams so marked. An
 * empty datagram past the first one that an earlier walk already returned
 * (an earlier dump that left the tree running, or failed) is therefore invisible
 * to this walk; nothing the kernel reports tells that it is there.
 *
 * @module
 */

import {
  AF,
  closeFd,
  datagramQueued,
  getsockoptInt,
  pidfdGetfd,
  setsockoptInt,
  SOL,
} from "../../ffi/net.ts";
import {
  type ForgedDatagram,
  peekDatagram,
  sendForgedDatagram,
  sleepMs,
  SO_PEEK_OFF,
  socketMemInfo,
  UDP_GRO,
} from "../../ffi/udp_queue.ts";
import { decodeBase64, encodeBase64 } from "../base64.ts";
import { CryoError } from "../errors.ts";
import type { InetSocket, ProcessImage, QueuedDatagram } from "../model.ts";
import { formatAddr, sockAddrOf } from "./inet.ts";

/** The largest UDP payload (IPv6 without jumbograms). */
const MAX_PAYLOAD = 65527;
/** How long restore waits for one re-sent datagram to reach its socket. */
const DELIVERY_TIMEOUT_MS = 10_000;

/**
 * Options making the kernel hand over data about each datagram with it
 * (ancillary data: arrival time, TTL, destination address, interface...),
 * which a datagram sent again through the loopback would not carry over.
 */
const PER_DATAGRAM: { level: number; name: number; label: string; v6?: boolean }[] = [
  { level: SOL.SOCKET, name: 29, label: "SO_TIMESTAMP" },
  { level: SOL.SOCKET, name: 35, label: "SO_TIMESTAMPNS" },
  { level: SOL.SOCKET, name: 37, label: "SO_TIMESTAMPING" },
  { level: SOL.SOCKET, name: 63, label: "SO_TIMESTAMP_NEW" },
  { level: SOL.SOCKET, name: 64, label: "SO_TIMESTAMPNS_NEW" },
  { level: SOL.SOCKET, name: 65, label: "SO_TIMESTAMPING_NEW" },
  { level: SOL.SOCKET, name: 40, label: "SO_RXQ_OVFL" },
  { level: SOL.SOCKET, name: 75, label: "SO_RCVMARK" },
  { level: SOL.IP, name: 6, label: "IP_RECVOPTS" },
  { level: SOL.IP, name: 7, label: "IP_RETOPTS" },
  { level: SOL.IP, name: 8, label: "IP_PKTINFO" },
  { level: SOL.IP, name: 12, label: "IP_RECVTTL" },
  { level: SOL.IP, name: 13, label: "IP_RECVTOS" },
  { level: SOL.IP, name: 20, label: "IP_RECVORIGDSTADDR" },
  { level: SOL.IP, name: 23, label: "IP_CHECKSUM" },
  { level: SOL.IP, name: 25, label: "IP_RECVFRAGSIZE" },
  { level: SOL.IPV6, name: 2, label: "IPV6_2292PKTINFO", v6: true },
  { level: SOL.IPV6, name: 3, label: "IPV6_2292HOPOPTS", v6: true },
  { level: SOL.IPV6, name: 4, label: "IPV6_2292DSTOPTS", v6: true },
  { level: SOL.IPV6, name: 5, label: "IPV6_2292RTHDR", v6: true },
  { level: SOL.IPV6, name: 8, label: "IPV6_2292HOPLIMIT", v6: true },
  { level: SOL.IPV6, name: 49, label: "IPV6_RECVPKTINFO", v6: true },
  { level: SOL.IPV6, name: 51, label: "IPV6_RECVHOPLIMIT", v6: true },
  { level: SOL.IPV6, name: 53, label: "IPV6_RECVHOPOPTS", v6: true },
  { level: SOL.IPV6, name: 56, label: "IPV6_RECVRTHDR", v6: true },
  { level: SOL.IPV6, name: 58, label: "IPV6_RECVDSTOPTS", v6: true },
  { level: SOL.IPV6, name: 60, label: "IPV6_RECVPATHMTU", v6: true },
  { level: SOL.IPV6, name: 66, label: "IPV6_RECVTCLASS", v6: true },
  { level: SOL.IPV6, name: 74, label: "IPV6_RECVORIGDSTADDR", v6: true },
  { level: SOL.IPV6, name: 77, label: "IPV6_RECVFRAGSIZE", v6: true },
  { level: SOL.UDP, name: 100, label: "UDP_ENCAP" },
];

/** The per-datagram options of {@link PER_DATAGRAM} socket `fd` has on. */
function perDatagramOptions(fd: number, family: InetSocket["family"]): string[] {
  return PER_DATAGRAM.filter((o) =>
    (family === "ipv6" || !o.v6) && getsockoptInt(fd, o.level, o.name)
  )
    .map((o) => o.label);
}

/** The datagrams of a queue, or why they cannot be carried over (for the refusal's detail). */
export type QueueRead = { datagrams: QueuedDatagram[] } | { refused: string };

/** "a.b.c.d" of a v4-mapped IPv6 address ("::ffff:7f00:1"), else null. */
function v4OfMapped(address: string): string | null {
  const m = address.match(/^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/);
  if (!m) return null;
  const hi = parseInt(m[1], 16), lo = parseInt(m[2], 16);
  return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
}

/**
 * The packet re-creating datagram `d` of socket `s`: its IP version,
 * source and destination; or why it cannot be made.
 */
function forge(
  s: Pick<InetSocket, "family" | "local">,
  d: QueuedDatagram,
): ForgedDatagram | string {
  const local = s.local;
  if (!local) return "the socket is not bound";
  const payload = decodeBase64(d.data);
  const from = d.from;
  if (from.scopeId) return `its sender's address is scoped to interface ${from.scopeId}`;
  const v4 = s.family === "ipv4" ? from.address : v4OfMapped(from.address);
  if (v4 !== null) {
    const first = Number(v4.split(".")[0]);
    if (v4 === "0.0.0.0") return "its sender's address is unspecified";
    if (first >= 224) return "its sender's address is a multicast or reserved one";
    const to = s.family === "ipv4"
      ? (local.address === "0.0.0.0" ? "127.0.0.1" : local.address)
      : (local.address === "::" ? "127.0.0.1" : v4OfMapped(local.address));
    if (!to) return "an IPv4 datagram on a socket bound to an IPv6 address";
    return {
      family: AF.INET,
      from: { address: v4, port: from.port },
      to: { address: to, port: local.port },
      payload,
    };
  }
  if (from.address === "::") return "its sender's address is unspecified";
  if (from.address.startsWith("ff")) return "its sender's address is a multicast one";
  if (v4OfMapped(local.address)) return "an IPv6 datagram on a socket bound to an IPv4 address";
  return {
    family: AF.INET6,
    from: { address: from.address, port: from.port, flowinfo: from.flowinfo },
    to: { address: local.address === "::" ? "::1" : local.address, port: local.port },
    payload,
  };
}

/** Why datagram `d` of socket `s` cannot be re-queued exactly, or undefined. */
function problemOf(
  s: Pick<InetSocket, "family" | "local" | "peer">,
  d: QueuedDatagram,
): string | undefined {
  const p = s.peer;
  if (p && (p.address !== d.from.address || p.port !== d.from.port)) {
    return `it was queued before the socket was connected to ${formatAddr(p)}, ` +
      `which accepts no other sender`;
  }
  const f = forge(s, d);
  return typeof f === "string" ? f : undefined;
}

/**
 * Reads the receive queue of UDP socket `copy` (cryo's copy of the frozen
 * target's fd) without consuming it, and leaves its SO_PEEK_OFF as it was.
 * `s` is what is known of the socket already (family, addresses).
 */
export function readDatagramQueue(
  copy: number,
  s: Pick<InetSocket, "family" | "local" | "peer">,
): QueueRead {
  const on = `on ${formatAddr(s.local)}`;
  const peekOff = getsockoptInt(copy, SOL.SOCKET, SO_PEEK_OFF);
  if (peekOff === null) {
    if (!datagramQueued(copy)) return { datagrams: [] };
    return { refused: `${on}: this kernel cannot peek past the first datagram (SO_PEEK_OFF)` };
  }
  // Any peek moves the process's own peek offset: probe with it off.
  if (peekOff >= 0) setsockoptInt(copy, SOL.SOCKET, SO_PEEK_OFF, -1);
  let queued;
  try {
    queued = datagramQueued(copy);
  } finally {
    if (peekOff >= 0) setsockoptInt(copy, SOL.SOCKET, SO_PEEK_OFF, peekOff);
  }
  if (!queued) return { datagrams: [] };
  if (getsockoptInt(copy, SOL.UDP, UDP_GRO)) {
    return { refused: `${on}: UDP_GRO is on (queued datagrams may be merged)` };
  }
  const ancillary = perDatagramOptions(copy, s.family);
  if (ancillary.length) {
    return {
      refused: `${on}: ${ancillary.join(", ")} on: what the process reads with each datagram ` +
        `cannot be re-created`,
    };
  }
  if (peekOff >= 0) {
    return {
      refused: `${on}: the process peeks with SO_PEEK_OFF (${peekOff}): ` +
        `an empty datagram it peeked at is invisible to cryo`,
    };
  }
  const buf = new Uint8Array(MAX_PAYLOAD + 1);
  const out: QueuedDatagram[] = [];
  const take = (n: number, got: NonNullable<ReturnType<typeof peekDatagram>>) => {
    const from = sockAddrOf(got.from);
    const what = `${on}: datagram ${n}${from ? ` from ${formatAddr(from)}` : ""}`;
    if (got.length > MAX_PAYLOAD) return `${what}: ${got.length} bytes (a jumbogram)`;
    if (!from) return `${what}: its sender has no IPv4/IPv6 address`;
    const d = { from, data: encodeBase64(got.data) };
    const problem = problemOf(s, d);
    if (problem) return `${what}: ${problem}`;
    out.push(d);
    return undefined;
  };
  // The first datagram with a plain peek: an empty one the process peeked at
  // is skipped by a peek at offset 0 (as is the one peeked here, below).
  const head = peekDatagram(copy, buf);
  if (!head) return { datagrams: [] }; // read in the meantime (the socket is shared)
  const refused = take(1, head);
  if (refused) return { refused };
  setsockoptInt(copy, SOL.SOCKET, SO_PEEK_OFF, head.length === 0 ? 0 : head.length);
  try {
    for (let n = 2;; n++) {
      const got = peekDatagram(copy, buf);
      if (!got) break;
      const refused = take(n, got);
      if (refused) return { refused };
    }
  } finally {
    setsockoptInt(copy, SOL.SOCKET, SO_PEEK_OFF, peekOff);
  }
  return { datagrams: out };
}

/**
 * Sends the saved datagrams of restored UDP socket `s` (fd `fd` of process
 * `pid`) again, in order, each from its sender's address, and waits until
 * each is in the socket's queue. Throws when the queue was not empty
 * before, or a datagram was dropped or never arrived.
 */
export function requeueDatagrams(pid: number, fd: number, s: InetSocket): void {
  const copy = pidfdGetfd(pid, fd);
  try {
    if (socketMemInfo(copy).rmem !== 0) {
      throw new CryoError("other datagrams reached the socket before its queue was put back");
    }
    (s.datagrams ?? []).forEach((d, i) => {
      const what = `datagram ${i + 1} from ${formatAddr(d.from)}`;
      const forged = forge(s, d);
      if (typeof forged === "string") throw new CryoError(`${what}: ${forged}`);
      const before = socketMemInfo(copy);
      sendForgedDatagram(forged);
      for (const deadline = Date.now() + DELIVERY_TIMEOUT_MS;;) {
        const now = socketMemInfo(copy);
        if (now.drops !== before.drops) {
          throw new CryoError(`${what} was dropped (receive buffer of ${now.rcvbuf} bytes full)`);
        }
        if (now.rmem > before.rmem) break;
        if (Date.now() > deadline) throw new CryoError(`${what} never reached the socket`);
        sleepMs(1);
      }
    });
  } finally {
    closeFd(copy);
  }
}

/** The restored UDP sockets of `image` that have datagrams to put back. */
function withQueue(image: ProcessImage) {
  return image.fds.filter((f) =>
    !f.excluded && f.sameAs === undefined && f.inet?.proto === "udp" && f.inet.datagrams?.length
  );
}

/**
 * Puts back the queued datagrams of every restored UDP socket of `images`
 * (see {@link requeueDatagrams}); throws naming the socket on failure.
 */
export function finishUdpQueues(images: readonly ProcessImage[]): void {
  const seen = new Set<string>();
  for (const image of images) {
    for (const f of withQueue(image)) {
      if (f.description !== undefined) {
        // A socket shared by several processes (shared.ts) gets its datagrams once.
        if (seen.has(f.description)) continue;
        seen.add(f.description);
      }
      const s = f.inet!;
      try {
        requeueDatagrams(image.pid, f.fd, s);
      } catch (e) {
        throw new CryoError(
          `process ${image.pid} fd ${f.fd} (udp ${formatAddr(s.local)}): putting back its ` +
            `queued datagrams failed: ${(e as Error).message}`,
        );
      }
    }
  }
}

/** What {@link finishUdpQueues} does for `image`, for `show --plan`. */
export function finishUdpQueuesPlan(image: ProcessImage): string[] {
  const first = (f: ProcessImage["fds"][number]) =>
    f.description === undefined || f.description === `${image.pid}:${f.fd}`;
  return withQueue(image).filter(first).map((f) =>
    `fd ${f.fd}: ${f.inet!.datagrams!.length} queued datagrams sent again from their senders' ` +
    `addresses (raw IP packets to ${formatAddr(f.inet!.local)})`
  );
}
