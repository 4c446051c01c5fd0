/**
 * IPv4/IPv6 and netlink sockets at dump time: the per-tree session that
 * reads each TCP, UDP, UDP-Lite, ping, raw or netlink socket through a
 * copy of its fd
 * (pidfd_getfd), decides which established connections have their peer
 * inside the tree, and keeps a copy of each established connection until
 * the dump's outcome is known.
 *
 * Repair mode is a property of the socket, so switching the copy into it
 * switches the target's socket; a cryo killed while a socket is in repair
 * mode would leave it so. It is on only while a connection is read
 * (engine/fds/tcp.ts), and again from just before the tree is killed at
 * the end of a successful dump ({@link InetSocketSession.enterRepairForKill},
 * after the image is in place):
 *
 * - the tree is killed ({@link InetSocketSession.releaseAfterKill}): the
 *   copies are closed in repair mode, which makes the kernel drop the
 *   connection without sending FIN or RST to the peer;
 * - the tree goes on (`leaveRunning`) or the dump fails
 *   ({@link InetSocketSession.releaseRunning}): the copies are closed (repair
 *   mode switched off first and SO_REUSEADDR, which repair mode overrides,
 *   put back, should it be on).
 *
 * Data that reaches a connection after it was read is seen by
 * tcpi_bytes_received (without repair mode) before the manifest is
 * written, and by the receive sequence once the tree is killed.
 *
 * @module
 */

import { AF, closeFd, getsockoptInt, pidfdGetfd, setsockoptInt, SO, SOL } from "../../ffi/net.ts";
import { receiveSequence, setRepair, TCP_STATE, tcpInfo } from "../../ffi/tcp_repair.ts";
import { type TcpDiagState, tcpDiagStates, udpDiagStates } from "../../ffi/inet_diag.ts";
import { CryoError } from "../errors.ts";
import type { FdInfo, InetSocket, SockAddr } from "../model.ts";
import type { Refusals, SupportId } from "../support.ts";
import {
  type Collected,
  formatAddr,
  inetProtoOf,
  IPPROTO_UDPLITE,
  optionProblem,
  pendingProblem,
  REFUSED_PREFIX,
} from "./inet.ts";
import { filterProblem } from "./socket_common.ts";
import { readFilter } from "./socket_filter.ts";
import { multicastGroups, type NamespaceGroups, namespaceGroups } from "./inet_multicast.ts";
import { collectTcp, type RepairGuard, type TcpDumpChoices } from "./tcp.ts";
import type { OutsideConnection } from "./tcp_lock.ts";
import { boundNonLocal, inetQueueBytes } from "./inet_plan.ts";
import { collectUdp } from "./udp.ts";
import { collectOther } from "./inet_other.ts";
import { type DatagramRow, readDatagramRows } from "../proc/net_owners.ts";
import { collectNetlink } from "./netlink.ts";
import { AF_PACKET, collectPacket } from "./packet.ts";
import { type PacketDiag, packetDiags } from "../../ffi/packet_diag.ts";
import { type NetlinkRow, readNetlinkTable } from "../proc/netlink.ts";
import { readSocketOwners } from "../proc/net_owners.ts";
import { type SocketOwner, socketOwner } from "./socket_owner.ts";

/** The inode number of a "socket:[N]" fd target. */
function inodeOf(target: string): number {
  return Number(target.match(/\[(\d+)\]/)?.[1]);
}

/** packet_diag's view of the namespace, or nothing when it cannot be read (each socket is refused then). */
function packetDiagsOrNone(): Map<number, PacketDiag> {
  try {
    return packetDiags();
  } catch {
    return new Map(); // (no packet_diag module: every packet socket refused, "not shown by packet_diag")
  }
}

/** How one socket was read: its fd record, where, and the copy kept of a connection. */
interface Entry {
  pid: number;
  fd: FdInfo;
  where: string;
  /** Copy of an established connection kept open until the dump's outcome is known. */
  repair?: { copy: number; reuseaddr: number; bytesReceived: bigint };
}

