/**
 * Unix sockets: stream, datagram and seqpacket; socketpairs, path-bound and
 * abstract names, listeners with their backlog and the connections not
 * accepted yet, accepted connections, queued bytes and datagrams, shutdown
 * state and socket options.
 *
 * **Dump** (`collectUnixSockets`): sock_diag (ffi/sock_diag.ts) gives each
 * socket's type, state, name, socket file, peer, pending connections,
 * backlog and shutdown bits; a copy of the target's fd (pidfd_getfd) gives
 * its options and, peeked without being consumed, its receive queue.
 *
 * **Restore** (`planUnixSockets`, `emitUnixCreation`): the sockets linked
 * to each other (peers, a listener and its clients, datagram senders) form
 * a group, created by the lowest common ancestor of their holders before
 * it forks, at transfer fd numbers (engine/fds/transfer.ts) that each
 * holder takes like an inherited fd. In a group: bound sockets and
 * listeners first (a stale socket file is unlinked, the new one gets the
 * old mode and owner), socketpairs, accepted connections (the client
 * connects, the listener accepts), connections not accepted yet (the
 * client connects, in queue order), datagrams sent again by their senders
 * (on a datagram socket whose peer was closed: by the other end of a
 * socketpair, closed afterwards),
 * datagram connects, stream and seqpacket queues sent again by the peer,
 * shutdown, options. Whatever cannot be re-created exactly is refused by
 * name (the `socket.unix-*` rows of engine/support.ts).
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { Errno } from "../../ffi/errno.ts";
import { cloneArgs } from "../../ffi/structs.ts";
import { cloneWithTid } from "../program/clone.ts";
import { dumpUnixSockets, type UnixDiag } from "../../ffi/sock_diag.ts";
import { withTargetFd } from "../../ffi/pidfd.ts";
import { hasPendingError } from "../../ffi/socket.ts";
import { getsockoptBytes, getsockoptInt, peerName, SOL, urgentPending } from "../../ffi/net.ts";

const SOL_SOCKET = SOL.SOCKET;
import { decodeBase64, encodeBase64 } from "../base64.ts";
import type {
  FdInfo,
  ProcessImage,
  QueuedMessage,
  SocketImage,
  UnixSocketImage,
} from "../model.ts";
import type { Refusals, SupportId } from "../support.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";
import {
  collectQueue,
  collectSocketOptions,
  emitRefill,
  emitRefillBuffer,
} from "./socket_common.ts";
import { emitSocketOptions, filterProblem } from "./socket_common.ts";
import { creatorOf, transferBase, treeParents } from "./transfer.ts";
import type { FdSource } from "./types.ts";
import { readProcLink } from "../proc/io.ts";
import { dirname } from "../path.ts";
import { RestoreError } from "../errors.ts";
import { emitOwnerIds, emitRootIds, type SocketOwner, socketOwner } from "./socket_owner.ts";
import { type CarriedFd, carriedFdNumbers, carriedSocket } from "./unix_scm.ts";
import type { SharedPlan } from "./shared.ts";

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SO_TYPE = 3;
const SO_PEERCRED = 17;
const SO_PEERGROUPS = 59;
/** Most supplementary groups of a peer cryo reads (SO_PEERGROUPS). */
const MAX_PEER_GROUPS = 1024;
const SO_PASSCRED = 16;
const SO_PROTOCOL = 38;
const SO_DOMAIN = 39;
const TCP_ESTABLISHED = 1;
const TCP_LISTEN = 10;

const TYPE_NAMES: Record<number, string> = { 1: "stream", 2: "datagram", 5: "seqpacket" };

/** Inode of a socket fd from its link target "socket:[N]". */
function inodeOf(target: string): number | undefined {
  const m = target.match(/^socket:\[(\d+)\]$/);
  return m ? Number(m[1]) : undefined;
}

/** The name bytes as text (path names without their NUL; abstract ones with a leading "@"). */
export function unixNameText(name: string | undefined): string {
  if (!name) return "(unnamed)";
  const b = decodeBase64(name);
  if (b[0] === 0) return `@${new TextDecoder().decode(b.subarray(1))}`;
  const end = b.indexOf(0);
  return new TextDecoder().decode(end < 0 ? b : b.subarray(0, end));
}

/** One line about a unix socket for `show`: type, state, name, peer, queue, shutdown. */
export function describeUnixSocket(u: UnixSocketImage, type: number): string {
  const parts = [`unix ${TYPE_NAMES[type] ?? `type ${type}`}`];
  if (u.listen) {
    parts.push(`listening (backlog ${u.listen.backlog}, ${u.listen.pending.length} pending)`);
  }
  if (u.name) parts.push(`name ${unixNameText(u.name)}`);
  if (u.peer) parts.push(`peer socket:[${u.peer}]${u.peerClosed ? " (closed)" : ""}`);
  else if (u.peerName) parts.push(`peer ${unixNameText(u.peerName)}`);
  else if (u.peerClosed) parts.push("peer closed");
  if (u.queue.length) {
    const bytes = u.queue.reduce((n, m) => n + decodeBase64(m.data).length, 0);
    parts.push(`${u.queue.length} message(s), ${bytes} bytes queued`);
    const fds = u.queue.reduce((n, m) => n + (m.fds?.length ?? 0), 0);
    if (fds) parts.push(`${fds} fd(s) in flight`);
  }
  if (u.shutdown) parts.push(`shutdown ${["", "rd", "wr", "rdwr"][u.shutdown & 3]}`);
  return parts.join(", ");
}

/** What is wrong with a unix socket's description in an image, if anything. */
function malformed(u: UnixSocketImage): string | undefined {
  const len = (b64: string | undefined) => b64 === undefined ? 0 : decodeBase64(b64).length;
  if (len(u.name) > 108 || len(u.peerName) > 108) return "an address longer than sun_path";
  if (u.file && (!u.file.dir.startsWith("/") || u.file.dir.includes("\0"))) {
    return "a socket file directory that is not an absolute path";
  }
  if (isPathName(u.name) && !u.file) return "a path name without its socket file";
  if (u.file?.removedDirs?.some((d) => !d.startsWith("/") || d.includes("\0"))) {
    return "a removed directory that is not an absolute path";
  }
  if (u.listen && (u.listen.backlog < 0 || u.listen.backlog > 1 << 20)) return "a bad backlog";
  return undefined;
}

/** The low 32 bits of an inode number (sock_diag reports inodes as u32). */
function low32(ino: number): number {
  return Number(BigInt(ino) & 0xffffffffn);
}

function isPathName(name: string | undefined): boolean {
  return !!name && decodeBase64(name)[0] !== 0;
}

function isAbstract(name: string | undefined): boolean {
  return !!name && decodeBase64(name)[0] === 0;
}

