/**
 * TCP sockets: listening, never-connected (bound or not) and established
 * ones. Established connections are read and re-created with TCP repair
 * mode: at dump the socket (through cryo's copy of the fd) enters repair
 * mode and gives its sequence numbers, both queues (peeked), the options
 * negotiated at the handshake, its timestamp clock and window; at restore a
 * new socket in repair mode is bound to the same address, given buffers
 * that hold its queues (`emitQueueBuffer`), the same sequence numbers and
 * queues, "connected" without a handshake and given
 * its options and window by the restore program; it leaves repair mode
 * (which sends one window probe to the peer) in {@link finishTcp}, run by
 * the engine once every socket of the tree exists. Bytes that were never
 * sent are written after that, as ordinary data.
 *
 * @module
 */

import { pausePoint } from "../pause.ts";
import { inInitialUserNs } from "../task/userns.ts";
import {
  encodeRepairOptions,
  readRepairedConnection,
  REPAIR_QUEUE,
  repairableState,
  setRepair,
  TCP,
  TCP_STATE,
  tcpInfo,
  tcpStateName,
} from "../../ffi/tcp_repair.ts";
import { tcpRepairWindow } from "../../ffi/structs.ts";
import { SYS } from "../../ffi/sysno.ts";
import {
  closeFd,
  getsockoptInt,
  inqBytes,
  outqBytes,
  peerName,
  pidfdGetfd,
  setsockoptInt,
  SHUT,
  shutdownSocket,
  SO,
  SOCK,
  sockName,
  SOL,
  urgentPending,
  writeAll,
} from "../../ffi/net.ts";
import { injectSegment, TCP_FLAG } from "../../ffi/tcp_inject.ts";
import { hasPendingError, receiveShutDown } from "../../ffi/socket.ts";
import { sleepMs } from "../../ffi/udp_queue.ts";
import { decodeBase64, encodeBase64 } from "../base64.ts";
import type { InetSocket, TcpClosing, TcpConnection } from "../model.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";
import {
  boundOrNull,
  type Collected,
  emitBind,
  emitBuffers,
  emitConnect,
  emitOption,
  emitSetInt,
  emitV6only,
  familyNumber,
  formatAddr,
  freshSocket,
  IPPROTO_TCP,
  plainOptions,
  readBuffers,
  readOptions,
  reuseaddrOf,
  sockAddrOf,
} from "./inet.ts";

/**
 * Runs `fn`, the time a connection is in repair mode while it is read, such
 * that a cryo killed meanwhile does not leave it in repair mode where it can
 * (engine/dump/injected.ts `withRepairUndo`: the target switches it off).
 */
export type RepairGuard = <T>(fn: () => T) => T;

/** The largest TCP_MAXSEG the kernel takes (MAX_TCP_WINDOW). */
const MAX_USER_MSS = 32767;

/**
 * The clamp a restored connection's connect() is given through TCP_MAXSEG
 * (connect() sizes the segments from it), or null to leave connect()'s
 * default of 536. A clamp TCP_MAXSEG takes (up to 32767) is given as is.
 * A bigger one (loopback's 65495) is given as 32767 when the peer offered
 * windows of at least twice that (the recorded max_window; the kernel keeps
 * a live connection's segments under half of it): left at 536, such a
 * connection restarted with 524-byte segments, below the window scale's
 * unit (1024 at wscale 10), and hung when its receiver dropped one for lack
 * of memory (its window then shrank under the sender's snd_nxt, and the
 * sender's ACKs, stamped with snd_nxt by tcp_acceptable_seq, fell outside
 * it and were discarded with their window updates, until a backed-off
 * retransmission). With smaller windows it stays at 536: segments larger
 * than what the restored receiver opens (its rcv_mss starts at 536 or
 * less) wait for zero-window probes to go out piecemeal.
 */
export function connectSegmentSize(t: TcpConnection): number | null {
  if (t.mss <= MAX_USER_MSS) return t.mss;
  return t.window.maxWindow >= 2 * MAX_USER_MSS ? MAX_USER_MSS : null;
}

/** Queued bytes are written back in pieces of this size. */
const WRITE_CHUNK = 64 << 10;

