/**
 * Owners of sockets. A socket's owner — its inode's owner, and `sk_uid`,
 * which sock_diag and /proc/net/tcp show — comes from the fs uid and gid
 * of the task that created it; a unix socket's peer credentials
 * (SO_PEERCRED) from the effective ids of the task that made the pair,
 * listened or connected. Restore programs run as root until the tree's
 * credentials are set, last of all, so sockets of another user are
 * created while the program has taken that user's ids for the moment:
 *
 * - TCP, UDP and netlink sockets: `socket()` with the owner's fs ids
 *   ({@link emitAsOwner}, as pipes are);
 * - a group of unix sockets linked together (engine/fds/unix.ts): the
 *   sockets, binds, pairs, listens, connects and accepts with the owner's
 *   effective ids ({@link emitOwnerIds}); the real and saved ids stay
 *   root's, so root's ids (and capabilities) come back after.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import { emitAsOwner } from "../task/creds.ts";

/** A socket's owner (uid and gid). */
export interface SocketOwner {
  uid: number;
  gid: number;
}

/** The owner of the socket at `/proc/<pid>/fd/<fd>` (its inode's), or undefined for root's. */
export function socketOwner(pid: number, fd: number): SocketOwner | undefined {
  const st = Deno.statSync(`/proc/${pid}/fd/${fd}`);
  const uid = st.uid ?? 0, gid = st.gid ?? 0;
  return uid === 0 && gid === 0 ? undefined : { uid, gid };
}

/** Runs `emit` (ops creating a TCP/UDP/netlink socket) with the fs ids of `owner`, if any. */
export function emitSocketAsOwner(
  p: ProgramBuilder,
  owner: SocketOwner | undefined,
  emit: () => void,
): void {
  emitAsOwner(p, owner ? `${owner.uid}:${owner.gid}` : undefined, emit);
}

/**
 * Ops taking the effective (hence fs) ids of `owner`, if any: what unix
 * sockets created and connected next record as their owner and peer
 * credentials, until {@link emitRootIds}. Capabilities are out of effect
 * meanwhile (the kernel clears them when euid 0 goes and restores them when
 * it comes back), so only what the owner itself could do may come between.
 */
export function emitOwnerIds(p: ProgramBuilder, owner: SocketOwner | undefined): void {
  if (!owner) return;
  const { uid, gid } = owner;
  p.op(SYS.setresgid, [-1, gid, -1], { comment: `sockets made with effective gid ${gid}` });
  p.op(SYS.setresuid, [-1, uid, -1], { comment: `sockets made with effective uid ${uid}` });
}

/** Ops taking root's effective ids back after {@link emitOwnerIds}. */
export function emitRootIds(p: ProgramBuilder, owner: SocketOwner | undefined): void {
  if (!owner) return;
  p.op(SYS.setresuid, [-1, 0, -1], { comment: "root's effective uid again" });
  p.op(SYS.setresgid, [-1, 0, -1], { comment: "root's effective gid again" });
}