/**
 * Adds the socket state to every unix socket fd of frozen process `pid`,
 * those on fds 0-2 too (the tree plan decides whether they lead out of the
 * tree, to be re-attached to stdio, or are re-created). What only the dump
 * can see and that cannot be restored (fds in flight, bytes on a pending
 * connection, a replaced socket file, urgent data) is recorded in the
 * socket's `refused` for the tree plan to refuse; a socket sock_diag does
 * not know is reported to `refusals` at once.
 */
export function collectUnixSockets(pid: number, fds: FdInfo[], refusals: Refusals): void {
  let diag: Map<number, UnixDiag> | undefined;
  const diagOf = () => diag ??= dumpUnixSockets();
  for (const f of fds) {
    if (f.kind !== "socket" || f.sameAs !== undefined) continue;
    const ino = inodeOf(f.target);
    if (ino === undefined) continue;
    const socket = withTargetFd(
      pid,
      f.fd,
      (copy) => collectOne(pid, f, ino, copy, diagOf, refusals),
    );
    if (socket) f.socket = socket;
  }
}

/** The state of unix socket `f` (inode `ino`) from its copy `copy`; undefined for other families. */
function collectOne(
  pid: number,
  f: FdInfo,
  ino: number,
  copy: number,
  diagOf: () => Map<number, UnixDiag>,
  refusals: Refusals,
): SocketImage | undefined {
  const family = getsockoptInt(copy, SOL_SOCKET, SO_DOMAIN) ?? -1;
  if (family !== AF_UNIX) return undefined; // another family's module describes it
  const type = getsockoptInt(copy, SOL_SOCKET, SO_TYPE) ?? 0;
  const protocol = getsockoptInt(copy, SOL_SOCKET, SO_PROTOCOL) ?? 0;
  const diag = diagOf();
  const d = diag.get(ino);
  if (!d) {
    // A socket on 0-2 leading out stays what it was: re-attached to stdio.
    const where = `process ${pid} fd ${f.fd} (${f.target})`;
    if (f.restore !== "inherit") {
      refusals.use("socket.unix-other", where, "sock_diag does not know it");
    }
    return undefined;
  }
  const u: UnixSocketImage = { ino, state: d.state, shutdown: d.shutdown, queue: [] };
  const refuse = (id: SupportId, detail: string) => u.refused ??= { id, detail };
  if (d.name) {
    u.name = encodeBase64(d.name);
    if (isPathName(u.name)) {
      const file = socketFile(pid, d, u.name, diag);
      if (typeof file === "string") refuse("socket.unix-other", file);
      else u.file = file;
    }
  }
  if (d.state === TCP_LISTEN) {
    u.listen = { backlog: d.rqlen?.wqueue ?? 0, pending: d.icons ?? [] };
  } else if (d.peer) {
    u.peer = d.peer;
    const peer = diag.get(d.peer);
    if (!peer) u.peerClosed = true;
    else if (peer.name) u.peerName = encodeBase64(peer.name);
  } else if (d.state === TCP_ESTABLISHED && type !== SOCK_DGRAM) {
    // No peer inode: the peer waits in a listener's queue (it has no inode
    // yet), or it was closed (its inode is gone). (A datagram socket others
    // connected to shows as established too, without a peer of its own.)
    const listener = [...diag.values()].find((l) => l.icons?.includes(ino));
    if (!listener) u.peerClosed = true;
    else if (listener.name) u.peerName = encodeBase64(listener.name);
    if (listener && (d.rqlen?.wqueue ?? 0) > 0) {
      refuse(
        "socket.unix-pending-data",
        `${d.rqlen!.wqueue} bytes of buffers sent to ${unixNameText(u.peerName)}`,
      );
    }
  } else if (type === SOCK_DGRAM && peerName(copy) !== null) {
    // Connected (getpeername answers) to a peer sock_diag no longer names: one that was
    // closed (a datagram socketpair's state stays "unconnected").
    u.peerClosed = true;
  }
  const filter = filterProblem(copy);
  if (filter) refuse("socket.filter", filter);
  if (hasPendingError(copy)) u.pendingError = true;
  if (u.peerClosed) {
    // A closed peer keeps its address: getpeername() still returns it.
    const name = peerName(copy)?.subarray(2) ?? new Uint8Array(); // past sun_family
    if (name.length) u.peerName = encodeBase64(name);
  }
  const cred = getsockoptBytes(copy, SOL_SOCKET, SO_PEERCRED, 12);
  const credPid = typeof cred !== "number"
    ? new DataView(cred.buffer, cred.byteOffset).getInt32(0, true)
    : 0;
  if (credPid > 0) {
    u.peerCredPid = credPid;
    // Its supplementary groups come with the peer credentials (restored with them).
    const groups = getsockoptBytes(copy, SOL_SOCKET, SO_PEERGROUPS, MAX_PEER_GROUPS * 4);
    if (typeof groups === "number") {
      refuse("socket.unix-other", `its peer's supplementary groups (SO_PEERGROUPS) cannot be read`);
    } else {
      const gv = new DataView(groups.buffer, groups.byteOffset, groups.length);
      u.peerGroups = Array.from({ length: groups.length / 4 }, (_, i) => gv.getUint32(i * 4, true));
    }
  }
  // Its owner and peer credentials come back from the ids its group is made
  // with (socket_owner.ts): refused when they are not the owner's.
  const owner = socketOwner(pid, f.fd);
  if (owner) u.creator = owner;
  const ids: string[] = [];
  if (d.uid && d.uid !== owner?.uid) ids.push(`owner uid ${d.uid} (its fd's: ${owner?.uid ?? 0})`);
  if (typeof cred !== "number") {
    const cv = new DataView(cred.buffer, cred.byteOffset);
    const [cu, cg] = [cv.getUint32(4, true), cv.getUint32(8, true)];
    if (credPid > 0 && (cu !== (owner?.uid ?? 0) || cg !== (owner?.gid ?? 0))) {
      ids.push(`peer credentials ${cu}:${cg}`);
    }
  }
  // A datagram socket with an error pending is refused; reading its queue to
  // the end would clear the error.
  if (d.state !== TCP_LISTEN && !(u.pendingError && type === SOCK_DGRAM)) {
    // Stream and seqpacket queues are read up to what sock_diag counts, never past.
    const q = collectQueue(
      copy,
      type === SOCK_STREAM,
      type === SOCK_DGRAM ? undefined : d.rqlen?.rqueue,
      (d.shutdown & 1) !== 0,
    );
    u.queue = q.queue;
    if (q.nonRootCreds) ids.push(`queued credentials ${q.nonRootCreds}`);
    if (q.problem) refuse("socket.unix-scm", q.problem);
    const read = q.queue.reduce((n, m) => n + decodeBase64(m.data).length, 0);
    if (type === SOCK_STREAM && urgentPending(copy)) {
      refuse("socket.unix-other", "urgent (MSG_OOB) data in its receive queue");
    } else if (type !== SOCK_DGRAM && !q.problem && read !== (d.rqlen?.rqueue ?? read)) {
      const total = d.rqlen!.rqueue;
      refuse("socket.unix-other", `${read} of the ${total} bytes of its queue could be read`);
    }
  }
  if (ids.length) u.nonRootIds = ids.join(", ");
  return {
    family,
    type,
    protocol,
    options: collectSocketOptions(copy, family, type),
    unix: u,
  };
}