/** The dump's choices for TCP sockets (CLI flags). */
export interface TcpDumpChoices {
  /** `--tcp-close`: connections are recorded closed, not read ({@link closedConnection}). */
  closeConnections?: boolean;
  /**
   * `--skip-in-flight`: a listener's connections not accepted yet are left
   * out (its peers see a reset once the tree is killed, and connect again).
   */
  skipInFlight?: boolean;
}

/**
 * Reads TCP socket `copy` (cryo's copy of the target's fd). An established
 * connection is in repair mode only while it is read, and left as it was
 * (`repairCopy`: the caller keeps the copy, to check that nothing arrived
 * since, `bytesReceived`, and to close the connection in repair mode once
 * the tree is killed).
 */
export function collectTcp(
  copy: number,
  family: InetSocket["family"],
  /** Its sk_shutdown as sock_diag reports it (for an established connection). */
  shutdownOf: () => number | undefined,
  /** Runs the connection's time in repair mode ({@link RepairGuard}); by default as is. */
  guard: RepairGuard = (fn) => fn(),
  how: TcpDumpChoices = {},
): Collected {
  const { closeConnections = false, skipInFlight = false } = how;
  const info = tcpInfo(copy);
  const fresh = freshSocket(familyNumber(family), SOCK.STREAM, IPPROTO_TCP);
  let options, buffers;
  try {
    options = readOptions(copy, fresh, "tcp", family);
    buffers = readBuffers(copy, fresh);
  } finally {
    closeFd(fresh);
  }
  const local = boundOrNull(sockAddrOf(sockName(copy)));
  const base = { family, proto: "tcp" as const, local, options, ...(buffers ? { buffers } : {}) };
  switch (info.state) {
    case TCP_STATE.LISTEN:
      // Connections the kernel completed that the program has not accepted: with
      // --skip-in-flight left out (the kernel resets them when the tree is killed).
      if (info.unacked > 0 && !skipInFlight) {
        return {
          refused: "socket.tcp-accept-queue",
          detail: `${info.unacked} waiting on ${formatAddr(local)}`,
        };
      }
      return { inet: { ...base, state: "listen", peer: null, backlog: info.sacked } };
    case TCP_STATE.CLOSE:
      // A socket whose connection ended (or whose connect failed) may hold an
      // error for the process to read; only one that never tried is re-created.
      if ((info.segsOut || info.segsIn) && endedConnection(copy, closeConnections)) {
        return { inet: closedConnection(base) };
      }
      if (info.segsOut || info.segsIn) {
        return {
          refused: "socket.tcp-other",
          detail: `closed after a connection or a failed connect (${formatAddr(local)})`,
        };
      }
      // Never connected, maybe shut down (an ended connection cryo restored is such a socket):
      // poll shows the receive side; the send side of a closed socket shows nowhere (send
      // says EPIPE either way), taken as shut down with it.
      return {
        inet: {
          ...base,
          state: "closed",
          peer: null,
          ...(receiveShutDown(copy) ? { shutdown: 3 } : {}),
        },
      };
    case TCP_STATE.ESTABLISHED:
    case TCP_STATE.FIN_WAIT1:
    case TCP_STATE.FIN_WAIT2:
    case TCP_STATE.CLOSE_WAIT:
    case TCP_STATE.LAST_ACK:
    case TCP_STATE.CLOSING: {
      if (closeConnections) return { inet: closedConnection(base) };
      const peer = sockAddrOf(peerName(copy));
      const where = `${formatAddr(local)} -> ${formatAddr(peer)}`;
      const shutdown = shutdownOf();
      if (shutdown === undefined) {
        return { refused: "socket.tcp-other", detail: `${where} not found by sock_diag` };
      }
      if (urgentPending(copy)) return { refused: "socket.tcp-urgent", detail: where };
      if (!inInitialUserNs()) return { refused: "socket.tcp-rootless", detail: where };
      // Read before the sequence numbers: data arriving in between fails the dump, never lost.
      const bytesReceived = tcpInfo(copy).bytesReceived;
      const c = guard(() => {
        setRepair(copy, true);
        try {
          pausePoint("tcp-repair");
          return readRepairedConnection(copy);
        } finally {
          // Repair mode ends at once: a cryo killed from here on leaves the socket as it was.
          setRepair(copy, false);
          setsockoptInt(copy, SOL.SOCKET, SO.REUSEADDR, reuseaddrOf(base));
        }
      });
      if (!repairableState(c.state)) {
        // Its last ACK came while it was read (LAST_ACK -> CLOSE): no connection left to save.
        return {
          refused: "socket.tcp-other",
          detail: `${where} became ${tcpStateName(c.state)} while it was read; try again`,
        };
      }
      const closing = CLOSING_STATES.get(c.state);
      // sk_shutdown beyond what the state says: the program's own shutdown(SHUT_RD).
      const extra = shutdown & ~((finReceived(closing) ? 1 : 0) | (finSent(closing) ? 2 : 0));
      if (extra & 2) {
        return { refused: "socket.tcp-other", detail: `${where} shut down for writing, no FIN` };
      }
      return {
        repairCopy: true,
        bytesReceived,
        inet: {
          ...base,
          state: "established",
          peer,
          tcp: {
            peerInTree: false,
            sndSeq: c.sndSeq,
            rcvSeq: c.rcvSeq,
            sendQueue: encodeBase64(c.sendQueue),
            unsent: c.unsent,
            recvQueue: encodeBase64(c.recvQueue),
            mss: c.options.mss,
            wscale: c.options.wscale,
            sack: c.options.sack,
            timestamps: c.options.timestamps,
            timestamp: c.timestamp,
            window: c.window,
            ...(closing ? { closing } : {}),
            ...(extra & 1 ? { readShut: true as const } : {}),
          },
        },
      };
    }
    default:
      return {
        refused: "socket.tcp-other",
        detail: `${tcpStateName(info.state)} (${formatAddr(local)})`,
      };
  }
}

