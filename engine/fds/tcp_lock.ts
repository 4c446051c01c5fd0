/**
 * The network lock of a dump's TCP connections to peers outside the tree:
 * a segment that reaches such a connection after the dump read its receive
 * queue would be missing from the image, and between the kill at the end
 * of the dump and the restore there is no socket for the connection, so a
 * segment its peer sends then would be answered with a reset, losing the
 * connection. The dump therefore drops those connections' incoming
 * segments from before it reads them ({@link outsideSegments},
 * {@link lockSegments}: a BPF program on the tcx ingress of every network
 * device, ffi/tcp_lock.ts, pinned under {@link LOCK_ROOT}); the peer sends
 * them again. A dump that kills the tree keeps the lock until the restore
 * lifts it once the connections are back ({@link unlockConnections}); a
 * tree that resumes (`leaveRunning`, a failed dump) has it lifted at once.
 * A restore that fails leaves the lock (the image is intact and can be
 * restored again); `cryo image unlock <dir>` lifts it for an image that
 * will not be, `cryo image unlock --stale` those of dumps whose cryo died
 * while dumping ({@link staleLocks}).
 *
 * The lock needs CAP_BPF and CAP_NET_ADMIN, tcx (Linux 6.6) and a BPF file
 * system at /sys/fs/bpf (mounted there when none is); without them the
 * dump goes on unlocked and says why ({@link LockOutcome}).
 *
 * @module
 */

import {
  AF,
  closeFd,
  getsockoptInt,
  inetAddressBytes,
  peerName,
  pidfdGetfd,
  SO,
  SOCK,
  sockName,
  SOL,
} from "../../ffi/net.ts";
import { repairableState, tcpInfo } from "../../ffi/tcp_repair.ts";
import { fsMagic, mount } from "../../ffi/mounts.ts";
import {
  attachIngress,
  loadLockProgram,
  type LockedConnection,
  pinObject,
} from "../../ffi/tcp_lock.ts";
import type { SockAddr } from "../model.ts";

/** Where the locks' links are pinned: one directory per dump, named by its dump id. */
export const LOCK_ROOT = "/sys/fs/bpf";
/** statfs magic of a BPF file system. */
const BPF_FS_MAGIC = 0xcafe4a11;
const LOCK_PREFIX = "cryo-tcp-lock-";
/** The lock of a dump under way: `dumping-<pid of its cryo>` (a directory) in the lock's. */
const DUMPING = "dumping-";

/** One connection of the tree to a peer outside it. */
export interface OutsideConnection {
  /** "ipv4" or "ipv6": the socket's family (an IPv6 socket may carry IPv4 through mapped addresses). */
  family: "ipv4" | "ipv6";
  local: SockAddr;
  peer: SockAddr;
}

/** What {@link lockConnections} did: the connections locked and where, or why not. */
export type LockOutcome = { connections: number; dir: string } | { skipped: string };

const IPPROTO_TCP = 6;

/** The directory of the lock of dump `dumpId`. */
export function lockDir(dumpId: string): string {
  return `${LOCK_ROOT}/${LOCK_PREFIX}${dumpId}`;
}

/** A connection as its incoming segments carry it (an IPv4-mapped IPv6 address as IPv4). */
export function asLocked(c: OutsideConnection): LockedConnection {
  const bytes = (a: SockAddr) => {
    if (c.family === "ipv4") return inetAddressBytes(AF.INET, a.address);
    const b = inetAddressBytes(AF.INET6, a.address);
    const mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
    return mapped ? b.slice(12) : b;
  };
  return {
    peer: bytes(c.peer),
    peerPort: c.peer.port,
    local: bytes(c.local),
    localPort: c.local.port,
  };
}

function inode(path: string): number | undefined {
  try {
    return Deno.statSync(path).ino ?? undefined;
  } catch {
    return undefined;
  }
}

/** A BPF file system at {@link LOCK_ROOT}, mounted when there is none; else why not. */
function bpfFs(): string | undefined {
  if (fsMagic(LOCK_ROOT) === BPF_FS_MAGIC) return undefined;
  try {
    mount("bpf", LOCK_ROOT, "bpf", 0, "mode=0700");
  } catch (e) {
    return `no BPF file system at ${LOCK_ROOT}, and mounting one failed (${(e as Error).message})`;
  }
  return fsMagic(LOCK_ROOT) === BPF_FS_MAGIC ? undefined : `no BPF file system at ${LOCK_ROOT}`;
}