/** Where a path-bound socket's file is, with its mode and owner; or why it cannot be re-created. */
function socketFile(
  pid: number,
  d: UnixDiag,
  name: string,
  diag: ReadonlyMap<number, UnixDiag>,
): UnixSocketImage["file"] | string {
  const path = unixNameText(name);
  const dir = path.startsWith("/") ? "/" : readProcLink(pid, "cwd");
  const full = path.startsWith("/") ? path : `${dir}/${path}`;
  let st: Deno.FileInfo;
  try {
    st = Deno.lstatSync(full);
  } catch {
    // Renamed in its directory after the bind (the file is bound again at the name, then
    // renamed), or removed (bound again, then removed again).
    const renamed = d.vfs ? renamedSocketFile(dirname(full), d.vfs.ino) : undefined;
    if (!renamed && !exists(dirname(full))) {
      // Removed with its directory (and maybe more of its parents): made again around the bind.
      const removedDirs: string[] = [];
      for (let at = dirname(full); at !== "/" && !exists(at); at = dirname(at)) {
        removedDirs.unshift(at);
      }
      if (!exists(dir) || !Deno.lstatSync(dirname(removedDirs[0])).isDirectory) {
        return `its socket file ${full} was removed with its directory ${dirname(full)}, ` +
          "which is not under a directory that exists";
      }
      return { dir, removedDirs };
    }
    if (!renamed) return { dir };
    return { dir, ...fileOwner(renamed.st), renamed: renamed.path };
  }
  if (!d.vfs || low32(st.ino ?? 0) !== d.vfs.ino) {
    // Another socket bound there since (its file removed first): the planner orders the two.
    const now = st.isSocket
      ? [...diag.entries()].find(([, o]) => o.vfs?.ino === low32(st.ino ?? 0))?.[0]
      : undefined;
    if (d.vfs && now !== undefined) return { dir, replacedBy: now };
    return `its socket file ${full} was replaced by another file`;
  }
  return { dir, ...fileOwner(st) };
}

/** Whether `path` names anything (a symbolic link counts). */
function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function fileOwner(st: Deno.FileInfo): { mode: number; uid: number; gid: number } {
  return { mode: (st.mode ?? 0) & 0o7777, uid: st.uid ?? 0, gid: st.gid ?? 0 };
}

/** The socket file with inode `ino` (low 32 bits, as sock_diag gives it) in `dir`, if any. */
function renamedSocketFile(
  dir: string,
  ino: number,
): { path: string; st: Deno.FileInfo } | undefined {
  try {
    for (const e of Deno.readDirSync(dir)) {
      const path = dir === "/" ? `/${e.name}` : `${dir}/${e.name}`;
      try {
        const st = Deno.lstatSync(path);
        if (st.isSocket && low32(st.ino ?? 0) === ino) return { path, st };
      } catch { /* gone meanwhile */ }
    }
  } catch { /* an unreadable directory: taken as removed */ }
  return undefined;
}

// ---------------------------------------------------------------- restore

/**
 * The paths of the file of unix socket fd `f` if it is bound to a path
 * (the bound name, and where it was renamed to); none for any other fd.
 */
export function socketFilePaths(f: FdInfo): string[] {
  const u = f.socket?.unix;
  if (!u?.name || !u.file || f.excluded || !isPathName(u.name)) return [];
  const name = unixNameText(u.name);
  const bound = name.startsWith("/") ? name : `${u.file.dir}/${name}`;
  return u.file.renamed ? [bound, u.file.renamed] : [bound];
}

/**
 * Restore pre-flight: the path of each path-bound socket of the tree is
 * free or a stale socket file (which is unlinked to bind again), not
 * another kind of file and not the file of a live socket (found with
 * sock_diag by its inode, without touching that socket).
 */
export function checkUnixNamesFree(processes: readonly ProcessImage[]): void {
  let live: Set<number> | undefined;
  const seen = new Set<string>();
  for (const p of processes) {
    for (const f of p.fds) {
      const removed = f.excluded ? undefined : f.socket?.unix?.file?.removedDirs?.[0];
      if (removed !== undefined && exists(removed)) {
        throw new RestoreError(
          `cannot restore: ${removed}, removed with the socket file of process ${p.pid} fd ${f.fd}, exists again (its socket is bound there for a moment)`,
        );
      }
      for (const path of socketFilePaths(f)) {
        if (seen.has(path)) continue;
        seen.add(path);
        let st: Deno.FileInfo;
        try {
          st = Deno.lstatSync(path);
        } catch {
          continue; // free
        }
        // Only a stale socket file is ever unlinked to bind again.
        if (!st.isSocket) {
          throw new RestoreError(
            `cannot restore: ${path} (process ${p.pid} fd ${f.fd}) exists and is not a socket file`,
          );
        }
        const ino = st.ino ?? 0;
        live ??= new Set([...dumpUnixSockets().values()].flatMap((d) => d.vfs ? [d.vfs.ino] : []));
        if (live.has(low32(ino))) {
          throw new RestoreError(
            `cannot restore: ${path} (process ${p.pid} fd ${f.fd}) is bound by a live socket`,
          );
        }
      }
    }
  }
}

/** One unix socket of the tree being planned. */
interface Sock {
  ino: number;
  s: SocketImage;
  u: UnixSocketImage;
  holders: Set<number>;
  where: string;
  /**
   * A listener whose peer credentials name a process that is gone (it
   * called listen(), forked the daemon holding the socket and exited): the
   * pid of the short-lived helper that calls listen() again at restore.
   */
  credHelper?: number;
  /** How the socket is made (decided by the planner). */
  role?:
    | "plain"
    | "listener"
    | "pair"
    | "accepted"
    | "client"
    | "pending"
    | "peer-closed"
    | "external"
    | "dgram-connect";
  /** Transfer fd number. */
  fd?: number;
}

/** The unix sockets of a tree: who creates what, at which transfer fd. */
export interface UnixTreePlan {
  /** Transfer fd of each socket inode (absent: refused). */
  transfer: Map<number, number>;
  /** Ops each creator runs before it forks. */
  steps: Map<number, ((p: ProgramBuilder, scratchSlot: number, slotsAddress: bigint) => void)[]>;
  /** Sockets refused (their lines are in the Refusals already). */
  refused: Set<number>;
  /** Highest transfer fd used (0 when none). */
  maxFd: number;
  /** Bytes of queued data the creators send again (for sizing their programs). */
  dataBytes: number;
}