/** The connection states other than established, by tcp_info state. */
const CLOSING_STATES = new Map<number, TcpClosing>([
  [TCP_STATE.FIN_WAIT1, "fin-wait1"],
  [TCP_STATE.FIN_WAIT2, "fin-wait2"],
  [TCP_STATE.CLOSE_WAIT, "close-wait"],
  [TCP_STATE.LAST_ACK, "last-ack"],
  [TCP_STATE.CLOSING, "closing"],
]);

/** Whether this side's FIN is part of a connection in state `c` (queued, sent or acknowledged). */
export function finSent(c: TcpClosing | undefined): boolean {
  return c === "fin-wait1" || c === "fin-wait2" || c === "last-ack" || c === "closing";
}

/** Whether a connection in state `c` received its peer's FIN. */
export function finReceived(c: TcpClosing | undefined): boolean {
  return c === "close-wait" || c === "last-ack" || c === "closing";
}

/**
 * A connection as `--tcp-close` records it: a TCP socket that is not
 * connected, shut down both ways (reads give 0, writes EPIPE, poll says
 * POLLHUP), unbound (its port belonged to the connection), with its options.
 */
export function closedConnection(
  base: Pick<InetSocket, "family" | "proto" | "options" | "buffers">,
): InetSocket {
  const { family, proto, buffers } = base;
  // The segment size and window clamp of a socket that was connected are its connection's
  // (a loopback MSS above what setsockopt takes): a fresh socket's are kept.
  const options = base.options.filter((o) =>
    o.level !== SOL.TCP || (o.name !== TCP.MAXSEG && o.name !== TCP.WINDOW_CLAMP)
  );
  return {
    family,
    proto,
    options,
    ...(buffers ? { buffers } : {}),
    state: "closed",
    local: null,
    peer: null,
    shutdown: 3,
  };
}

/**
 * Whether TCP socket `copy`, in TCP_CLOSE after traffic, is a connection
 * that ended (both FINs, or a reset whose error was read: the kernel shut
 * it down both ways, which poll shows as POLLRDHUP) with nothing left to
 * read and no error pending: the program sees exactly a closed socket shut
 * down both ways ({@link closedConnection}). With `--tcp-close`
 * (`dropQueued`) bytes still queued are dropped. A socket disconnected
 * with connect(AF_UNSPEC), which may connect again, is not shut down.
 */
function endedConnection(copy: number, dropQueued: boolean): boolean {
  if (hasPendingError(copy) || !receiveShutDown(copy)) return false;
  return dropQueued || inqBytes(copy) === 0;
}

/** write_seq of the restored socket before its FIN is put back (`sndSeq` less the FIN). */
export function sendSeqBeforeFin(t: TcpConnection): number {
  return (t.sndSeq - (finSent(t.closing) ? 1 : 0)) >>> 0;
}

