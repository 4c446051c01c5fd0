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
import { RestoreError } from "../errors.ts";
import type { ProcessImage } from "../model.ts";
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
 * Ops taking the effective (hence fs) ids of `owner`, if any, and the
 * supplementary groups `groups`, if given: what unix sockets created and
 * connected next record as their owner and peer credentials, until
 * {@link emitRootIds} (which leaves the groups: the tree's are set last). Capabilities are out of effect
 * meanwhile (the kernel clears them when euid 0 goes and restores them when
 * it comes back), so only what the owner itself could do may come between.
 */
export function emitOwnerIds(
  p: ProgramBuilder,
  owner: SocketOwner | undefined,
  groups?: readonly number[],
): void {
  if (groups) {
    // Peer credentials carry the supplementary groups too (SO_PEERGROUPS); the
    // tree's own groups are set with its credentials, last.
    const list = new Uint8Array(Math.max(4, groups.length * 4));
    groups.forEach((g, i) => new DataView(list.buffer).setUint32(i * 4, g, true));
    p.op(SYS.setgroups, [groups.length, p.data(list, 4)], {
      comment: `sockets made with groups [${groups.join(", ")}]`,
    });
  }
  if (!owner) return;
  const { uid, gid } = owner;
  if (![uid, gid].every((id) => Number.isInteger(id) && id >= 0 && id < 0xffffffff)) {
    throw new RestoreError(`damaged socket record: owner ${uid}:${gid}`); // -1 would mean "unchanged"
  }
  p.op(SYS.setresgid, [-1, gid, -1], { comment: `sockets made with effective gid ${gid}` });
  p.op(SYS.setresuid, [-1, uid, -1], { comment: `sockets made with effective uid ${uid}` });
}

/** Ops taking root's effective ids back after {@link emitOwnerIds}. */
export function emitRootIds(p: ProgramBuilder, owner: SocketOwner | undefined): void {
  if (!owner) return;
  p.op(SYS.setresuid, [-1, 0, -1], { comment: "root's effective uid again" });
  p.op(SYS.setresgid, [-1, 0, -1], { comment: "root's effective gid again" });
}

/**
 * After the restore programs ran: every TCP, UDP and netlink socket with a
 * recorded owner has it (setfsuid cannot report a failure, so the result is
 * read back). Throws a RestoreError naming the first that does not.
 */
export function checkSocketOwners(images: readonly ProcessImage[]): void {
  for (const image of images) {
    for (const f of image.fds) {
      const want = f.inet?.owner ?? f.netlink?.owner;
      if (f.excluded || !want) continue;
      const path = `/proc/${image.pid}/fd/${f.fd}`;
      if (!Deno.readLinkSync(path).startsWith("socket:")) continue; // replaced (--inherit-fd)
      const st = Deno.statSync(path);
      if (st.uid !== want.uid || st.gid !== want.gid) {
        throw new RestoreError(
          `process ${image.pid} fd ${f.fd} (${f.target}): the socket is owned by ${st.uid}:${st.gid}, ` +
            `not ${want.uid}:${want.gid} as it was`,
        );
      }
    }
  }
}