/**
 * Plans every unix socket of `processes`: which process creates it (the
 * lowest common ancestor of its group's holders), at which transfer fd
 * (from `firstFd` up), and the ops. Reports what cannot be re-created
 * exactly to `refusals` (and what needs an opt-in not given).
 */
export function planUnixSockets(
  processes: readonly ProcessImage[],
  firstFd: number,
  refusals: Refusals,
  /** The tree's shared plan: where the descriptions queued messages carry are (unix_scm.ts). */
  shared?: SharedPlan,
): UnixTreePlan {
  const carried = carriedFdNumbers(processes, shared);
  const byIno = new Map<number, Sock>();
  // A socket on fds 0-2 is re-created only when its peer is in the tree too;
  // otherwise it leads out, and is re-attached to the restorer's stdio.
  const held = new Set<number>();
  const excluded = new Set<number>();
  for (const p of processes) {
    for (const f of p.fds) {
      if (f.socket?.unix) (f.excluded ? excluded : held).add(f.socket.unix.ino);
    }
  }
  // A peer a policy left out is restored closed: as if it had been closed.
  const peerGone = (u: UnixSocketImage) =>
    !!u.peerClosed || (u.peer !== undefined && excluded.has(u.peer) && !held.has(u.peer));
  for (const p of processes) {
    for (const f of p.fds) {
      const u = f.socket?.unix;
      if (!u || f.excluded) continue;
      if (f.restore === "inherit" && (u.peer === undefined || !held.has(u.peer))) continue;
      const s = byIno.get(u.ino) ?? {
        ino: u.ino,
        s: f.socket!,
        u,
        holders: new Set<number>(),
        where: `process ${p.pid} fd ${f.fd} (${f.target})`,
      };
      s.holders.add(p.pid);
      byIno.set(u.ino, s);
    }
  }
  // Unix sockets in flight join the group of the socket whose queue holds them (unix_scm.ts).
  const carriedLinks: [number, number][] = [];
  for (const s of [...byIno.values()]) {
    for (const c of s.u.queue.flatMap((m) => m.fds ?? [])) {
      const ino = carriedSocket(processes, c);
      if (ino === undefined) continue;
      carriedLinks.push([s.ino, ino]);
      const u = c.file?.socket?.unix;
      if (!u || byIno.has(ino)) continue;
      held.add(ino);
      byIno.set(ino, {
        ino,
        s: c.file!.socket!,
        u,
        holders: new Set(s.holders),
        where: `a socket in flight (socket:[${ino}]) in ${s.where}`,
      });
    }
  }
  // Dups of a socket fd (sameAs) are held by their base fd's process already.
  const plan: UnixTreePlan = {
    transfer: new Map(),
    steps: new Map(),
    refused: new Set(),
    maxFd: 0,
    dataBytes: 0,
  };
  if (byIno.size === 0) return plan;
  const socks = [...byIno.values()];
  const listenerByName = new Map<string, Sock>();
  for (const s of socks) if (s.u.listen && s.u.name) listenerByName.set(s.u.name, s);
  const byName = new Map<string, Sock>();
  for (const s of socks) if (s.u.name && !s.u.listen) byName.set(s.u.name, s);
  const pendingOf = new Map<number, Sock>();
  for (const l of socks) for (const c of l.u.listen?.pending ?? []) pendingOf.set(c, l);

  const refuse = (s: Sock, id: SupportId, detail?: string): boolean => {
    if (refusals.use(id, s.where, detail)) return false;
    plan.refused.add(s.ino);
    return true;
  };
  const isAccepted = (s: Sock) =>
    !!s.u.name && !s.u.listen && listenerByName.has(s.u.name) &&
    s.u.peer !== undefined && byIno.has(s.u.peer);

  // Union of the sockets that must be made together.
  const group = new Map<number, number>();
  const find = (x: number): number => {
    let r = x;
    while (group.get(r) !== undefined && group.get(r) !== r) r = group.get(r)!;
    group.set(x, r);
    return r;
  };
  const union = (a: number, b: number) => group.set(find(a), find(b));
  for (const s of socks) group.set(s.ino, s.ino);
  for (const [a, b] of carriedLinks) if (byIno.has(b)) union(a, b);

  for (const s of socks) {
    const u = s.u;
    if (u.refused) {
      refuse(s, u.refused.id as SupportId, u.refused.detail);
      continue;
    }
    const bad = malformed(u);
    if (bad) {
      refuse(s, "socket.unix-other", `a malformed image: ${bad}`);
      continue;
    }
    const noFds = u.queue.map((m) => carried.get(m)).find((c) => typeof c === "string");
    if (noFds) {
      refuse(s, "socket.unix-scm", noFds);
      continue;
    }
    const lost = u.queue.flatMap((m) => m.fds ?? []).map((c) => carriedSocket(processes, c))
      .find((ino) => ino !== undefined && !byIno.has(ino));
    if (lost !== undefined) {
      refuse(s, "socket.unix-scm", `the socket:[${lost}] it carries is not re-created`);
      continue;
    }
    if (u.pendingError && (s.s.type === SOCK_DGRAM || !peerGone(u))) {
      refuse(s, "socket.unix-other", "an error pending on it (SO_ERROR)");
      continue;
    }
    if (!TYPE_NAMES[s.s.type]) {
      refuse(s, "socket.unix-other", `a unix socket of type ${s.s.type}`);
      continue;
    }
    if (u.listen) {
      s.role = "listener";
      // A client closed before it was accepted shows as inode 0 (no socket file any more).
      const closed = u.listen.pending.filter((c) => c === 0).length;
      const outside = u.listen.pending.filter((c) => c !== 0 && !byIno.has(c));
      if (outside.length) {
        refuse(
          s,
          "socket.unix-other",
          `${outside.length} connection(s) from outside the tree wait to be accepted on it`,
        );
      }
      if (closed) {
        refuse(
          s,
          "socket.unix-other",
          `${closed} connection(s) whose client was closed wait to be accepted on it (the client's credentials are not known)`,
        );
      }
      for (const c of u.listen.pending) if (byIno.has(c)) union(s.ino, c);
      continue;
    }
    const peer = u.peer !== undefined ? byIno.get(u.peer) : undefined;
    if (s.s.type !== SOCK_DGRAM) {
      if (u.state !== TCP_ESTABLISHED) {
        s.role = "plain";
      } else if (peer) {
        union(s.ino, peer.ino);
        if (isAccepted(s)) {
          s.role = "accepted";
          union(s.ino, listenerByName.get(u.name!)!.ino);
        } else if (isAccepted(peer)) s.role = "client";
        else if (isAbstract(u.name) || isAbstract(peer.u.name)) {
          // A name that only lives in the kernel: binding it again would take it.
          refuse(s, "socket.unix-other", "an abstract-named connection whose listener is closed");
        } else s.role = "pair"; // path names (an accepted end whose listener is closed) are bound again
      } else if (u.peer === undefined && pendingOf.has(s.ino)) {
        s.role = "pending";
      } else if (peerGone(u) && s.s.type !== SOCK_DGRAM) {
        s.role = "peer-closed";
        if (u.peerName) {
          refuse(
            s,
            "socket.unix-other",
            `its closed peer had the address ${
              unixNameText(u.peerName)
            } (getpeername), which cannot be given back`,
          );
        }
        if (isAbstract(u.name)) {
          refuse(s, "socket.unix-other", "an abstract-named connection whose peer was closed");
        }
      } else if (!refuse(s, "socket.unix-external")) {
        if (!u.peerName) {
          refuse(s, "socket.unix-other", "the accepted end of a connection from outside the tree");
        } else if (u.queue.length) {
          refuse(s, "socket.unix-other", "bytes queued from a peer outside the tree");
        } else s.role = "external";
      }
    } else {
      if (!u.peer && !peerGone(u)) s.role = "plain";
      else if (peer) {
        union(s.ino, peer.ino);
        // Peer credentials on both ends: made by socketpair() (a connect() sets none), then bound.
        const socketpair = !!u.peerCredPid && !!peer.u.peerCredPid;
        if (peer.u.peer === s.ino && ((!u.name && !peer.u.name) || socketpair)) s.role = "pair";
        else if (peer.u.name) s.role = "dgram-connect";
        else refuse(s, "socket.unix-other", "a datagram socket connected to an unnamed socket");
      } else if (peerGone(u)) {
        // Made as a socketpair whose other end sends its datagrams again, then is closed.
        if (u.peerName) {
          refuse(
            s,
            "socket.unix-other",
            `a datagram socket connected to a socket that was closed, whose address ${
              unixNameText(u.peerName)
            } getpeername() still returns`,
          );
        } else if (u.queue.some((m) => m.from)) {
          refuse(
            s,
            "socket.unix-other",
            "datagrams from a named socket queued before it was connected to a socket since closed",
          );
        } else s.role = "peer-closed";
      } else if (!refuse(s, "socket.unix-external")) s.role = "external";
      // Datagrams come back from their senders.
      for (const m of u.queue) {
        if (s.role === "peer-closed") break; // all from its closed peer (above)
        const sender = m.from ? byName.get(m.from) : peer?.u.peer === s.ino ? peer : undefined;
        if (m.from && !sender) {
          refuse(
            s,
            "socket.unix-other",
            `datagrams from ${unixNameText(m.from)}, outside the tree`,
          );
          break;
        }
        if (sender) union(s.ino, sender.ino);
        else if (!u.name) {
          refuse(s, "socket.unix-other", "datagrams from an unnamed socket it is not paired with");
          break;
        }
      }
    }
  }

  // Sockets of one group bound in turn at one path name (each file removed before the next bind)
  // are refused by name: made together, the second bind took the first one's file and the
  // restore failed removing it again. Only the two ends of a socketpair whose files are both gone
  // and whose name no other socket sends from come back (bound in turn, the first file removed by
  // the second bind). Groups are made one after another, each removing its files at its end.
  const pathKey = (s: Sock) => {
    const path = unixNameText(s.u.name);
    return path.startsWith("/") ? path : `${s.u.file!.dir}/${path}`;
  };
  const sentFrom = new Set(socks.flatMap((s) => s.u.queue.flatMap((m) => m.from ? [m.from] : [])));
  const gone = (s: Sock) =>
    s.u.file?.mode === undefined && !s.u.file?.renamed && s.u.file?.replacedBy === undefined;
  const boundAt = new Map<string, Sock[]>();
  for (const s of socks) {
    const name = s.u.name;
    if (plan.refused.has(s.ino) || s.role === "accepted" || !isPathName(name) || !s.u.file) {
      continue;
    }
    const key = `${find(s.ino)}|${pathKey(s)}`;
    boundAt.set(key, [...boundAt.get(key) ?? [], s]);
  }
  for (const [key, same] of boundAt) {
    if (same.length < 2) continue;
    const [a, b] = same;
    if (
      same.length === 2 && a.role === "pair" && b.role === "pair" && a.u.peer === b.ino &&
      gone(a) && gone(b) && !sentFrom.has(a.u.name!)
    ) {
      continue;
    }
    const path = key.slice(key.indexOf("|") + 1);
    for (const s of same) {
      const others = same.filter((o) => o !== s).map((o) => `socket:[${o.ino}]`).join(", ");
      refuse(
        s,
        "socket.unix-other",
        `bound at ${path}, where ${others} of the tree ${
          same.length > 2 ? "were" : "was"
        } bound too (in turn, each file removed before the next bind)`,
      );
    }
  }

  // Groups, their creators, the checks that need the creator, transfer fds.
  const unsorted = new Map<number, Sock[]>();
  for (const s of socks) {
    const g = unsorted.get(find(s.ino)) ?? [];
    g.push(s);
    unsorted.set(find(s.ino), g);
  }
  const parent = treeParents(processes);
  // A socket whose file a later socket of the tree replaced (bound at its name once the first
  // file was removed) is bound and its file removed before that socket's group binds: its group
  // comes first, made by the same process.
  const replaced = (g: Sock[]) => g.some((s) => s.u.file?.replacedBy !== undefined);
  const groupCreator = (root: number) =>
    creatorOf(unsorted.get(root)!.flatMap((x) => [...x.holders]), parent);
  for (const s of socks) {
    const by = s.u.file?.replacedBy;
    if (by === undefined || plan.refused.has(s.ino)) continue;
    const r = byIno.get(by);
    const why = !r || r.u.file?.mode === undefined || r.u.file.replacedBy !== undefined ||
        pathKey(r) !== pathKey(s)
      ? `socket:[${by}], bound there now, is not a socket of the tree bound at that name`
      : replaced(unsorted.get(find(r.ino))!)
      ? `the group of socket:[${by}], bound there now, has a replaced socket file too`
      : groupCreator(find(r.ino)) !== groupCreator(find(s.ino))
      ? `socket:[${by}], bound there now, is made by another process`
      : undefined;
    if (why) {
      refuse(s, "socket.unix-other", `its socket file ${pathKey(s)} was replaced: ${why}`);
    }
  }
  const groups = new Map(
    [...unsorted].sort(([, a], [, b]) => Number(!replaced(a)) - Number(!replaced(b))),
  );
  let next = Math.max(firstFd, transferBase(processes, 8));
  const treeIds = new Set(processes.flatMap((p) => [p.pid, ...p.threads.map((t) => t.tid)]));
  for (const members of groups.values()) {
    const creator = creatorOf(members.flatMap((s) => [...s.holders]), parent);
    // A listener whose credentials name a process that is gone gets them back from a helper
    // with that pid; its clients in the tree copy them at connect, as they did.
    for (const s of members) {
      const cred = s.u.peerCredPid;
      if (s.role === "listener" && cred && cred !== creator && credHelperFree(cred, treeIds)) {
        s.credHelper = cred;
      }
    }
    const listenerOf = (s: Sock): Sock | undefined => {
      const accepted = s.role === "client" && s.u.peer !== undefined
        ? byIno.get(s.u.peer)
        : undefined;
      return accepted?.u.name !== undefined ? listenerByName.get(accepted.u.name) : undefined;
    };
    for (const s of members) {
      if (plan.refused.has(s.ino)) continue;
      // Ids the group's owner cannot give (socket_owner.ts).
      if (s.u.nonRootIds && !(s.role === "external" && !/owner|queued/.test(s.u.nonRootIds))) {
        refuse(
          s,
          "socket.unix-other",
          `${s.u.nonRootIds} would not come back (the sockets are made with their owner's ids)`,
        );
        continue;
      }
      // An outside peer gives its own credentials again when reconnected.
      const cred = s.role === "external" ? undefined : s.u.peerCredPid;
      const helped = s.credHelper ?? listenerOf(s)?.credHelper;
      if (cred && cred !== creator && cred !== helped) {
        refuse(
          s,
          "socket.unix-other",
          `its peer credentials (SO_PEERCRED) name process ${cred}, but process ${creator} would re-create it`,
        );
        continue;
      }
      // Credentials recorded with a message are those of its sender.
      const foreign = s.u.queue.find((m) => m.credPid && m.credPid !== creator);
      if (foreign) {
        refuse(
          s,
          "socket.unix-other",
          `queued messages carry the credentials of process ${foreign.credPid}`,
        );
      }
    }
    // One group is made with one user's ids (see socket_owner.ts).
    const owners = new Set(members.map((s) => ownerKey(s.u.creator)));
    if (owners.size > 1) {
      for (const s of members) {
        refuse(
          s,
          "socket.unix-other",
          `sockets of different owners (${[...owners].join(", ")}) linked together`,
        );
      }
    }
    if (members.some((s) => plan.refused.has(s.ino))) {
      for (const s of members) plan.refused.add(s.ino);
      continue;
    }
    const groupOwner = members[0].u.creator;
    // Peer credentials carry their creator's supplementary groups: one list per group.
    const lists = new Set(
      members.filter((s) => s.role !== "external" && s.u.peerGroups)
        .map((s) => s.u.peerGroups!.join(",")),
    );
    if (lists.size > 1) {
      for (const s of members) {
        refuse(
          s,
          "socket.unix-other",
          `peer credentials with different supplementary groups ([${
            [...lists].join("], [")
          }]) linked together`,
        );
        plan.refused.add(s.ino);
      }
      continue;
    }
    const groupGroups = lists.size
      ? [...lists][0].split(",").filter(Boolean).map(Number)
      : undefined;
    for (const s of members) {
      s.fd = next++;
      plan.transfer.set(s.ino, s.fd);
    }
    const temps = { next: () => next++ };
    const steps = plan.steps.get(creator) ?? [];
    steps.push((p, scratch, slots) =>
      emitGroup(
        p,
        scratch,
        slots,
        members,
        byIno,
        listenerByName,
        byName,
        temps,
        groupOwner,
        groupGroups,
        carried,
      )
    );
    plan.steps.set(creator, steps);
    plan.dataBytes += members.reduce(
      (n, s) =>
        n + s.u.queue.reduce(
          (m, q) =>
            m + Math.ceil(q.data.length * 3 / 4) + 64 + (q.fds ? 128 + 4 * q.fds.length : 0),
          0,
        ),
      0,
    );
  }
  plan.maxFd = next - 1;
  return plan;
}