/** The network devices of cryo's network namespace: name and ifindex. */
function devices(): { name: string; ifindex: number }[] {
  return [...Deno.readDirSync("/sys/class/net")].map(({ name }) => ({
    name,
    ifindex: Number(Deno.readTextFileSync(`/sys/class/net/${name}/ifindex`).trim()),
  }));
}

/** The inode of process `pid`'s network namespace (read while it lives), or undefined. */
export function netNamespaceOf(pid: number): number | undefined {
  return inode(`/proc/${pid}/ns/net`);
}

/**
 * Drops every incoming segment of `conns` (connections of the network
 * namespace `netns`, {@link netNamespaceOf} the tree's root) until
 * {@link unlockConnections} with the same `dumpId`. Never throws: what
 * cannot be done is returned as `skipped` (nothing is left in place then).
 */
export function lockConnections(
  netns: number | undefined,
  dumpId: string,
  conns: readonly OutsideConnection[],
): LockOutcome {
  return lockSegments(netns, dumpId, conns.map(asLocked));
}

/**
 * {@link lockConnections} of connections given as their segments carry
 * them. `whileDumping`: taken before the image exists; the lock directory
 * then holds an empty directory `dumping-<cryo's pid>` until
 * {@link keepForImage}, by which {@link staleLocks} tells the lock of a
 * dump whose cryo died (its tree runs on) from one an image waits for.
 */
export function lockSegments(
  netns: number | undefined,
  dumpId: string,
  conns: readonly LockedConnection[],
  whileDumping = false,
): LockOutcome {
  if (!conns.length) return { skipped: "no connection to lock" };
  const own = inode("/proc/self/ns/net");
  if (own === undefined || own !== netns) {
    return { skipped: "the tree is in another network namespace than cryo" };
  }
  const noFs = bpfFs();
  if (noFs) return { skipped: noFs };
  let prog: number;
  try {
    prog = loadLockProgram(conns);
  } catch (e) {
    return { skipped: `the BPF program was refused (${(e as Error).message.split("\n")[0]})` };
  }
  const dir = lockDir(dumpId);
  try {
    Deno.mkdirSync(dir, { mode: 0o700 });
    if (whileDumping) Deno.mkdirSync(`${dir}/${DUMPING}${Deno.pid}`, { mode: 0o700 });
    for (const d of devices()) {
      const link = attachIngress(prog, d.ifindex);
      try {
        pinObject(link, `${dir}/${d.name}`);
      } finally {
        closeFd(link);
      }
    }
    return { connections: conns.length, dir };
  } catch (e) {
    removeLock(dir);
    return { skipped: `attaching the BPF program failed (${(e as Error).message})` };
  } finally {
    closeFd(prog);
  }
}

/** A key of a connection as its segments carry it: the same for the same four values. */
export function segmentKey(c: LockedConnection): string {
  return `${c.peer.join(".")}:${c.peerPort}>${c.local.join(".")}:${c.localPort}`;
}

/** An IPv4-mapped IPv6 address as its 4 IPv4 bytes, any other unchanged. */
function unmapped(b: Uint8Array): Uint8Array {
  const mapped = b.length === 16 && b.subarray(0, 10).every((x) => x === 0) &&
    b[10] === 0xff && b[11] === 0xff;
  return mapped ? b.slice(12) : b;
}

/** A sockaddr_in or sockaddr_in6's address (unmapped) and port. */
function endpoint(sa: Uint8Array | null): { address: Uint8Array; port: number } | undefined {
  if (!sa || sa.length < 8) return undefined;
  const family = sa[0] | (sa[1] << 8);
  const port = (sa[2] << 8) | sa[3];
  if (family === AF.INET) return { address: sa.slice(4, 8), port };
  if (family === AF.INET6 && sa.length >= 24) return { address: unmapped(sa.slice(8, 24)), port };
  return undefined;
}

/** The connection of the TCP socket `fd`, when it is an established one. */
function establishedConnection(fd: number): LockedConnection | undefined {
  const domain = getsockoptInt(fd, SOL.SOCKET, SO.DOMAIN);
  if (domain !== AF.INET && domain !== AF.INET6) return undefined;
  if (getsockoptInt(fd, SOL.SOCKET, SO.TYPE) !== SOCK.STREAM) return undefined;
  if (getsockoptInt(fd, SOL.SOCKET, SO.PROTOCOL) !== IPPROTO_TCP) return undefined;
  if (!repairableState(tcpInfo(fd).state)) return undefined;
  const local = endpoint(sockName(fd)), peer = endpoint(peerName(fd));
  if (!local || !peer) return undefined;
  return { peer: peer.address, peerPort: peer.port, local: local.address, localPort: local.port };
}