/** rcv_nxt of the restored socket before the peer's FIN is put back. */
export function receiveSeqBeforeFin(t: TcpConnection): number {
  return (t.rcvSeq - (finReceived(t.closing) ? 1 : 0)) >>> 0;
}

/**
 * The receive window to set: the kernel refuses a rcv_wup after rcv_nxt,
 * and the recorded one may count the peer's FIN, which the restored socket
 * has not received yet; it then starts at rcv_nxt, the window one longer
 * (the same right edge).
 */
export function windowBeforeFin(t: TcpConnection): TcpConnection["window"] {
  const rcvNxt = receiveSeqBeforeFin(t);
  const ahead = (t.window.rcvWup - rcvNxt) | 0;
  if (ahead <= 0) return t.window;
  return { ...t.window, rcvWup: rcvNxt, rcvWnd: t.window.rcvWnd + ahead };
}

/** A queue this small fits a default buffer again (tcp_wmem[1] is 16 KiB, tcp_rmem[1] 128 KiB). */
const DEFAULT_ROOM = 16 << 10;

/**
 * Room a restored queue of `bytes` needs in its socket buffer. The kernel
 * charges each queued skb's truesize (payload and bookkeeping) against
 * sk_sndbuf / sk_rcvbuf, and the restored queue is cut into skbs
 * differently from the original's: the recorded size, which held the
 * original queue, may fall short by that overhead. A quarter more and
 * 256 KiB covers it (64 KiB writes: a few hundred bytes per skb).
 */
function roomFor(bytes: number): number {
  return bytes + (bytes >> 2) + (256 << 10);
}

/**
 * Emits the size of a connection's send or receive buffer, set with the
 * FORCE option (repair mode needs CAP_NET_ADMIN anyway): exactly as
 * recorded (`saved`, the doubled value getsockopt gave), not capped by
 * net.core.wmem_max / rmem_max as SO_SNDBUF / SO_RCVBUF would be, and
 * raised to {@link roomFor} the queue while it is put back (set to the
 * recorded size again afterwards). A socket too small for its queue made
 * the restore block forever on the write (the peer's window is often 0:
 * nothing drains it) or fail with ENOBUFS. A buffer not recorded (the
 * kernel's default, autotuned) is left alone for a small queue; for a
 * bigger one it is set (and so locked, as SO_SNDBUF locks it).
 */
function emitQueueBuffer(
  p: ProgramBuilder,
  fdSlot: number,
  force: number,
  saved: number | undefined,
  queued: number,
  what: string,
): void {
  // Not recorded: the buffer was the kernel's default (tcp_wmem/tcp_rmem), left so (not
  // locked) unless the queue is more than a default buffer surely holds again.
  if (saved === undefined && queued <= DEFAULT_ROOM) return;
  const size = Math.max(saved ?? 0, queued ? roomFor(queued) : 0);
  if (size === 0) return;
  emitSetInt(
    p,
    fdSlot,
    SOL.SOCKET,
    force,
    Math.ceil(size / 2),
    `${what} buffer ${size}` +
      (saved === undefined
        ? " (not recorded: the default)"
        : saved < size
        ? ` (saved ${saved})`
        : ""),
  );
}

function emitWrites(p: ProgramBuilder, fdSlot: number, bytes: Uint8Array, what: string): void {
  for (let at = 0; at < bytes.length; at += WRITE_CHUNK) {
    const piece = bytes.subarray(at, Math.min(at + WRITE_CHUNK, bytes.length));
    p.op(SYS.write, [slot(fdSlot), p.data(piece, 1), piece.length], {
      comment: `${piece.length} bytes of ${what}`,
    });
  }
}

/**
 * Emits the ops re-creating TCP socket `s` into `fdSlot` (created blocking;
 * the fd's status flags are set later with the other fds').
 */