/** "uid:gid" of a socket's owner, for comparing and naming. */
function ownerKey(o: SocketOwner | undefined): string {
  return o ? `${o.uid}:${o.gid}` : "0:0";
}

/** A sockaddr_un for `name` (base64 sun_path bytes). */
function sockaddr(name: string): Uint8Array {
  const b = decodeBase64(name);
  const out = new Uint8Array(2 + b.length);
  out[0] = AF_UNIX;
  out.set(b, 2);
  return out;
}

/** Emits the creation of one group of sockets (see the module doc for the order). */
/** True when pid `cred` can be a listener's credential helper: not in the tree and free now. */
function credHelperFree(cred: number, treeIds: ReadonlySet<number>): boolean {
  return !treeIds.has(cred) && rawSyscall(SYS.kill, cred, 0) === -BigInt(Errno.ESRCH);
}

/**
 * The pids the restore of `processes` gives a listener's credential helper
 * for a moment (their listeners' peer credentials name a process outside
 * the tree): they must be free, like the tree's own.
 */
export function unixCredHelperPids(processes: readonly ProcessImage[]): number[] {
  const treeIds = new Set(processes.flatMap((p) => [p.pid, ...p.threads.map((t) => t.tid)]));
  const pids = new Set<number>();
  for (const p of processes) {
    // (Partial images, as some callers' tests build them, may have no fds.)
    for (const f of p.fds ?? []) {
      const u = f.socket?.unix;
      if (u?.listen && u.peerCredPid && !treeIds.has(u.peerCredPid)) pids.add(u.peerCredPid);
    }
  }
  return [...pids];
}

