/**
 * The per-kind creation ops of a restored open file description: what
 * opens, pipe2()s, eventfd2()s... it, leaving the new fd in the scratch
 * slot and handing it to {@link CreateContext.keep}. The fd phase of every
 * process (mod.ts) and the creator of a description shared across the tree
 * (shared.ts) both create through {@link emitCreate}; they differ only in
 * where `keep` puts the fd (a temporary number, or a transfer number).
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { decodeBase64 } from "../base64.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";
import { emitTimerfd } from "./anon.ts";
import { emitAsOwner } from "../task/creds.ts";
import { emitEpoll } from "./epoll.ts";
import { emitInotify } from "./inotify.ts";
import { emitPidfd } from "./pidfd.ts";
import { emitHungUpTty } from "./tty.ts";
import { mqSyscallName } from "./mqueue.ts";
import { emitInet } from "./inet_plan.ts";
import { emitNetlink } from "./netlink.ts";
import { emitPacket } from "./packet.ts";
import { emitSocketAsOwner } from "./socket_owner.ts";
import { O_CLOEXEC, O_NONBLOCK, type PlannedFd } from "./types.ts";

const O_RDWR = 2;
const F_SETPIPE_SZ = 1031;
const F_SETFL = 4;
const F_DUPFD_CLOEXEC = 1030;
const EFD_SEMAPHORE = 1;
const POLLIN = 1;
const S_IFIFO = 0o10000;

/** Where creation ops go and where created fds are kept. */
export interface CreateContext {
  /** The program being built. */
  p: ProgramBuilder;
  /** Slot that receives each freshly created fd. */
  scratchSlot: number;
  /** Address of that slot (for COPY from a pipe2 pair). */
  scratchAddr: bigint;
  /**
   * Moves the fd in the scratch slot to where `key` is kept and closes the
   * original; returns the number it is kept at.
   */
  keep(key: string, comment: string): number;
  /** Whether something was kept under `key` already. */
  has(key: string): boolean;
  /** The number fd `fd` given to the process (a transfer fd) has by now. */
  current(fd: number): number;
  /** The number what was kept under `key` is kept at (undefined if nothing was). */
  numberOf(key: string): number | undefined;
}

/** The key the description of `f` is kept under after {@link emitCreate}. */
export function createKey(f: PlannedFd): string {
  const s = f.source;
  if (s.kind === "pipe") {
    return s.reopen ? `pipe:${s.id}:reopen:${s.reopen}` : `pipe:${s.id}:${s.end}`;
  }
  return `fd:${f.fd}`;
}

/**
 * Emits the ops creating the description of `f` (nothing for sources that
 * are taken from elsewhere: inherit, transfer, same). `batch` are the fds
 * created together (a pipe's bytes may be recorded on its other end).
 */
