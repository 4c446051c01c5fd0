/**
 * Restore side of TCP, UDP (and UDP-Lite, ping, raw) and netlink sockets:
 * the plan of one socket fd (or why it cannot come back), the order
 * sockets are created in, the dispatch to tcp.ts / udp.ts / inet_other.ts
 * for their ops, and the end of repair mode.
 *
 * @module
 */

import type { FdInfo, InetSocket, ProcessImage } from "../model.ts";
import { type Refusals, SUPPORT_TABLE } from "../support.ts";
import { CryoError, RestoreError } from "../errors.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import type { FdSource, PlannedFd } from "./types.ts";
import { socketRecordProblem } from "./inet_schema.ts";
import {
  familyNumber,
  formatAddr,
  freebindOption,
  nonLocalBindOptions,
  REFUSED_PREFIX,
  reuseaddrOf,
  socketArgs,
  V6ONLY,
} from "./inet.ts";
import {
  closeFd,
  encodeInetAddr,
  newSocket,
  pidfdGetfd,
  setsockoptInt,
  SO,
  SOL,
} from "../../ffi/net.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { errnoName } from "../../ffi/errno.ts";
import { closedConnection, emitTcp, finishTcp, finishTcpCopy, sendBufferAfter } from "./tcp.ts";
import { carriedFiles, withCarriedConnections } from "./unix_scm.ts";
import { emitUdp } from "./udp.ts";
import { emitOther } from "./inet_other.ts";
import { attachFilter } from "./socket_filter.ts";
import { packetProblem } from "./packet.ts";
import { ringDataBytes } from "./packet_ring.ts";
import { decodeBase64 } from "../base64.ts";
import { checkSocketOwners } from "./socket_owner.ts";
import { finishUdpQueues, finishUdpQueuesPlan } from "./udp_queue.ts";

/**
 * Restore plan of a socket cryo read at dump (TCP, UDP, netlink route): its
 * source, the reason it cannot be restored, or undefined when it is none
 * of those (another module's socket).
 */
export function planInet(f: FdInfo): FdSource | string | undefined {
  if (f.restore.startsWith(REFUSED_PREFIX)) {
    const id = f.restore.slice(REFUSED_PREFIX.length);
    const row = SUPPORT_TABLE.find((r) => r.id === id);
    const why = f.extra["refused"] ?? (row && "note" in row ? row.note : undefined);
    return `${row?.what ?? id}: ${why ?? "not supported"}`;
  }
  const problem = socketRecordProblem(f);
  if (problem) return problem;
  if (f.inet) return { kind: "inet", socket: f.inet, flags: f.flags };
  if (f.netlink) return { kind: "netlink", socket: f.netlink, flags: f.flags };
  if (f.packet) {
    return packetProblem(f.packet) ?? { kind: "packet", socket: f.packet, flags: f.flags };
  }
  return undefined;
}

/** Emits the ops re-creating a planned TCP/UDP socket into `fdSlot`. */
export function emitInet(p: ProgramBuilder, fdSlot: number, s: InetSocket, label: string): void {
  if (s.proto === "tcp") emitTcp(p, fdSlot, s, label);
  else if (s.proto === "udp") emitUdp(p, fdSlot, s, label);
  else emitOther(p, fdSlot, s, label);
}

/**
 * The order fds are created in: established TCP connections last, so that
 * a listener binds its port before the connections it accepted (which take
 * the same port in repair mode) exist again.
 */
export function creationOrder(fds: PlannedFd[]): PlannedFd[] {
  const late = (f: PlannedFd) =>
    f.source.kind === "inet" && f.source.socket.state === "established";
  return [...fds.filter((f) => !late(f)), ...fds.filter(late)];
}

/**
 * `restore --tcp-close`: every TCP connection of `images` (established or
 * half-closed) comes back as a closed socket, shut down both ways
 * (engine/fds/tcp.ts `closedConnection`); its queues are dropped.
 */
export function closeConnections(images: readonly ProcessImage[]): void {
  for (const image of images) {
    // With the connections only a queued message holds (engine/fds/unix_scm.ts).
    for (const f of [...image.fds, ...carriedFiles(image)]) {
      if (f.inet?.tcp) f.inet = closedConnection(f.inet);
    }
  }
}

/** Bytes of queued data an image's restore program will carry for `fds`. */
export function inetQueueBytes(fds: FdInfo[]): number {
  let n = 0;
  for (const f of fds) {
    const t = f.inet?.tcp;
    if (t) n += Math.ceil((t.sendQueue.length + t.recvQueue.length) * 3 / 4);
    n += ringDataBytes(f.packet?.ring);
  }
  return n;
}

/**
 * Restore-time uses of the table: an established connection to a peer
 * outside the tree needs its opt-in again ("tcp-established").
 */
export function reportInetUses(images: readonly ProcessImage[], refusals: Refusals): void {
  for (const image of images) {
    for (const f of [...image.fds, ...carriedFiles(image)]) {
      const s = f.inet;
      if (f.excluded || !s?.tcp || s.tcp.peerInTree) continue;
      refusals.use(
        "socket.tcp-established",
        `${
          f.fd < 0
            ? `a connection in flight on a socket of process ${image.pid}`
            : `process ${image.pid} fd ${f.fd}`
        } (tcp ${formatAddr(s.local)} -> ${formatAddr(s.peer)})`,
      );
    }
  }
}

