/**
 * TCP repair mode (Linux `TCP_REPAIR`): the option numbers, `tcp_info`
 * fields cryo reads, `struct tcp_repair_window` and the
 * `struct tcp_repair_opt` list, plus reading one connection's state from
 * a socket already in repair mode.
 *
 * @module
 */

import { tcpRepairWindow } from "./structs.ts";
import {
  getsockoptBytes,
  getsockoptInt,
  getsockoptIntChecked,
  inqBytes,
  outqBytes,
  peekBytes,
  setsockoptInt,
  SOL,
  unsentBytes,
} from "./net.ts";
import { SyscallError } from "./libc.ts";

/** SOL_TCP option numbers. */
export const TCP = {
  NODELAY: 1,
  MAXSEG: 2,
  CORK: 3,
  KEEPIDLE: 4,
  KEEPINTVL: 5,
  KEEPCNT: 6,
  SYNCNT: 7,
  LINGER2: 8,
  DEFER_ACCEPT: 9,
  WINDOW_CLAMP: 10,
  INFO: 11,
  CONGESTION: 13,
  USER_TIMEOUT: 18,
  REPAIR: 19,
  REPAIR_QUEUE: 20,
  QUEUE_SEQ: 21,
  REPAIR_OPTIONS: 22,
  FASTOPEN: 23,
  TIMESTAMP: 24,
  NOTSENT_LOWAT: 25,
  REPAIR_WINDOW: 29,
  ULP: 31,
} as const;

/** TCP_REPAIR_QUEUE values. */
export const REPAIR_QUEUE = { NONE: 0, RECV: 1, SEND: 2 } as const;

/** TCP states as tcp_info reports them. */
export const TCP_STATE = {
  ESTABLISHED: 1,
  SYN_SENT: 2,
  SYN_RECV: 3,
  FIN_WAIT1: 4,
  FIN_WAIT2: 5,
  TIME_WAIT: 6,
  CLOSE: 7,
  CLOSE_WAIT: 8,
  LAST_ACK: 9,
  LISTEN: 10,
  CLOSING: 11,
} as const;

/**
 * Whether `state` is one of a connection that TCP repair can carry over:
 * established, or shut down one way or both (FIN_WAIT1, FIN_WAIT2,
 * CLOSE_WAIT, LAST_ACK, CLOSING).
 */
export function repairableState(state: number): boolean {
  return state === TCP_STATE.ESTABLISHED || state === TCP_STATE.FIN_WAIT1 ||
    state === TCP_STATE.FIN_WAIT2 || state === TCP_STATE.CLOSE_WAIT ||
    state === TCP_STATE.LAST_ACK || state === TCP_STATE.CLOSING;
}

/**
 * The states in which this side's FIN is queued and not acknowledged yet
 * (it counts one in write_seq, SIOCOUTQ and, not sent yet, SIOCOUTQNSD,
 * but has no byte in the queue).
 */
export function finQueued(state: number): boolean {
  return state === TCP_STATE.FIN_WAIT1 || state === TCP_STATE.CLOSING ||
    state === TCP_STATE.LAST_ACK;
}

/** Name of a TCP state number. */
export function tcpStateName(state: number): string {
  for (const [k, v] of Object.entries(TCP_STATE)) if (v === state) return k.toLowerCase();
  return `state ${state}`;
}

/** The fields of `struct tcp_info` cryo uses. */
export interface TcpInfo {
  state: number;
  /** TCPI_OPT_* bits: 1 timestamps, 2 SACK, 4 window scaling. */
  options: number;
  sndWscale: number;
  rcvWscale: number;
  /** For a listener: connections waiting in the accept queue. */
  unacked: number;
  /** For a listener: the backlog given to listen(). */
  sacked: number;
  /** Segments sent and received (both 0 for a socket that never tried to connect). */
  segsOut: number;
  segsIn: number;
  /** tcpi_bytes_received: grows with rcv_nxt (0 if the kernel did not report it). */
  bytesReceived: bigint;
}

/** TCPI_OPT_* bits. */
export const TCPI_OPT = { TIMESTAMPS: 1, SACK: 2, WSCALE: 4 } as const;

/** Reads TCP_INFO (the first 144 bytes: up to tcpi_segs_in). */
export function tcpInfo(fd: number): TcpInfo {
  const b = getsockoptBytes(fd, SOL.TCP, TCP.INFO, 144);
  if (typeof b === "number") throw new SyscallError("getsockopt(TCP_INFO)", [fd], -b);
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  return {
    state: b[0],
    options: b[5],
    sndWscale: b[6] & 0xf,
    rcvWscale: b[6] >> 4,
    unacked: dv.getUint32(24, true),
    sacked: dv.getUint32(28, true),
    segsOut: b.length >= 144 ? dv.getUint32(136, true) : 0,
    segsIn: b.length >= 144 ? dv.getUint32(140, true) : 0,
    bytesReceived: b.length >= 136 ? dv.getBigUint64(128, true) : 0n,
  };
}