/** An address as the other end sees it (v4-mapped IPv6 addresses as IPv4). */
function canonical(a: SockAddr): string {
  const m = a.address.match(/^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/);
  if (!m) return `${a.address}:${a.port}`;
  const hi = parseInt(m[1], 16), lo = parseInt(m[2], 16);
  return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}:${a.port}`;
}

/**
 * Marks `reuseportGroup` on the TCP listeners that share their address and
 * port with another listener of the tree but have SO_REUSEPORT off now: two
 * listeners hold one port only in a SO_REUSEPORT group, so this one had it
 * on when it was bound and cleared it since (the group stays). The restore
 * binds it with the option on and clears it after listen(); bound without
 * it, the second listener's bind failed with EADDRINUSE.
 */
export function markReuseportGroups(sockets: InetSocket[]): void {
  const byAddress = new Map<string, InetSocket[]>();
  for (const s of sockets) {
    if (s.proto !== "tcp" || s.state !== "listen" || !s.local) continue;
    const key = `${s.family}|${s.local.address}|${s.local.port}`;
    byAddress.set(key, [...byAddress.get(key) ?? [], s]);
  }
  for (const group of byAddress.values()) {
    if (group.length < 2) continue;
    for (const s of group) {
      const on = s.options.find((o) => o.level === SOL.SOCKET && o.name === SO.REUSEPORT)?.int;
      if (!on) s.reuseportGroup = true;
    }
  }
}

/** Dump-time handling of every IPv4/IPv6 and netlink socket of a frozen tree. */
export class InetSocketSession {
  /** `--tcp-close`, `--skip-in-flight` (engine/fds/tcp.ts). */
  readonly #tcpChoices: TcpDumpChoices;

  constructor(tcpChoices: TcpDumpChoices = {}) {
    this.#tcpChoices = tcpChoices;
  }

  readonly #entries: Entry[] = [];
  /** Socket inode -> the fd it was read through (a socket is one open file description). */
  readonly #first = new Map<string, FdInfo>();
  /** Fds of other processes holding a socket already read: they get its record in finish(). */
  readonly #followers: FdInfo[] = [];
  readonly #netlinks: Entry[] = [];
  readonly #packets: Entry[] = [];
  /** Every packet socket of the namespace as packet_diag shows it, by inode, read once. */
  #packetDiags?: Map<number, PacketDiag>;
  /** The multicast groups of the tree's network namespace, read at the first socket. */
  #groups?: NamespaceGroups;
  /** Address family -> (inode -> diag state) of established and listening TCP sockets, read once. */
  readonly #diags = new Map<number, Map<number, TcpDiagState>>();
  /** Pid -> sk_uid of its TCP and UDP sockets, by inode, read once. */
  readonly #owners = new Map<number, Map<number, number>>();
  /** Pid -> its /proc/<pid>/net/netlink, by inode, read once. */
  readonly #netlinkTables = new Map<number, Map<number, NetlinkRow>>();

  #diagOf(family: number, target: string): TcpDiagState | undefined {
    let table = this.#diags.get(family);
    if (!table) {
      const states = [
        TCP_STATE.ESTABLISHED,
        TCP_STATE.LISTEN,
        TCP_STATE.FIN_WAIT1,
        TCP_STATE.FIN_WAIT2,
        TCP_STATE.CLOSE_WAIT,
        TCP_STATE.LAST_ACK,
        TCP_STATE.CLOSING,
      ];
      table = tcpDiagStates(family, states.reduce((m, s) => m | (1 << s), 0));
      this.#diags.set(family, table);
    }
    return table.get(Number(target.match(/\[(\d+)\]/)?.[1]));
  }

  /** Address family -> (inode -> diag state) of UDP sockets, read once. */
  readonly #udpDiags = new Map<number, Map<number, TcpDiagState>>();

  #udpShutdownOf(family: number, target: string, protocol?: number): number | undefined {
    const key = family + (protocol ?? 0) * 256;
    let table = this.#udpDiags.get(key);
    if (!table) this.#udpDiags.set(key, table = udpDiagStates(family, protocol));
    return table.get(Number(target.match(/\[(\d+)\]/)?.[1]))?.shutdown;
  }

  /** Pid and kind -> the state and remote address of its ping or raw sockets, by inode, read once. */
  readonly #datagramRows = new Map<string, Map<number, DatagramRow>>();

  #datagramRow(pid: number, kind: "icmp" | "raw", target: string): DatagramRow | undefined {
    const key = `${pid}/${kind}`;
    let table = this.#datagramRows.get(key);
    if (!table) this.#datagramRows.set(key, table = readDatagramRows(pid, kind));
    return table.get(Number(target.match(/\[(\d+)\]/)?.[1]));
  }

  /**
   * Bytes of queued data of the sockets shared by several processes (read
   * so far): whichever process creates one for the tree (their common
   * ancestor, maybe not a holder) carries them in its restore program.
   */
  sharedQueueBytes(): number {
    const shared = new Set(this.#followers.map((f) => f.target));
    return inetQueueBytes([...shared].map((t) => this.#first.get(t)!));
  }

  #ownerRow(pid: number, target: string): number | undefined {
    let table = this.#owners.get(pid);
    if (!table) {
      table = readSocketOwners(pid);
      this.#owners.set(pid, table);
    }
    return table.get(Number(target.match(/\[(\d+)\]/)?.[1]));
  }

  #netlinkRow(pid: number, target: string): NetlinkRow | undefined {
    let table = this.#netlinkTables.get(pid);
    if (!table) {
      table = readNetlinkTable(pid);
      this.#netlinkTables.set(pid, table);
    }
    return table.get(Number(target.match(/\[(\d+)\]/)?.[1]));
  }

  /**
   * Reads every socket fd of process `pid` (skipping duplicates of an fd
   * already read): fills `inet` of TCP, UDP, UDP-Lite, ping and raw sockets and `netlink` of
   * route netlink sockets, and marks what is refused (`restore` = "inet-refused:<row id>", with the reason in `extra`).
   */
  collect(
    pid: number,
    fds: FdInfo[],
    /** The guard of the repair-mode read of the connection of fd `fd` (engine/fds/tcp.ts). */
    guardOf?: (fd: number) => RepairGuard,
  ): void {
    for (const f of fds) {
      // On fds 0-2 too ("inherit" until read): an inetd-style service's connection is its stdio.
      if (f.kind !== "socket" || f.sameAs !== undefined) continue;
      if (this.#first.has(f.target)) {
        // Shared with a process read before (after fork): one socket, read once.
        this.#followers.push(f);
        continue;
      }
      this.#first.set(f.target, f);
      this.#collectOne(pid, f, guardOf?.(f.fd));
    }
  }

  #collectOne(pid: number, f: FdInfo, guard?: RepairGuard): void {
    // A socket only a queued message holds is read through cryo's own copy (unix_scm.ts).
    const where = pid === Deno.pid
      ? `a socket in flight in a unix socket's queue (${f.target})`
      : `process ${pid} fd ${f.fd} (${f.target})`;
    try {
      this.#read(pid, f, where, guard);
    } catch (e) {
      if (e instanceof CryoError) throw e;
      throw new CryoError(`${where}: reading the socket failed: ${(e as Error).message}`);
    }
  }

  #read(pid: number, f: FdInfo, where: string, guard?: RepairGuard): void {
    const copy = pidfdGetfd(pid, f.fd);
    let keep = false;
    let owner: SocketOwner | undefined;
    try {
      const domain = getsockoptInt(copy, SOL.SOCKET, SO.DOMAIN);
      const type = getsockoptInt(copy, SOL.SOCKET, SO.TYPE);
      const protocol = getsockoptInt(copy, SOL.SOCKET, SO.PROTOCOL);
      if (
        domain === AF.NETLINK || domain === AF.INET || domain === AF.INET6 || domain === AF_PACKET
      ) {
        // The socket's owner (sk_uid, its inode's owner): from its creator's fs ids.
        owner = socketOwner(pid, f.fd);
        const skUid = domain === AF.NETLINK ? undefined : this.#ownerRow(pid, f.target);
        if (skUid !== undefined && skUid !== (owner?.uid ?? 0)) {
          return this.#refuse(
            f,
            "socket.inet-owner-split",
            `owned by uid ${skUid}, its fd by uid ${owner?.uid ?? 0}`,
          );
        }
      }
      let filter: InetSocket["filter"];
      if (domain === AF.NETLINK) {
        const problem = filterProblem(copy);
        if (problem) return this.#refuse(f, "socket.filter", problem);
      } else if (domain === AF.INET || domain === AF.INET6 || domain === AF_PACKET) {
        const read = readFilter(copy);
        if ("problem" in read) return this.#refuse(f, "socket.filter", read.problem);
        filter = read.filter;
      }
      if (domain === AF.NETLINK) {
        const row = this.#netlinkRow(pid, f.target);
        const got = collectNetlink(copy, type ?? 0, protocol ?? 0, row);
        if ("refused" in got) return this.#refuse(f, got.refused, got.detail);
        f.netlink = { ...got.netlink, ...(owner ? { owner } : {}) };
        f.restore = "netlink";
        this.#netlinks.push({ pid, fd: f, where });
        return;
      }
      if (domain === AF_PACKET) {
        const diag = (this.#packetDiags ??= packetDiagsOrNone()).get(inodeOf(f.target));
        const got = collectPacket(copy, type ?? 0, diag, { pid, ino: inodeOf(f.target) });
        if ("refused" in got) return this.#refuse(f, got.refused, got.detail);
        f.packet = { ...got.packet, ...(owner ? { owner } : {}), ...(filter ? { filter } : {}) };
        f.restore = "packet";
        this.#packets.push({ pid, fd: f, where });
        return;
      }
      if (domain !== AF.INET && domain !== AF.INET6) return; // another module's kind
      const family = domain === AF.INET ? "ipv4" : "ipv6";
      const groups = multicastGroups(copy, family, this.#groups ??= namespaceGroups(pid));
      if (groups.length) return this.#refuse(f, "socket.inet-multicast", groups.join(", "));
      const unsaved = optionProblem(copy);
      if (unsaved) return this.#refuse(f, "socket.inet-option", unsaved);
      const proto = inetProtoOf(family, type, protocol);
      if (proto === null) {
        return this.#refuse(f, "socket.inet-other", `type ${type} protocol ${protocol}`);
      }
      const pending = pendingProblem(copy, proto);
      if (pending) return this.#refuse(f, "socket.inet-pending", pending);
      let got: Collected;
      if (proto === "tcp") {
        // Signature keys: the kernel shows that they exist to CAP_NET_ADMIN only.
        if (this.#diagOf(domain, f.target)?.md5) {
          return this.#refuse(f, "socket.tcp-md5", "it has TCP MD5 signature keys (TCP_MD5SIG)");
        }
        got = collectTcp(
          copy,
          family,
          () => this.#diagOf(domain, f.target)?.shutdown,
          guard,
          this.#tcpChoices,
        );
      } else if (proto === "udp") {
        got = collectUdp(copy, family, () => this.#udpShutdownOf(domain, f.target));
      } else {
        const shutdownOf = () =>
          proto === "udplite" ? this.#udpShutdownOf(domain, f.target, IPPROTO_UDPLITE) : undefined;
        const row = proto === "udplite"
          ? undefined
          : this.#datagramRow(pid, proto === "ping" ? "icmp" : "raw", f.target);
        got = collectOther(copy, family, proto, protocol ?? 0, shutdownOf, row);
      }
      if ("refused" in got) return this.#refuse(f, got.refused, got.detail);
      f.inet = { ...got.inet, ...(owner ? { owner } : {}), ...(filter ? { filter } : {}) };
      if (!got.repairCopy && boundNonLocal(f.inet)) f.inet.nonLocal = true;
      f.restore = got.inet.proto;
      const entry: Entry = { pid, fd: f, where };
      if (got.repairCopy) {
        keep = true;
        const reuse = got.inet.options.find((o) =>
          o.name === SO.REUSEADDR && o.level === SOL.SOCKET
        );
        entry.repair = { copy, reuseaddr: reuse?.int ?? 0, bytesReceived: got.bytesReceived ?? 0n };
      }
      this.#entries.push(entry);
    } finally {
      if (!keep) closeFd(copy);
    }
  }

  #refuse(f: FdInfo, id: SupportId, detail?: string): void {
    f.restore = `${REFUSED_PREFIX}${id}`;
    if (detail) f.extra["refused"] = detail;
  }

  /** Where a connection is, for messages: "process P fd N (tcp A -> B)". */
  static describe(pid: number, f: FdInfo): string {
    const s = f.inet!;
    // A socket only a queued message holds (engine/fds/unix_scm.ts) was read through cryo's copy.
    const where = f.fd < 0
      ? "a socket in flight in a unix socket's queue"
      : `process ${pid} fd ${f.fd}`;
    return `${where} (${s.proto} ${formatAddr(s.local)} -> ${formatAddr(s.peer)})`;
  }

  /**
   * Once every process is collected: gives the fds of the other holders of
   * a shared socket its record (restore creates it once, engine/fds/shared.ts),
   * and decides for each established connection whether its peer is in the
   * tree; one to the outside is reported as "socket.tcp-established" (an opt-in).
   */
  finish(refusals: Refusals): void {
    for (const f of this.#followers) {
      const first = this.#first.get(f.target)!;
      f.restore = first.restore;
      if (first.extra["refused"] !== undefined) f.extra["refused"] = first.extra["refused"];
      if (first.inet) f.inet = first.inet;
      if (first.netlink) f.netlink = first.netlink;
      if (first.packet) f.packet = first.packet;
    }
    const holders = (f: FdInfo) => [f, ...this.#followers.filter((x) => x.target === f.target)];
    const ends = new Set<string>();
    for (const e of this.#entries) {
      const s = e.fd.inet!;
      if (s.tcp && s.local && s.peer) ends.add(`${canonical(s.local)}|${canonical(s.peer)}`);
    }
    markReuseportGroups(this.#entries.map((e) => e.fd.inet!));
    for (const e of this.#packets) {
      refusals.use("socket.packet", e.where);
      if (e.fd.packet?.ring) refusals.use("socket.packet-ring-mapped", e.where);
      if (e.fd.packet?.owner) refusals.use("socket.inet-owner", e.where);
      if (holders(e.fd).length > 1) refusals.use("socket.inet-shared", e.where);
    }
    for (const e of this.#netlinks) {
      refusals.use("socket.netlink-route", e.where);
      if (e.fd.netlink?.owner) refusals.use("socket.inet-owner", e.where);
      if (holders(e.fd).length > 1) refusals.use("socket.inet-shared", e.where);
    }
    for (const e of this.#entries) {
      const s = e.fd.inet!;
      const all = holders(e.fd);
      if (all.every((f) => f.excluded)) {
        // Left out by a policy: the processes close it like any fd when they die.
        this.#endRepair(e);
        continue;
      }
      if (all.length > 1) refusals.use("socket.inet-shared", e.where);
      if (s.owner) refusals.use("socket.inet-owner", e.where);
      if (s.proto === "tcp") {
        if (s.state === "listen") refusals.use("socket.tcp-listen", e.where);
        else if (s.state === "closed") refusals.use("socket.tcp-closed", e.where);
      } else {
        refusals.use(
          s.proto === "udp"
            ? "socket.udp"
            : s.proto === "ping"
            ? "socket.ping"
            : `socket.${s.proto}`,
          e.where,
        );
      }
      if (s.datagrams?.length) refusals.use("socket.udp-queued", e.where);
      if (s.filter) refusals.use("socket.inet-filter", e.where);
      if (!s.tcp || !s.local || !s.peer) continue;
      s.tcp.peerInTree = ends.has(`${canonical(s.peer)}|${canonical(s.local)}`);
      const where = InetSocketSession.describe(e.pid, e.fd);
      refusals.use(s.tcp.peerInTree ? "socket.tcp-tree" : "socket.tcp-established", where);
    }
  }

  /**
   * The established connections to peers outside the tree that the dump
   * keeps (for the network lock, engine/fds/tcp_lock.ts), once finished.
   */
  outsideConnections(): OutsideConnection[] {
    const out: OutsideConnection[] = [];
    for (const e of this.#entries) {
      const s = e.fd.inet;
      if (!e.repair || !s?.tcp || s.tcp.peerInTree || !s.local || !s.peer) continue;
      out.push({ family: s.family, local: s.local, peer: s.peer });
    }
    return out;
  }

  /**
   * Throws when data reached a connection after its receive queue was
   * read (that data would be lost): the dump then fails and the tree goes on.
   */
  checkUnchanged(): void {
    for (const e of this.#entries) {
      if (!e.repair || !e.fd.inet?.tcp) continue;
      if (tcpInfo(e.repair.copy).bytesReceived !== e.repair.bytesReceived) {
        throw new CryoError(
          `${InetSocketSession.describe(e.pid, e.fd)} received data while the tree was being ` +
            `checkpointed; nothing was written, try again`,
        );
      }
    }
  }

  /**
   * The image is in place and the tree is about to be killed: switch the
   * connections into repair mode, so that closing them sends nothing.
   */
  enterRepairForKill(): void {
    for (const e of this.#entries) if (e.repair) setRepair(e.repair.copy, true);
  }

  /**
   * The tree was killed: close the copies in repair mode (nothing is sent to
   * the peers). A connection that received data after it was read (the
   * kernel acknowledged bytes the image does not have) is instead taken out
   * of repair mode first, so that closing it resets the peer; these are
   * returned, and the caller must not keep the image.
   */
  releaseAfterKill(): string[] {
    const late: string[] = [];
    for (const e of this.#entries) {
      if (!e.repair) continue;
      const t = e.fd.inet?.tcp;
      if (t && receiveSequence(e.repair.copy) !== t.rcvSeq) {
        late.push(InetSocketSession.describe(e.pid, e.fd));
        this.#endRepair(e);
        continue;
      }
      closeFd(e.repair.copy);
      delete e.repair;
    }
    return late;
  }

  /** The tree goes on: close the copies (repair mode off and SO_REUSEADDR put back, should it be on). */
  releaseRunning(): void {
    for (const e of this.#entries) this.#endRepair(e);
  }

  #endRepair(e: Entry): void {
    if (!e.repair) return;
    const fd = e.repair.copy;
    try {
      setRepair(fd, false);
      setsockoptInt(fd, SOL.SOCKET, SO.REUSEADDR, e.repair.reuseaddr);
    } catch { /* the socket is gone with its process */ }
    closeFd(fd);
    delete e.repair;
  }
}