export function emitTcp(p: ProgramBuilder, fdSlot: number, s: InetSocket, label: string): void {
  p.op(SYS.socket, [familyNumber(s.family), SOCK.STREAM, IPPROTO_TCP], {
    store: fdSlot,
    comment: `${label}: tcp ${s.tcp?.closing ?? s.state} ${formatAddr(s.local)}${
      s.peer ? ` -> ${formatAddr(s.peer)}` : ""
    }`,
  });
  if (s.state !== "established" || !s.tcp) {
    emitV6only(p, fdSlot, s);
    for (const o of plainOptions(s)) emitOption(p, fdSlot, o);
    emitBuffers(p, fdSlot, s.buffers);
    if (s.local) {
      // The old socket is gone, but its port may still have TIME_WAIT connections.
      emitSetInt(p, fdSlot, SOL.SOCKET, SO.REUSEADDR, 1, "SO_REUSEADDR for bind");
      if (s.reuseportGroup) {
        emitSetInt(
          p,
          fdSlot,
          SOL.SOCKET,
          SO.REUSEPORT,
          1,
          "SO_REUSEPORT for bind: joins its group",
        );
      }
      emitBind(p, fdSlot, s);
    }
    if (s.state === "listen") {
      p.op(SYS.listen, [slot(fdSlot), s.backlog ?? 128], { comment: `backlog ${s.backlog}` });
    }
    // SO_REUSEPORT off again once the whole group listens (finishInetSockets): a listener
    // joins only a group whose members have it on.
    emitSetInt(p, fdSlot, SOL.SOCKET, SO.REUSEADDR, reuseaddrOf(s), "SO_REUSEADDR as saved");
    if (s.shutdown) {
      // A connection closed by --tcp-close: not connected, the kernel sets the bits and
      // still says ENOTCONN.
      p.op(SYS.shutdown, [slot(fdSlot), s.shutdown - 1], {
        comment: `shutdown ${["", "SHUT_RD", "SHUT_WR", "SHUT_RDWR"][s.shutdown]} (--tcp-close)`,
        allowFail: true,
      });
    }
    return;
  }
  const t = s.tcp;
  const send = decodeBase64(t.sendQueue);
  const recv = decodeBase64(t.recvQueue);
  const sent = send.subarray(0, send.length - t.unsent);
  emitSetInt(p, fdSlot, SOL.TCP, TCP.REPAIR, 1, "TCP_REPAIR on");
  emitV6only(p, fdSlot, s);
  emitSetInt(p, fdSlot, SOL.TCP, TCP.REPAIR_QUEUE, REPAIR_QUEUE.SEND, "send queue");
  // A FIN either way is put back in finishTcp(): the sequence numbers without it.
  const sndSeq = sendSeqBeforeFin(t), rcvSeq = receiveSeqBeforeFin(t);
  emitSetInt(p, fdSlot, SOL.TCP, TCP.QUEUE_SEQ, (sndSeq - send.length) >>> 0 | 0, "snd_una");
  emitSetInt(p, fdSlot, SOL.TCP, TCP.REPAIR_QUEUE, REPAIR_QUEUE.RECV, "receive queue");
  emitSetInt(p, fdSlot, SOL.TCP, TCP.QUEUE_SEQ, (rcvSeq - recv.length) >>> 0 | 0, "rcv_nxt");
  // Buffers big enough for the queues put back below (and the unsent bytes, finishTcp).
  emitQueueBuffer(p, fdSlot, SO.SNDBUFFORCE, s.buffers?.snd, send.length, "send");
  emitQueueBuffer(p, fdSlot, SO.RCVBUFFORCE, s.buffers?.rcv, recv.length, "receive");
  emitBind(p, fdSlot, s);
  if (t.timestamps) {
    emitSetInt(p, fdSlot, SOL.TCP, TCP.TIMESTAMP, t.timestamp | 0, "timestamp clock");
  }
  // connect() sizes the segments (mss_cache, what TCP_MAXSEG reads) from the clamp it sees,
  // 536 by default: TCP_REPAIR_OPTIONS sets the negotiated clamp only after it. TCP_MAXSEG
  // (user_mss) gives connect() the clamp, and is cleared after it ({@link connectSegmentSize}).
  const userMss = connectSegmentSize(t);
  if (userMss) emitSetInt(p, fdSlot, SOL.TCP, TCP.MAXSEG, userMss, "the clamp for connect");
  emitConnect(p, fdSlot, s, " (repair mode: no handshake)");
  if (userMss) emitSetInt(p, fdSlot, SOL.TCP, TCP.MAXSEG, 0, "no user mss");
  const opts = encodeRepairOptions({
    mss: t.mss,
    wscale: t.wscale,
    sack: t.sack,
    timestamps: t.timestamps,
  });
  p.op(SYS.setsockopt, [slot(fdSlot), SOL.TCP, TCP.REPAIR_OPTIONS, p.data(opts, 8), opts.length], {
    comment: `mss ${t.mss}, wscale ${t.wscale ? `${t.wscale.snd}/${t.wscale.rcv}` : "off"}` +
      `${t.sack ? ", sack" : ""}${t.timestamps ? ", timestamps" : ""}`,
  });
  if (recv.length) {
    emitSetInt(p, fdSlot, SOL.TCP, TCP.REPAIR_QUEUE, REPAIR_QUEUE.RECV, "receive queue");
    emitWrites(p, fdSlot, recv, "the receive queue");
    // Its recorded size back: the queue, already charged, stays (the window is 0 until it is read).
    if (s.buffers?.rcv && s.buffers.rcv < roomFor(recv.length)) {
      emitSetInt(p, fdSlot, SOL.SOCKET, SO.RCVBUFFORCE, s.buffers.rcv >> 1, "SO_RCVBUF as saved");
    }
  }
  if (sent.length) {
    emitSetInt(p, fdSlot, SOL.TCP, TCP.REPAIR_QUEUE, REPAIR_QUEUE.SEND, "send queue");
    emitWrites(p, fdSlot, sent, "the send queue (sent, not acknowledged)");
  }
  const window = windowBeforeFin(t);
  const win = tcpRepairWindow.encode(window);
  p.op(SYS.setsockopt, [slot(fdSlot), SOL.TCP, TCP.REPAIR_WINDOW, p.data(win, 4), win.length], {
    comment: `window: snd ${window.sndWnd}, rcv ${window.rcvWnd}`,
  });
  emitSetInt(p, fdSlot, SOL.TCP, TCP.REPAIR_QUEUE, REPAIR_QUEUE.NONE, "no queue");
  for (const o of plainOptions(s)) emitOption(p, fdSlot, o);
  // Repair mode ends in finishTcp(), once every socket of the tree exists.
}