/** The window state read with TCP_REPAIR_WINDOW. */
export interface RepairWindow {
  sndWl1: number;
  sndWnd: number;
  maxWindow: number;
  rcvWnd: number;
  rcvWup: number;
}

/** TCP options negotiated at the handshake, as TCP_REPAIR_OPTIONS takes them. */
export interface RepairOptions {
  mss: number;
  /** Window scaling shifts, or null without window scaling. */
  wscale: { snd: number; rcv: number } | null;
  sack: boolean;
  timestamps: boolean;
}

const TCPOPT = { MSS: 2, WINDOW: 3, SACK_PERM: 4, TIMESTAMP: 8 } as const;

/** Encodes the `struct tcp_repair_opt` list for TCP_REPAIR_OPTIONS. */
export function encodeRepairOptions(o: RepairOptions): Uint8Array<ArrayBuffer> {
  const list: [number, number][] = [[TCPOPT.MSS, o.mss]];
  if (o.wscale) list.push([TCPOPT.WINDOW, o.wscale.snd | (o.wscale.rcv << 16)]);
  if (o.sack) list.push([TCPOPT.SACK_PERM, 0]);
  if (o.timestamps) list.push([TCPOPT.TIMESTAMP, 0]);
  const out = new Uint8Array(list.length * 8);
  const dv = new DataView(out.buffer);
  list.forEach(([code, val], i) => {
    dv.setUint32(i * 8, code, true);
    dv.setUint32(i * 8 + 4, val, true);
  });
  return out;
}

/** What a connection in repair mode tells about itself. */
export interface RepairedConnection {
  /** The TCP state the queues were read in (the same before and after). */
  state: number;
  /** Sequence number after the last byte queued for sending (write_seq; after this side's FIN). */
  sndSeq: number;
  /** Sequence number of the next byte expected from the peer (rcv_nxt; after its FIN). */
  rcvSeq: number;
  /** The whole send queue: sent but unacknowledged, then unsent bytes (no FIN). */
  sendQueue: Uint8Array;
  /** How many bytes at the end of the send queue were never sent (no FIN). */
  unsent: number;
  /** Bytes received and not read yet by the process. */
  recvQueue: Uint8Array;
  options: RepairOptions;
  /** The connection's TCP timestamp clock (TCP_TIMESTAMP). */
  timestamp: number;
  window: RepairWindow;
}

function queueSeq(fd: number, queue: number): number {
  setsockoptInt(fd, SOL.TCP, TCP.REPAIR_QUEUE, queue);
  return getsockoptIntChecked(fd, SOL.TCP, TCP.QUEUE_SEQ) >>> 0;
}

function peekAll(fd: number, length: number, what: string): Uint8Array {
  if (length === 0) return new Uint8Array();
  const got = peekBytes(fd, length) ?? new Uint8Array();
  if (got.length !== length) {
    throw new Error(`${what}: peeked ${got.length} of ${length} queued bytes`);
  }
  return got.slice();
}

/**
 * Peeks at the send queue of a socket in repair mode, `queued` bytes when its
 * size was read. The peer's ACKs are still processed in repair mode and free
 * the queue's head meanwhile: fewer bytes may be left, and they are the
 * queue's tail, which ends at write_seq as the whole did (the restore sets
 * snd_una to write_seq minus what was kept). More is an error: nothing is
 * queued while the owner is frozen.
 */
function peekSendQueue(fd: number, queued: number): Uint8Array {
  if (queued === 0) return new Uint8Array();
  const got = peekBytes(fd, queued) ?? new Uint8Array();
  return got.slice();
}

/**
 * Reads rcv_nxt and the receive queue of a socket in repair mode as one
 * state. Segments from the peer are still taken in repair mode: bytes that
 * arrive between the reads would be counted in rcv_nxt (acknowledged to the
 * peer) but missing from the queue read, so the pair is read again until
 * rcv_nxt is the same before and after the queue.
 */
function readReceiveQueue(fd: number): { rcvSeq: number; recvQueue: Uint8Array } {
  for (let attempt = 1;; attempt++) {
    const rcvSeq = queueSeq(fd, REPAIR_QUEUE.RECV);
    const recvQueue = peekAll(fd, inqBytes(fd), "receive queue");
    if (queueSeq(fd, REPAIR_QUEUE.RECV) === rcvSeq) return { rcvSeq, recvQueue };
    if (attempt === 8) throw new Error("receive queue: the peer kept sending while it was read");
  }
}

/**
 * Reads write_seq, the send queue and how much of it is unsent of a socket
 * in repair mode as one state. The peer's ACKs are still taken: they free
 * the queue's head, and one that opens the window lets the kernel mark
 * unsent bytes sent (in repair mode with the send queue selected it skips
 * the wire, the retransmission timer sends them later). So the sizes are
 * read before and after the peek and the whole read again until they hold
 * still; the unsent bytes are never more than the queue read.
 */