/**
 * After every restore program ran (all processes of the tree exist, every
 * socket is re-created): checks the owners of sockets of another user than
 * root (socket_owner.ts), puts back the datagrams queued on UDP sockets,
 * attaches their classic BPF filters (before repair mode ends), turns
 * SO_REUSEPORT off on the listeners of a group that had it off
 * (markReuseportGroups: bound with it on, so that the group forms again),
 * then ends repair mode of each restored connection
 * (see finishTcp). Throws naming the connection when that fails.
 */
export function finishInetSockets(images: readonly ProcessImage[]): void {
  checkSocketOwners(images);
  finishUdpQueues(images); // queued datagrams sent again (udp_queue.ts)
  attachFilters(images); // after the queued datagrams, which had passed them (socket_filter.ts)
  clearGroupReuseport(images);
  const seen = new Set<string>();
  for (const image of images) {
    for (const f of image.fds) {
      if (f.excluded || f.sameAs !== undefined || !f.inet?.tcp) continue;
      if (f.description !== undefined) {
        // A socket shared by several processes: repair mode ends once.
        if (seen.has(f.description)) continue;
        seen.add(f.description);
      }
      try {
        finishTcp(image.pid, f.fd, f.inet);
      } catch (e) {
        throw new CryoError(
          `process ${image.pid} fd ${f.fd} (tcp ${formatAddr(f.inet.local)} -> ` +
            `${formatAddr(f.inet.peer)}): ending repair mode failed: ${(e as Error).message}`,
        );
      }
    }
  }
  // A connection only a queued message holds: through a copy peeked from its queue.
  withCarriedConnections(images, (copy, f, where) => {
    try {
      finishTcpCopy(copy, f.inet!, where);
    } catch (e) {
      throw new CryoError(
        `${where}: a connection in flight (tcp ${formatAddr(f.inet!.local)} -> ` +
          `${formatAddr(f.inet!.peer)}): ending repair mode failed: ${(e as Error).message}`,
      );
    }
  });
}

/** The listeners of `image` bound with SO_REUSEPORT on only to join their group. */
function groupListeners(image: ProcessImage): FdInfo[] {
  return image.fds.filter((f) =>
    !f.excluded && f.sameAs === undefined && f.inet?.reuseportGroup &&
    (f.description === undefined || f.description === `${image.pid}:${f.fd}`)
  );
}

/** The sockets of `image` with a classic filter or SO_LOCK_FILTER to set again. */
function filtered(image: ProcessImage): FdInfo[] {
  return image.fds.filter((f) =>
    !f.excluded && f.sameAs === undefined && f.inet?.filter &&
    (f.description === undefined || f.description === `${image.pid}:${f.fd}`)
  );
}

function attachFilters(images: readonly ProcessImage[]): void {
  for (const image of images) {
    for (const f of filtered(image)) {
      try {
        attachFilter(image.pid, f.fd, f.inet!);
      } catch (e) {
        throw new CryoError(
          `process ${image.pid} fd ${f.fd} (${f.inet!.proto} ${formatAddr(f.inet!.local)}): ` +
            `attaching its socket filter failed: ${(e as Error).message}`,
        );
      }
    }
  }
}

function clearGroupReuseport(images: readonly ProcessImage[]): void {
  for (const image of images) {
    for (const f of groupListeners(image)) {
      const copy = pidfdGetfd(image.pid, f.fd);
      try {
        setsockoptInt(copy, SOL.SOCKET, SO.REUSEPORT, 0);
      } finally {
        closeFd(copy);
      }
    }
  }
}

/** What {@link finishInetSockets} does for `image`, for `show --plan`. */
export function finishInetPlan(image: ProcessImage): string[] {
  return [
    ...finishUdpQueuesPlan(image),
    ...filtered(image).map((f) =>
      `fd ${f.fd}: ${
        f.inet!.filter!.code
          ? `its classic BPF filter (${decodeBase64(f.inet!.filter!.code).length / 8} instructions)`
          : "no filter"
      }${f.inet!.filter!.locked ? ", then SO_LOCK_FILTER" : ""}, through a pidfd_getfd copy`
    ),
    ...groupListeners(image).map((f) =>
      `fd ${f.fd}: SO_REUSEPORT off through a pidfd_getfd copy (its group listens again)`
    ),
    ...finishInetPlanTcp(image),
    ...carriedFiles(image).filter((f) => f.inet?.tcp).map((f) =>
      `a connection in flight (tcp ${formatAddr(f.inet!.local)} -> ${
        formatAddr(f.inet!.peer)
      }): TCP_REPAIR off through a copy peeked from its queue`
    ),
  ];
}