/**
 * The recorded send buffer size that {@link finishTcp} sets again once the
 * send queue is back, when the restore raised the buffer for the queue;
 * undefined when it was not raised.
 */
export function sendBufferAfter(s: InetSocket): number | undefined {
  const saved = s.buffers?.snd;
  const queued = s.tcp ? decodeBase64(s.tcp.sendQueue).length : 0;
  return saved && queued && saved < roomFor(queued) ? saved : undefined;
}

/**
 * The end of an established connection's restore, done by the engine once
 * every process of the tree has run its restore program (so the peer of a
 * connection inside the tree exists and the listener's port holds no
 * half-restored socket): through a copy of the restored fd, repair mode
 * off (the kernel sends a window probe, to which the peer answers with an
 * ACK), SO_REUSEADDR as saved (repair mode overrode it), then the bytes
 * that were never sent, written as ordinary data (never blocking: a send
 * buffer still full after a bounded wait fails the restore), and the send
 * buffer's recorded size if it was raised for the queue. A connection shut
 * down one way or both gets its FINs back here ({@link restoreFins}).
 */
export function finishTcp(pid: number, fd: number, s: InetSocket): void {
  const copy = pidfdGetfd(pid, fd);
  try {
    finishTcpCopy(copy, s, `process ${pid} fd ${fd}`);
  } finally {
    closeFd(copy);
  }
}

/**
 * {@link finishTcp} through `copy`, an fd of cryo's own on the restored
 * connection (a tree fd's pidfd_getfd copy, or one peeked from the queue of
 * a message that carries it, engine/fds/unix_scm.ts); `where` names it.
 */
export function finishTcpCopy(copy: number, s: InetSocket, where: string): void {
  const t = s.tcp!;
  const send = decodeBase64(t.sendQueue);
  const unsent = send.subarray(send.length - t.unsent);
  if (t.closing === "fin-wait2") {
    // Its FIN was sent and acknowledged: queued as sent (repair mode, the send queue
    // selected: nothing goes out), the peer's ACK of it comes in restoreFins.
    setsockoptInt(copy, SOL.TCP, TCP.REPAIR_QUEUE, REPAIR_QUEUE.SEND);
    shutdownSocket(copy, SHUT.WR);
  }
  setRepair(copy, false);
  setsockoptInt(copy, SOL.SOCKET, SO.REUSEADDR, reuseaddrOf(s));
  if (unsent.length) roomForUnsent(copy, unsent.length);
  writeAll(copy, unsent, `${where}: unsent data`);
  restoreFins(copy, s);
  // The send buffer as saved, once the queue is back (emitQueueBuffer or roomForUnsent
  // raised it).
  const saved = unsent.length ? s.buffers?.snd : sendBufferAfter(s);
  if (saved !== undefined) setsockoptInt(copy, SOL.SOCKET, SO.SNDBUFFORCE, saved >> 1);
  // Which sizes are fixed, as saved: the sizes set above and in the program locked them.
  const lock = s.buffers?.lock ?? (unsent.length ? 0 : undefined);
  if (lock !== undefined) setsockoptInt(copy, SOL.SOCKET, SO.BUF_LOCK, lock);
}