const CLONE_UNTRACED = 0x00800000n;
const WALL = 0x40000000;

/**
 * Emits a helper child with pid `pid` (clone3 set_tid; CLONE_UNTRACED: the
 * restore session never sees it; exit_signal 0: no SIGCHLD) that calls
 * listen() on the listener at `fd` again, which gives it the helper's pid
 * (and the group owner's ids) as its peer credentials, as the process that
 * made it had; the helper exits and is reaped at once.
 */
function emitCredHelper(
  p: ProgramBuilder,
  scratch: number,
  fd: number,
  backlog: number,
  pid: number,
): void {
  const child = `unix-cred-helper-${p.opCount}`;
  const after = `unix-cred-helper-done-${p.opCount}`;
  const args = cloneWithTid(p, pid, { flags: CLONE_UNTRACED });
  p.op(SYS.clone3, [args, cloneArgs.size], {
    store: scratch,
    jumpIfZeroTo: child,
    comment: `a helper with pid ${pid}, the listener's peer credentials`,
  });
  p.op(SYS.wait4, [slot(scratch), 0, WALL, 0], { comment: "reap it" });
  p.op(SYS.sched_yield, [], { jumpIfZeroTo: after });
  p.label(child);
  p.op(SYS.listen, [fd, backlog], { comment: `listen again as pid ${pid}` });
  p.op(SYS.exit_group, [0], { comment: "the helper ends" });
  p.label(after);
}