function finishInetPlanTcp(image: ProcessImage): string[] {
  return image.fds.filter((f) =>
    !f.excluded && f.sameAs === undefined && f.inet?.tcp &&
    (f.description === undefined || f.description === `${image.pid}:${f.fd}`)
  ).map((f) => {
    const t = f.inet!.tcp!;
    const snd = sendBufferAfter(f.inet!);
    return `fd ${f.fd}: TCP_REPAIR off through a pidfd_getfd copy, SO_REUSEADDR as saved` +
      (t.unsent ? `, then ${t.unsent} never-sent bytes written` : "") +
      (snd !== undefined ? `, then the send buffer back to ${snd}` : "");
  });
}

/** A socket source for people: "tcp listen 127.0.0.1:80", "netlink route, port id 12". */
export function describeSocket(
  s: Extract<FdSource, { kind: "inet" | "netlink" | "packet" }>,
): string {
  if (s.kind === "netlink") return `netlink route socket, port id ${s.socket.portid}`;
  if (s.kind === "packet") {
    const k = s.socket;
    return `packet socket, protocol 0x${k.protocol.toString(16)} on ` +
      (k.ifindex ? `${k.ifname} (${k.ifindex})` : "every interface");
  }
  const k = s.socket;
  const peer = k.peer ? ` -> ${formatAddr(k.peer)}` : "";
  const what = k.proto === "tcp" ? `tcp ${k.state}` : k.proto;
  const queued = k.datagrams?.length ? `, ${k.datagrams.length} datagrams queued` : "";
  return `${what} ${formatAddr(k.local)}${peer}${k.tcp ? " (repair mode)" : ""}${queued}`;
}

/**
 * Restore pre-flight: every listener and bound UDP or unconnected TCP
 * socket of the images can bind its address again (a probe socket with the
 * same family, SO_REUSEADDR as restore sets it around bind, SO_REUSEPORT
 * and IPV6_V6ONLY as saved, is bound and closed). Established connections
 * are not probed: repair mode binds next to anything. Throws a RestoreError
 * naming the socket and the address in use.
 */
export function checkInetPorts(images: readonly ProcessImage[]): void {
  for (const image of images) {
    // With the sockets only a queued message holds (engine/fds/unix_scm.ts; fd -1).
    for (const f of [...image.fds, ...carriedFiles(image)]) {
      const s = f.inet;
      if (f.excluded || f.sameAs !== undefined || !s?.local || s.tcp) continue;
      const err = probeBind(s);
      if (err) {
        throw new RestoreError(
          `cannot restore: ${
            f.fd < 0
              ? `a socket in flight on a socket of process ${image.pid}`
              : `process ${image.pid} fd ${f.fd}`
          } (${s.proto} ${s.state} ` +
            `${formatAddr(s.local)}): its address ${
              err === "EADDRNOTAVAIL" ? "is not one of this host's" : "is in use"
            } (${err})`,
        );
      }
    }
  }
}

/**
 * Dump: whether a socket bound to `s.local` without IP_FREEBIND or
 * IP_TRANSPARENT holds an address this host does not have (it was bound
 * with them on, then they were turned off): a fresh socket binding that
 * address, any port, fails with EADDRNOTAVAIL. Wildcards are local.
 */
export function boundNonLocal(s: InetSocket): boolean {
  const a = s.local;
  if (!a || a.address === "0.0.0.0" || a.address === "::" || nonLocalBindOptions(s).length) {
    return false;
  }
  const fd = newSocket(familyNumber(s.family), ...socketArgs(s));
  if (fd < 0) return false;
  try {
    const addr = encodeInetAddr(familyNumber(s.family), { ...a, port: 0 });
    return rawSyscall(SYS.bind, fd, addr, addr.length) === -99n; // EADDRNOTAVAIL
  } finally {
    closeFd(fd);
  }
}

function probeBind(s: InetSocket): string | undefined {
  const fd = newSocket(familyNumber(s.family), ...socketArgs(s));
  if (fd < 0) return undefined; // the restore itself will say what is wrong
  try {
    const saved = (level: number, name: number) =>
      s.options.find((o) => o.level === level && o.name === name)?.int;
    const reuse = s.proto === "tcp" ? 1 : reuseaddrOf(s);
    setsockoptInt(fd, SOL.SOCKET, SO.REUSEADDR, reuse);
    const reusePort = s.reuseportGroup ? 1 : saved(SOL.SOCKET, SO.REUSEPORT);
    if (reusePort) setsockoptInt(fd, SOL.SOCKET, SO.REUSEPORT, reusePort);
    const v6only = saved(SOL.IPV6, V6ONLY.name);
    if (s.family === "ipv6" && v6only !== undefined) {
      setsockoptInt(fd, SOL.IPV6, V6ONLY.name, v6only);
    }
    for (const o of nonLocalBindOptions(s)) setsockoptInt(fd, o.level, o.name, o.int!);
    if (s.nonLocal) setsockoptInt(fd, ...freebindOption(s.family), 1);
    const addr = encodeInetAddr(familyNumber(s.family), s.local!);
    const r = rawSyscall(SYS.bind, fd, addr, addr.length);
    return r < 0n ? errnoName(Number(-r)) : undefined;
  } finally {
    closeFd(fd);
  }
}