/**
 * Raises the send buffer of `copy` for `unsent` bytes about to be written
 * as ordinary data: they are cut into skbs at the restored socket's segment
 * size (524 bytes for a loopback clamp above 32767, see emitTcp), whose
 * truesize can be several times their length, more than the buffer sized
 * for the queue; a write that fills the buffer waits for ACKs that a peer
 * whose window is closed never sends, and the restore failed after its
 * wait (3 MB unsent, FIN_WAIT1 or LAST_ACK behind a full receiver). Four
 * times the bytes on top of what the buffer holds; {@link finishTcp} sets
 * the recorded size (or the autotuned default, unlocked) again after.
 */
function roomForUnsent(copy: number, unsent: number): void {
  const now = getsockoptInt(copy, SOL.SOCKET, SO.SNDBUF) ?? 0; // doubled, as the kernel keeps it
  setsockoptInt(copy, SOL.SOCKET, SO.SNDBUFFORCE, Math.min((now >> 1) + unsent * 4, 0x3fffffff));
}

/**
 * Puts back the FINs of a connection shut down one way or both (`copy`, out
 * of repair mode, every byte queued). This side's FIN: shutdown(SHUT_WR),
 * which queues it after the bytes and sends it (again, for the peer, which
 * may have it: a duplicate, acknowledged again), FIN_WAIT1; or was queued
 * as sent already (FIN_WAIT2, {@link finishTcp}). The peer's FIN, and its
 * ACK of this side's FIN (FIN_WAIT2): segments written as the peer's
 * (ffi/tcp_inject.ts; TCP repair mode cannot queue a FIN), which the
 * kernel takes in as it took the originals, moving the state on. The
 * order gives the recorded state: CLOSING is FIN_WAIT1 then the peer's
 * FIN, LAST_ACK the peer's FIN then this side's. Then shutdown(SHUT_RD)
 * where the program had shut its receive side itself.
 */
export function restoreFins(copy: number, s: InetSocket): void {
  const t = s.tcp!;
  const c = t.closing;
  if (c) {
    const segment = (flags: number, ack: number) =>
      injectSegment({
        family: s.family,
        from: s.peer!,
        to: s.local!,
        seq: receiveSeqBeforeFin(t),
        ack,
        flags,
        window: t.window.sndWnd >>> (t.wscale?.snd ?? 0),
      });
    // snd_una now: write_seq (without the FIN, plus the unsent bytes written) less SIOCOUTQ.
    const writeSeq = (withFin: boolean) => (sendSeqBeforeFin(t) + (withFin ? 1 : 0)) >>> 0;
    const sndUna = (withFin: boolean) => (writeSeq(withFin) - outqBytes(copy)) >>> 0;
    if (c === "fin-wait1" || c === "closing") shutdownSocket(copy, SHUT.WR);
    if (finReceived(c)) segment(TCP_FLAG.FIN | TCP_FLAG.ACK, sndUna(c === "closing"));
    if (c === "last-ack") shutdownSocket(copy, SHUT.WR);
    if (c === "fin-wait2") segment(TCP_FLAG.ACK, writeSeq(true));
    const want = TCP_STATE[c.toUpperCase().replace("-", "_") as keyof typeof TCP_STATE];
    const got = waitState(copy, want);
    if (got !== want) {
      throw new Error(`its state after the FINs is ${tcpStateName(got)}, not ${c}`);
    }
  }
  if (t.readShut) shutdownSocket(copy, SHUT.RD);
}

/** The state of `fd` once it is `want`, or after 1 s (a segment taken in by softirq). */
function waitState(fd: number, want: number): number {
  const until = performance.now() + 1000;
  for (;;) {
    const state = tcpInfo(fd).state;
    if (state === want || performance.now() > until) return state;
    sleepMs(1);
  }
}