function emitGroup(
  p: ProgramBuilder,
  scratch: number,
  slotsAddress: bigint,
  members: Sock[],
  byIno: Map<number, Sock>,
  listenerByName: Map<string, Sock>,
  byName: Map<string, Sock>,
  temps: { next(): number },
  owner: SocketOwner | undefined,
  groups: number[] | undefined,
  carried: Map<QueuedMessage, CarriedFd[] | string>,
): void {
  // Carried unix sockets are members of this group: sent from their transfer fds.
  const rights = (m: QueuedMessage) => {
    const c = carried.get(m);
    return typeof c === "string" || !c
      ? undefined
      : c.map((x) => typeof x === "number" ? x : byIno.get(x.ino)!.fd!);
  };
  const scratchAddr = slotsAddress + BigInt(scratch * 8);
  const label = (s: Sock) => `unix ${TYPE_NAMES[s.s.type]} socket:[${s.ino}]`;
  const place = (fd: number, comment: string) => {
    p.op(SYS.dup3, [slot(scratch), fd, 0], { comment });
    p.op(SYS.close, [slot(scratch)]);
  };
  const make = (s: Sock | number, type: number) => {
    const fd = typeof s === "number" ? s : s.fd!;
    p.op(SYS.socket, [AF_UNIX, type | SOCK_CLOEXEC, 0], { store: scratch });
    place(fd, typeof s === "number" ? `a temporary unix socket at ${fd}` : `${label(s)} at ${fd}`);
  };
  const chdirFor = (name: string, owner: Sock | undefined) => {
    if (isPathName(name) && owner?.u.file && !unixNameText(name).startsWith("/")) {
      p.op(SYS.chdir, [p.cstring(owner.u.file.dir)], { comment: "relative socket name" });
    }
  };
  const bind = (s: Sock) => {
    const name = s.u.name!;
    const addr = sockaddr(name);
    const path = isPathName(name) ? unixNameText(name) : undefined;
    chdirFor(name, s);
    if (path) {
      // The other end of a socketpair bound there first: its file goes with the unlink below.
      const first = removeLater.findIndex((o) =>
        o.u.name === name && o.u.file?.dir === s.u.file?.dir
      );
      if (first >= 0) removeLater.splice(first, 1);
    }
    for (const d of s.u.file?.removedDirs ?? []) {
      // Another socket of the group may have made it already.
      p.op(SYS.mkdir, [p.cstring(d), 0o700], { allowFail: true, comment: `${d}, removed since` });
    }
    if (path) {
      p.op(SYS.unlink, [p.cstring(path)], { allowFail: true, comment: "stale socket file" });
    }
    p.op(SYS.bind, [s.fd!, p.data(addr, 8), addr.length], {
      comment: `${label(s)} bound to ${unixNameText(name)}`,
    });
    const file = s.u.file;
    if (path && file?.mode !== undefined) {
      p.op(SYS.chmod, [p.cstring(path), file.mode], { comment: `mode ${file.mode.toString(8)}` });
      p.op(SYS.lchown, [p.cstring(path), file.uid!, file.gid!], { comment: "owner" });
      if (file.renamed) removeLater.push(s); // renamed, after the tree's clients connected
    } else if (path) removeLater.push(s); // once the tree's clients have connected through it
  };
  const removeLater: Sock[] = [];
  const connect = (fd: number, name: string, allowFail = false) => {
    const addr = sockaddr(name);
    const owner = listenerByName.get(name) ?? byName.get(name);
    chdirFor(name, owner);
    p.op(SYS.connect, [fd, p.data(addr, 8), addr.length], {
      allowFail,
      comment: `connect to ${unixNameText(name)}`,
    });
  };

  // Messages that carried credentials are sent again while the receiver asks
  // for them (SO_PASSCRED), the others while it does not, as at dump time.
  const passcred = new Map<number, boolean>();
  const credsFor = (s: Sock, m: { credPid?: number }) => {
    const want = !!m.credPid;
    if ((passcred.get(s.fd!) ?? false) === want) return;
    passcred.set(s.fd!, want);
    p.op(SYS.setsockopt, [
      s.fd!,
      SOL_SOCKET,
      SO_PASSCRED,
      p.data(new Uint8Array([+want, 0, 0, 0]), 4),
      4,
    ], {
      comment: `${label(s)}: SO_PASSCRED ${+want} while its queue is refilled`,
    });
  };

  // Steps 1-5 make and connect the sockets: with their owner's ids.
  emitOwnerIds(p, owner, groups);
  // 1. Bound sockets, listeners, lone sockets.
  for (const s of members) {
    if (s.role !== "plain" && s.role !== "listener" && s.role !== "dgram-connect") continue;
    make(s, s.s.type);
    if (s.u.name) bind(s);
    if (s.u.listen) {
      p.op(SYS.listen, [s.fd!, s.u.listen.backlog], { comment: `backlog ${s.u.listen.backlog}` });
      if (s.credHelper) emitCredHelper(p, scratch, s.fd!, s.u.listen.backlog, s.credHelper);
    }
  }
  // 2. Socketpairs (and pairs whose other end was closed: made, refilled, closed below).
  const closedPeers = new Map<number, number>();
  const pairDone = new Set<number>();
  for (const s of members) {
    if ((s.role !== "pair" && s.role !== "peer-closed") || pairDone.has(s.ino)) continue;
    const other = s.role === "pair" ? byIno.get(s.u.peer!)! : undefined;
    const otherFd = other ? other.fd! : temps.next();
    if (!other) closedPeers.set(s.ino, otherFd);
    const pair = p.reserve(8);
    p.op(SYS.socketpair, [AF_UNIX, s.s.type | SOCK_CLOEXEC, 0, pair], { comment: label(s) });
    p.copy(scratchAddr, pair, 4);
    place(s.fd!, `${label(s)} at ${s.fd}`);
    p.copy(scratchAddr, pair + 4n, 4);
    place(
      otherFd,
      other ? `${label(other)} at ${otherFd}` : `its closed peer, for now at ${otherFd}`,
    );
    // Bound ends of a connection whose listener is gone (a path name, bound again).
    if (s.u.name) bind(s);
    if (other?.u.name) bind(other);
    pairDone.add(s.ino);
    if (other) pairDone.add(other.ino);
  }
  // 3. Accepted connections (the client connects, the listener accepts), then 4. pending ones.
  for (const s of members) {
    if (s.role !== "accepted") continue;
    const client = byIno.get(s.u.peer!)!;
    const listener = listenerByName.get(s.u.name!)!;
    make(client, client.s.type);
    if (client.u.name) bind(client);
    connect(client.fd!, s.u.name!);
    p.op(SYS.accept4, [listener.fd!, 0, 0, SOCK_CLOEXEC], {
      store: scratch,
      comment: `accept ${label(s)}`,
    });
    place(s.fd!, `${label(s)} at ${s.fd}`);
  }
  for (const l of members) {
    for (const c of l.u.listen?.pending ?? []) {
      const client = byIno.get(c);
      if (!client) continue;
      make(client, client.s.type);
      if (client.u.name) bind(client);
      connect(client.fd!, l.u.name!);
    }
  }
  // 5. Connections to peers outside the tree (--ext-unix-sk).
  for (const s of members) {
    if (s.role !== "external") continue;
    make(s, s.s.type);
    if (s.u.name) bind(s);
    if (s.s.type !== SOCK_DGRAM && s.u.peerName) connect(s.fd!, s.u.peerName);
  }
  emitRootIds(p, owner);
  // 6. Datagrams, sent again by their senders (before any datagram connect: a
  //    connected socket only takes datagrams from its peer).
  for (const s of members) {
    if (s.s.type !== SOCK_DGRAM || s.u.queue.length === 0) continue;
    let tmp: number | undefined;
    for (const m of s.u.queue) {
      credsFor(s, m);
      const sender = m.from ? byName.get(m.from) : undefined;
      const pairedFd = s.role === "pair"
        ? byIno.get(s.u.peer!)!.fd!
        : s.role === "peer-closed"
        ? closedPeers.get(s.ino)
        : undefined;
      if (sender || (!m.from && pairedFd !== undefined)) {
        const from = sender?.fd ?? pairedFd!;
        emitRefillBuffer(p, from, sender ? label(sender) : `the peer of ${label(s)}`);
        emitRefill(
          p,
          from,
          [m],
          label(s),
          sender && s.u.name ? sockaddr(s.u.name) : undefined,
          rights,
        );
      } else {
        if (tmp === undefined) {
          tmp = temps.next();
          make(tmp, SOCK_DGRAM);
          emitRefillBuffer(p, tmp, "the temporary sender");
        }
        emitRefill(p, tmp, [m], label(s), sockaddr(s.u.name!), rights);
      }
    }
    if (tmp !== undefined) p.op(SYS.close, [tmp], { comment: "the temporary sender" });
  }
  for (const s of members) {
    if (s.s.type !== SOCK_DGRAM) continue;
    if (s.role === "dgram-connect") connect(s.fd!, byIno.get(s.u.peer!)!.u.name!);
    if (s.role === "external" && s.u.peerName) connect(s.fd!, s.u.peerName, true);
  }
  // 7. Stream and seqpacket queues, sent again by the peer.
  for (const s of members) {
    if (s.s.type === SOCK_DGRAM || s.u.queue.length === 0) continue;
    const from = closedPeers.get(s.ino) ?? byIno.get(s.u.peer!)?.fd;
    if (from === undefined) continue;
    emitRefillBuffer(p, from, `the peer of ${label(s)}`);
    for (const m of s.u.queue) {
      credsFor(s, m);
      emitRefill(p, from, [m], label(s), undefined, rights);
    }
  }
  for (const [ino, fd] of closedPeers) {
    const s = byIno.get(ino)!;
    if (s.u.pendingError) {
      // Closed with a byte unread, the peer leaves ECONNRESET pending on it, as it was.
      p.op(SYS.sendto, [s.fd!, p.data(new Uint8Array([0]), 1), 1, 0x4040, 0, 0], {
        comment: `a byte the closed peer of socket:[${ino}] leaves unread`,
      });
    }
    p.op(SYS.close, [fd], { comment: `the peer of socket:[${ino}] was closed` });
  }
  for (const s of removeLater) {
    chdirFor(s.u.name!, s);
    const renamed = s.u.file?.renamed;
    if (renamed) {
      // Over the stale socket file left there by the dumped process, as rename(2) does.
      p.op(SYS.rename, [p.cstring(unixNameText(s.u.name)), p.cstring(renamed)], {
        comment: `${label(s)}: its file had been renamed to ${renamed}`,
      });
    } else {
      p.op(SYS.unlink, [p.cstring(unixNameText(s.u.name))], {
        comment: `${label(s)}: its file had been removed`,
      });
      for (const d of [...s.u.file?.removedDirs ?? []].reverse()) {
        // Not empty while another socket of the group still has its file there: removed with it.
        p.op(SYS.rmdir, [p.cstring(d)], { allowFail: true, comment: `${d} had been removed` });
      }
    }
  }
  // SO_PASSCRED turned on for a refill goes off again (the options below set it if it was on).
  for (const s of members) {
    if (passcred.get(s.fd!)) credsFor(s, {});
  }
  // 8. Shutdown state, then 9. options (buffer sizes last set here).
  for (const s of members) {
    const how = [undefined, 0, 1, 2][s.u.shutdown & 3];
    // A closed stream peer shut the socket down already; a datagram one does not.
    if (how === undefined || (closedPeers.has(s.ino) && s.s.type !== SOCK_DGRAM)) continue;
    p.op(SYS.shutdown, [s.fd!, how], {
      comment: `${label(s)}: ${["SHUT_RD", "SHUT_WR", "SHUT_RDWR"][how]}`,
    });
  }
  for (const s of members) emitSocketOptions(p, s.fd!, s.s.options, label(s));
}

/** Emits the sockets process `pid` creates for the tree (before it forks its children). */
export function emitUnixCreation(
  p: ProgramBuilder,
  plan: UnixTreePlan | undefined,
  pid: number,
  scratchSlot: number,
  slotsAddress: bigint,
): void {
  for (const step of plan?.steps.get(pid) ?? []) step(p, scratchSlot, slotsAddress);
}

/**
 * Restore plan of a unix socket fd: taken from its transfer fd. Returns
 * null for a socket the tree planner refused (already reported), or a
 * reason when the fd has no unix socket state.
 */
export function planUnixFd(f: FdInfo, plan: UnixTreePlan | undefined): FdSource | string | null {
  const u = f.socket?.unix;
  if (!u || !plan) return "a socket cryo has no state for";
  if (plan.refused.has(u.ino)) return null;
  if (f.restore === "inherit" && !plan.transfer.has(u.ino)) {
    return { kind: "inherit", from: f.fd }; // leads out of the tree: the restorer's stdio
  }
  const from = plan.transfer.get(u.ino);
  if (from === undefined) return "a unix socket the tree plan does not create";
  return { kind: "inherit", from }; // status flags: the description state (state.ts)
}