export function emitCreate(cx: CreateContext, f: PlannedFd, batch: readonly PlannedFd[]): void {
  const { p, scratchSlot } = cx;
  const s = f.source;
  const what = `fd ${f.fd}`;
  const nonblock = (flags: number) => flags & O_NONBLOCK;
  switch (s.kind) {
    case "open": {
      // A transfer fd reopened through /proc/self/fd (ghost files) may have moved.
      const path = s.via !== undefined ? `/proc/self/fd/${cx.current(s.via)}` : s.path;
      if (s.own && s.via !== undefined) {
        // The description itself (its status flags and offset are set after, as a reopen's).
        p.op(SYS.fcntl, [cx.current(s.via), F_DUPFD_CLOEXEC, 0], {
          store: scratchSlot,
          comment: `${s.path}: its own description`,
        });
      } else p.op(SYS.open, [p.cstring(path), s.flags | O_CLOEXEC, 0], { store: scratchSlot });
      cx.keep(`fd:${f.fd}`, `${what} ${s.path}`);
      break;
    }
    case "pipe": {
      const made = cx.has(`pipe:${s.id}:read`) || cx.has(`pipe:${s.id}:write`);
      if (s.reopen) {
        // Another description of a pipe this process holds: opened through /proc from its read end.
        if (!made) emitCreate(cx, { ...f, source: { ...s, reopen: undefined } }, batch);
        const path = `/proc/self/fd/${cx.numberOf(`pipe:${s.id}:read`)}`;
        p.op(SYS.open, [p.cstring(path), (s.flags & ~O_CLOEXEC) | O_CLOEXEC, 0], {
          store: scratchSlot,
          comment: `another description of ${s.id}`,
        });
        cx.keep(createKey(f), `${what} ${s.id} reopened`);
        break;
      }
      if (made) break;
      const pair = p.reserve(8);
      // Created with the pipe owner's fs ids (the inode keeps them), see task/creds.ts.
      emitAsOwner(p, s.owner, () => p.op(SYS.pipe2, [pair, O_CLOEXEC], { comment: `${s.id}` }));
      p.copy(cx.scratchAddr, pair, 4);
      cx.keep(`pipe:${s.id}:read`, `read end of ${s.id}`);
      p.copy(cx.scratchAddr, pair + 4n, 4);
      const w = cx.keep(`pipe:${s.id}:write`, `write end of ${s.id}`);
      const withData = batch.map((x) => x.source).find((x) =>
        x.kind === "pipe" && x.id === s.id && (x.data || x.size)
      );
      if (withData?.kind === "pipe" && w >= 0) {
        fillPipe(p, w, s.id, withData.data, withData.size, withData.packets);
      }
      break;
    }
    case "fifo": {
      const helperKey = `${s.id}:helper`;
      if (!cx.has(helperKey)) {
        if (s.deleted) {
          p.op(SYS.mknod, [p.cstring(s.path), S_IFIFO | (s.deleted.mode & 0o777), 0], {
            comment: `FIFO ${s.path} made again (its path was removed)`,
          });
        }
        // Opening read-write never blocks and keeps the FIFO open while its
        // descriptions are opened (each O_NONBLOCK; the exact flags come later).
        p.op(SYS.open, [p.cstring(s.path), O_RDWR | O_NONBLOCK | O_CLOEXEC, 0], {
          store: scratchSlot,
          comment: `FIFO ${s.path}`,
        });
        const h = cx.keep(helperKey, `FIFO ${s.path} held open read-write`);
        if (s.deleted) {
          const { uid, gid, mode } = s.deleted;
          p.op(SYS.fchown, [h, uid, gid], { comment: "its owner" });
          p.op(SYS.fchmod, [h, mode], { comment: "its mode" });
          p.op(SYS.unlink, [p.cstring(s.path)], { comment: `removed again` });
        }
        const withData = batch.map((x) => x.source).find((x) =>
          x.kind === "fifo" && x.id === s.id && (x.data || x.size)
        );
        if (withData?.kind === "fifo") {
          fillFifo(p, h, s.path, withData.data, withData.size, withData.packets);
        }
      }
      // A removed FIFO is opened through its helper's /proc/self/fd link.
      const path = s.deleted ? `/proc/self/fd/${cx.numberOf(helperKey)}` : s.path;
      p.op(SYS.open, [p.cstring(path), s.flags | O_NONBLOCK | O_CLOEXEC, 0], {
        store: scratchSlot,
      });
      cx.keep(`fd:${f.fd}`, `${what} FIFO ${s.path}`);
      break;
    }
    case "mqueue":
      p.op(SYS.mq_open, [p.cstring(mqSyscallName(s.name)), s.flags | O_CLOEXEC, 0, 0], {
        store: scratchSlot,
        comment: `POSIX message queue ${s.name}`,
      });
      cx.keep(`fd:${f.fd}`, `${what} POSIX message queue ${s.name}`);
      break;
    case "eventfd":
      p.op(SYS.eventfd2, [0, O_CLOEXEC | nonblock(s.flags) | (s.semaphore ? EFD_SEMAPHORE : 0)], {
        store: scratchSlot,
      });
      if (BigInt(s.count) !== 0n) {
        p.op(SYS.write, [slot(scratchSlot), p.u64s([BigInt(s.count)]), 8], {
          comment: `eventfd count ${s.count}`,
        });
      }
      cx.keep(`fd:${f.fd}`, `${what} eventfd`);
      break;
    case "timerfd":
      emitTimerfd(p, s, scratchSlot);
      cx.keep(`fd:${f.fd}`, `${what} timerfd`);
      break;
    case "signalfd":
      p.op(SYS.signalfd4, [-1, p.u64s([BigInt(s.mask)]), 8, O_CLOEXEC | nonblock(s.flags)], {
        store: scratchSlot,
      });
      cx.keep(`fd:${f.fd}`, `${what} signalfd`);
      break;
    case "epoll":
      emitEpoll(p, s, scratchSlot);
      cx.keep(`fd:${f.fd}`, `${what} epoll`);
      break;
    case "inotify":
      emitInotify(p, s, scratchSlot, cx.current);
      cx.keep(`fd:${f.fd}`, `${what} inotify`);
      break;
    case "hungup-tty":
      emitHungUpTty(p, s.flags, scratchSlot, () => cx.keep(`pty:${f.fd}`, "its master"));
      cx.keep(`fd:${f.fd}`, `${what} hung-up terminal`);
      break;
    case "pidfd": {
      if (s.sameAs === undefined) {
        emitPidfd(p, s, scratchSlot, cx.scratchAddr);
        cx.keep(`fd:${f.fd}`, `${what} pidfd`);
        break;
      }
      // Several descriptions of one reaped process: one made, each reopened from it.
      const key = `pidfd-dead:${s.sameAs}`;
      if (!cx.has(key)) {
        emitPidfd(p, s, scratchSlot, cx.scratchAddr);
        cx.keep(key, "pidfd of a reaped process, to reopen");
      }
      p.op(SYS.open, [
        p.cstring(`/proc/self/fd/${cx.numberOf(key)}`),
        O_RDWR | O_CLOEXEC | nonblock(s.flags),
        0,
      ], {
        store: scratchSlot,
        comment: "another description of that pidfd",
      });
      cx.keep(`fd:${f.fd}`, `${what} pidfd`);
      break;
    }
    case "inet":
      // Created with its owner's fs ids: they give the socket its owner (sk_uid).
      emitSocketAsOwner(p, s.socket.owner, () => emitInet(p, scratchSlot, s.socket, what));
      cx.keep(`fd:${f.fd}`, `${what} ${s.socket.proto} socket`);
      break;
    case "netlink":
      emitSocketAsOwner(p, s.socket.owner, () => emitNetlink(p, scratchSlot, s.socket, what));
      cx.keep(`fd:${f.fd}`, `${what} netlink socket`);
      break;
    case "packet":
      emitSocketAsOwner(p, s.socket.owner, () => emitPacket(p, scratchSlot, s.socket, what));
      cx.keep(`fd:${f.fd}`, `${what} packet socket`);
      break;
  }
}

