/**
 * The network lock of a dump's TCP connections to peers outside the tree:
 * between the kill at the end of the dump and the restore there is no
 * socket for such a connection, and a segment its peer sends meanwhile
 * would be answered with a reset, losing the connection. A dump that kills
 * the tree therefore drops those connections' incoming segments
 * (ffi/tcp_lock.ts: a BPF program on the tcx ingress of every network
 * device, pinned under {@link LOCK_ROOT}); the peer sends them again, and
 * the restore lifts the lock once the connections are back
 * ({@link unlockConnections}). A restore that fails leaves the lock (the
 * image is intact and can be restored again); `cryo image unlock <dir>`
 * lifts it for an image that will not be.
 *
 * The lock needs CAP_BPF and CAP_NET_ADMIN, tcx (Linux 6.6) and a BPF file
 * system at /sys/fs/bpf (mounted there when none is); without them the
 * dump goes on unlocked and says why ({@link LockOutcome}).
 *
 * @module
 */

import { AF, closeFd, inetAddressBytes } from "../../ffi/net.ts";
import { tcpDiagEndpoints } from "../../ffi/inet_diag.ts";
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

/** One connection of the tree to a peer outside it. */
export interface OutsideConnection {
  /** "ipv4" or "ipv6": the socket's family (an IPv6 socket may carry IPv4 through mapped addresses). */
  family: "ipv4" | "ipv6";
  local: SockAddr;
  peer: SockAddr;
}

/** What {@link lockConnections} did: the connections locked and where, or why not. */
export type LockOutcome = { connections: number; dir: string } | { skipped: string };

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

/** {@link lockConnections} of connections given as their segments carry them. */
export function lockSegments(
  netns: number | undefined,
  dumpId: string,
  conns: readonly LockedConnection[],
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

/** TCP_ESTABLISHED as a bit of inet_diag's state bitmap: the only state a dump keeps. */
const ESTABLISHED_BIT = 1 << 1;

/**
 * The established TCP connections of the sockets `inodes` (of cryo's
 * network namespace: a socket of another one is not seen) whose peer is
 * not one of them either, as their segments carry them: read from the
 * kernel's socket table (inet_diag) before any socket is read, so that the
 * dump can lock them first (engine/dump/mod.ts).
 */
export function outsideSegments(inodes: ReadonlySet<number>): LockedConnection[] {
  const mine: LockedConnection[] = [];
  for (const family of [AF.INET, AF.INET6]) {
    for (const [ino, e] of tcpDiagEndpoints(family, ESTABLISHED_BIT)) {
      if (!inodes.has(ino)) continue;
      mine.push({
        peer: unmapped(e.peer),
        peerPort: e.peerPort,
        local: unmapped(e.local),
        localPort: e.localPort,
      });
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

/** Whether dump `dumpId` has a lock in place. */
export function isLocked(dumpId: string): boolean {
  return /^[0-9a-f-]+$/.test(dumpId) && inode(lockDir(dumpId)) !== undefined;
}