function readSendQueue(
  fd: number,
  fin: boolean,
): { sndSeq: number; sendQueue: Uint8Array; unsent: number } {
  // A FIN queued counts one in the sizes, after the last byte (unsent if any byte is).
  const data = (n: number) => fin ? Math.max(0, n - 1) : n;
  for (let attempt = 1;; attempt++) {
    const outq = outqBytes(fd);
    const unsent = unsentBytes(fd);
    const sndSeq = queueSeq(fd, REPAIR_QUEUE.SEND);
    const sendQueue = peekSendQueue(fd, data(outq));
    const still = outqBytes(fd) === outq && unsentBytes(fd) === unsent &&
      queueSeq(fd, REPAIR_QUEUE.SEND) === sndSeq;
    if (still && sendQueue.length === data(outq) && unsent <= outq) {
      return { sndSeq, sendQueue, unsent: data(unsent) };
    }
    if (attempt === 8) throw new Error("send queue: the peer kept acknowledging while it was read");
  }
}

/** Reads the rcv_nxt of a socket in repair mode (to see if data arrived meanwhile). */
export function receiveSequence(fd: number): number {
  return queueSeq(fd, REPAIR_QUEUE.RECV);
}

/**
 * Reads sequence numbers, queues, negotiated options, timestamp and window
 * of a connected socket that is already in repair mode.
 */
export function readRepairedConnection(fd: number): RepairedConnection {
  // A peek starts at the socket's SO_PEEK_OFF (TCP has one since Linux 6.10) and moves it:
  // off while the queues are read, then put back.
  const peekOff = getsockoptInt(fd, SOL.SOCKET, SO_PEEK_OFF);
  if (peekOff !== null && peekOff >= 0) setsockoptInt(fd, SOL.SOCKET, SO_PEEK_OFF, -1);
  try {
    return readQueues(fd);
  } finally {
    if (peekOff !== null && peekOff >= 0) setsockoptInt(fd, SOL.SOCKET, SO_PEEK_OFF, peekOff);
  }
}

/** SO_PEEK_OFF. */
const SO_PEEK_OFF = 42;

/**
 * The queues with the state they were read in: a FIN (or its ACK) that
 * arrives meanwhile changes the state, and everything is read again.
 */
function readQueues(fd: number): RepairedConnection {
  for (let attempt = 1;; attempt++) {
    const state = tcpInfo(fd).state;
    const q = readQueuesIn(fd, state);
    if (tcpInfo(fd).state === state) return q;
    if (attempt === 8) throw new Error("the connection kept changing state while it was read");
  }
}

function readQueuesIn(fd: number, state: number): RepairedConnection {
  const info = tcpInfo(fd);
  const { sndSeq, sendQueue, unsent } = readSendQueue(fd, finQueued(state));
  const { rcvSeq, recvQueue } = readReceiveQueue(fd);
  setsockoptInt(fd, SOL.TCP, TCP.REPAIR_QUEUE, REPAIR_QUEUE.NONE);
  const w = getsockoptBytes(fd, SOL.TCP, TCP.REPAIR_WINDOW, tcpRepairWindow.size);
  if (typeof w === "number") throw new SyscallError("getsockopt(TCP_REPAIR_WINDOW)", [fd], -w);
  const win = tcpRepairWindow.decode(w);
  return {
    state,
    sndSeq,
    rcvSeq,
    sendQueue,
    unsent,
    recvQueue,
    options: {
      // In repair mode TCP_MAXSEG reports the negotiated clamp.
      mss: getsockoptIntChecked(fd, SOL.TCP, TCP.MAXSEG),
      wscale: info.options & TCPI_OPT.WSCALE ? { snd: info.sndWscale, rcv: info.rcvWscale } : null,
      sack: (info.options & TCPI_OPT.SACK) !== 0,
      timestamps: (info.options & TCPI_OPT.TIMESTAMPS) !== 0,
    },
    timestamp: getsockoptIntChecked(fd, SOL.TCP, TCP.TIMESTAMP) >>> 0,
    window: {
      sndWl1: win.sndWl1,
      sndWnd: win.sndWnd,
      maxWindow: win.maxWindow,
      rcvWnd: win.rcvWnd,
      rcvWup: win.rcvWup,
    },
  };
}

/** Switches repair mode of socket `fd` on or off (needs CAP_NET_ADMIN). */
export function setRepair(fd: number, on: boolean): void {
  if (!on) setsockoptInt(fd, SOL.TCP, TCP.REPAIR_QUEUE, REPAIR_QUEUE.NONE);
  setsockoptInt(fd, SOL.TCP, TCP.REPAIR, on ? 1 : 0);
}