function fillPipe(
  p: ProgramBuilder,
  w: number,
  id: string,
  data?: string,
  size?: number,
  packets?: readonly number[],
): void {
  if (size && size !== 65536) p.op(SYS.fcntl, [w, F_SETPIPE_SZ, size], { comment: "pipe size" });
  const bytes = data ? decodeBase64(data) : new Uint8Array();
  writeBack(p, w, 0, bytes, id, packets);
}

const O_DIRECT = 0o40000;

/**
 * Writes `bytes` into a pipe through `w` (whose status flags are `flags`):
 * the `packets` at their head one write each in packet mode (O_DIRECT),
 * the rest in one plain write. The exact flags of `w`'s description are
 * set afterwards (state.ts).
 */
function writeBack(
  p: ProgramBuilder,
  w: number,
  flags: number,
  bytes: Uint8Array,
  id: string,
  packets: readonly number[] = [],
): void {
  let at = 0;
  if (packets.length) {
    p.op(SYS.fcntl, [w, F_SETFL, flags | O_DIRECT], { comment: "packet mode" });
    for (const n of packets) {
      p.op(SYS.write, [w, p.data(bytes.subarray(at, at + n), 1), n], {
        comment: `a packet of ${n} bytes back into ${id}`,
      });
      at += n;
    }
    p.op(SYS.fcntl, [w, F_SETFL, flags], { comment: "packet mode off" });
  }
  if (bytes.length > at) {
    p.op(SYS.write, [w, p.data(bytes.subarray(at), 1), bytes.length - at], {
      comment: `${bytes.length - at} bytes back into ${id}`,
    });
  }
}

/**
 * Puts a FIFO's bytes back through its read-write helper `h`, but only when
 * the FIFO is empty: a holder outside the tree may have kept it (and its
 * bytes) alive since the dump.
 */
function fillFifo(
  p: ProgramBuilder,
  h: number,
  path: string,
  data?: string,
  size?: number,
  packets?: readonly number[],
) {
  if (size && size !== 65536) p.op(SYS.fcntl, [h, F_SETPIPE_SZ, size], { comment: "FIFO size" });
  const bytes = data ? decodeBase64(data) : new Uint8Array();
  if (!bytes.length) return;
  const pfd = new Uint8Array(8);
  new DataView(pfd.buffer).setInt32(0, h, true);
  new DataView(pfd.buffer).setInt16(4, POLLIN, true);
  const fill = `fifo-fill-${p.opCount}`;
  const after = `fifo-filled-${p.opCount}`;
  p.op(SYS.poll, [p.data(pfd), 1, 0], { jumpIfZeroTo: fill, comment: `is ${path} empty?` });
  p.op(SYS.sched_yield, [], { jumpIfZeroTo: after, comment: "it kept its bytes: skip" });
  p.label(fill);
  writeBack(p, h, O_NONBLOCK, bytes, path, packets);
  p.label(after);
}