/**
 * The established TCP connections among the socket fds `fds` of a frozen
 * tree (`target` "socket:[inode]") whose peer is not in the tree either,
 * as their segments carry them: read through a copy of each socket before
 * the dump reads any (so that it can lock them first, engine/dump/mod.ts).
 * A socket that cannot be read is left out (the dump reads it later).
 */
export function outsideSegments(
  fds: readonly { pid: number; fd: number; target: string }[],
): LockedConnection[] {
  const mine: LockedConnection[] = [];
  const seen = new Set<string>();
  for (const { pid, fd, target } of fds) {
    if (seen.has(target)) continue;
    seen.add(target);
    let copy: number;
    try {
      copy = pidfdGetfd(pid, fd);
    } catch {
      continue;
    }
    try {
      const c = establishedConnection(copy);
      if (c) mine.push(c);
    } catch {
      /* read again by the dump */
    } finally {
      closeFd(copy);
    }
  }
  // A peer in the tree: its socket is this connection seen from the other end.
  const keys = new Set(mine.map(segmentKey));
  return mine.filter((c) =>
    !keys.has(segmentKey({
      peer: c.local,
      peerPort: c.localPort,
      local: c.peer,
      localPort: c.peerPort,
    }))
  );
}

function removeLock(dir: string): boolean {
  let names: string[];
  try {
    names = [...Deno.readDirSync(dir)].map((e) => e.name);
  } catch {
    return false;
  }
  for (const n of names) Deno.removeSync(`${dir}/${n}`); // the link goes with its last pin
  Deno.removeSync(dir);
  return true;
}

/**
 * Lifts the lock of dump `dumpId` (its connections' segments pass again);
 * false when there was none. Throws when a pin cannot be removed.
 */
export function unlockConnections(dumpId: string): boolean {
  if (!/^[0-9a-f-]+$/.test(dumpId)) return false;
  return removeLock(lockDir(dumpId));
}

/**
 * `cryo check`: loads the lock program (for no connection) and attaches it
 * to the loopback device's ingress for a moment; undefined when both work,
 * else why not. The BPF file system is not mounted by the check.
 */
export function probeNetworkLock(): string | undefined {
  let prog: number;
  try {
    prog = loadLockProgram([]);
  } catch (e) {
    return `the BPF program was refused (${(e as Error).message.split("\n")[0]})`;
  }
  try {
    const lo = devices().find((d) => d.name === "lo");
    if (!lo) return "no loopback device to try it on";
    closeFd(attachIngress(prog, lo.ifindex)); // detached with its last fd
    return undefined;
  } catch (e) {
    return `attaching it failed (${(e as Error).message})`;
  } finally {
    closeFd(prog);
  }
}

/** The lock of dump `dumpId`, taken while dumping, now belongs to its image (the tree is killed). */
export function keepForImage(dumpId: string): void {
  try {
    Deno.removeSync(`${lockDir(dumpId)}/${DUMPING}${Deno.pid}`);
  } catch { /* taken after the image was complete: no mark */ }
}

/**
 * The dump ids of the locks left by a cryo that died while dumping (killed
 * with SIGKILL between the lock and the end of the dump): their tree runs
 * on, its connections dropping every segment until {@link unlockConnections}.
 */
export function staleLocks(): string[] {
  const out: string[] = [];
  let names: string[];
  try {
    names = [...Deno.readDirSync(LOCK_ROOT)].map((e) => e.name);
  } catch {
    return out;
  }
  for (const name of names) {
    if (!name.startsWith(LOCK_PREFIX)) continue;
    let marks: string[];
    try {
      marks = [...Deno.readDirSync(`${LOCK_ROOT}/${name}`)].map((e) => e.name)
        .filter((n) => n.startsWith(DUMPING));
    } catch {
      continue;
    }
    const gone = marks.some((m) => inode(`/proc/${m.slice(DUMPING.length)}`) === undefined);
    if (gone) out.push(name.slice(LOCK_PREFIX.length));
  }
  return out;
}

/** Whether dump `dumpId` has a lock in place. */
export function isLocked(dumpId: string): boolean {
  return /^[0-9a-f-]+$/.test(dumpId) && inode(lockDir(dumpId)) !== undefined;
}
