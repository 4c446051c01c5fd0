/**
 * The mmapped rings of AF_PACKET sockets (PACKET_RX_RING, PACKET_TX_RING;
 * TPACKET_V1, V2, V3: what libpcap, so tcpdump, captures through).
 *
 * A ring is blocks of pages the kernel fills in order; each frame (V1/V2)
 * or block (V3) starts with a status word saying whether the kernel owns it
 * or the program does (TP_STATUS_USER: filled, not yet given back). The
 * program keeps its own position (the next frame it reads) in its memory;
 * the kernel keeps its own (the frame or block it fills next) where nothing
 * reads it, and a new ring starts filling at 0. So the dump finds the
 * kernel's position from the ring itself — V1/V2: the frame after the one
 * the kernel filled last (frame headers keep their timestamps after the
 * program gives them back: the timestamps rise round the ring from the
 * kernel's position, with one drop there, or the ring is still empty);
 * V3: the block the kernel opened last (each block header keeps the time it
 * was opened) — and the restore maps the new ring's block 0 where that is
 * in the program's view (two mremaps: the program's view is the old ring
 * turned by whole blocks). Then the kernel fills, in the program's view,
 * the frame the program waits for next.
 *
 * What comes back: frames and blocks the program owns (every byte), the
 * headers of the others (what the next dump reads the position from), the
 * geometry, the mapping at its address with its permissions. Lost: the
 * packets the kernel puts in a V3 block after the block it was filling when
 * the process was frozen (the dump waits for that one to be handed over, up
 * to twice the block timeout), as packets on the wire may be. Refused (`socket.packet-ring`): a V1/V2
 * position inside a block (blocks of several frames: only whole blocks can
 * be moved), timestamps that do not tell the position, a V3 ring whose
 * kernel waits for the program to free a block (full: retry), a tx ring
 * that was used (the kernel's tx position shows nowhere), a ring mapped in
 * pieces that are not the ring turned by whole blocks, or not mapped while
 * the kernel's position is not 0.
 *
 * @module
 */

import { readPacketRings } from "../../ffi/packet_ring.ts";
import type { PacketRingGeometry } from "../../ffi/packet_diag.ts";
import { SYS } from "../../ffi/sysno.ts";
import { decodeBase64, encodeBase64 } from "../base64.ts";
import type { Hex, PacketRing, PacketRingShape } from "../model.ts";
import { type MapEntry, readMaps } from "../proc/maps.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";
import { sleepSync } from "../sleep_sync.ts";

const SOL_PACKET = 263;
const PACKET_RX_RING = 5, PACKET_TX_RING = 13;
const TPACKET_V1 = 0, TPACKET_V3 = 2;
const TP_STATUS_USER = 1;
/** Bytes of a frame's header kept for every frame (tpacket_hdr / tpacket2_hdr, 32 at most). */
const FRAME_HEADER = 32;
/** Bytes of a V3 block's header (`struct tpacket_block_desc`). */
const BLOCK_HEADER = 48;
const PAGE = 4096;

/** Why a ring cannot come back, or the ring. */
export type RingCollected = { ring: PacketRing } | { problem: string };

function shapeOf(g: PacketRingGeometry): PacketRingShape {
  return { ...g };
}

function bytesOf(g: PacketRingShape | undefined): number {
  return g ? g.blockSize * g.blockNr : 0;
}

/** A timestamp as one comparable number (seconds, then the sub-second part). */
function stamp(dv: DataView, at: number, subScale: bigint): bigint {
  return (BigInt(dv.getUint32(at, true)) << 32n) | (BigInt(dv.getUint32(at + 4, true)) * subScale);
}

/**
 * The index the kernel fills next among `n` frames or blocks whose fill
 * (or open) times are `times` (0n: never filled), in fill order round the
 * ring: after the single drop, or 0 for a ring never filled. Undefined when
 * the times do not tell (several drops: a clock set back, or a program that
 * wrote over the headers).
 */
export function nextFilled(times: readonly bigint[]): number | undefined {
  const n = times.length;
  let drop: number | undefined;
  for (let i = 0; i < n; i++) {
    if (times[i] > times[(i + 1) % n]) {
      if (drop !== undefined) return undefined;
      drop = i;
    }
  }
  if (drop === undefined) {
    return times.every((t) => t === times[0]) && times[0] === 0n ? 0 : undefined;
  }
  return (drop + 1) % n;
}

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * Where each byte of the program's view comes from: the kernel offset of
 * user offset 0 of each rx block, checked to be the ring turned by whole
 * blocks. Returns the turn (user block of kernel block 0) or a problem.
 */
function turnOf(
  areas: readonly MapEntry[],
  start: bigint,
  rxBytes: number,
  blockSize: number,
  total: number,
): number | string {
  let turn: number | undefined;
  for (const a of areas) {
    for (let u = a.start; u < a.end; u += BigInt(PAGE)) {
      const user = Number(u - start);
      const kernel = Number(a.offset + (u - a.start));
      if (user >= rxBytes) {
        if (kernel !== user) return "its tx ring is mapped out of place";
        continue;
      }
      if (kernel >= rxBytes) return "its rings are mapped out of order";
      const nBlocks = rxBytes / blockSize;
      const shift = ((Math.floor(user / blockSize) - Math.floor(kernel / blockSize)) % nBlocks +
        nBlocks) % nBlocks;
      if (user % blockSize !== kernel % blockSize) {
        return "its rx ring is mapped in pieces not whole blocks";
      }
      if (turn === undefined) turn = shift;
      else if (turn !== shift) return "its rx ring is mapped in pieces out of order";
    }
  }
  void total;
  return turn ?? 0;
}

/** The program's view of the rings (kernel bytes `k` turned by `turn` rx blocks). */
function userView(k: Uint8Array, rxBytes: number, blockSize: number, turn: number): Uint8Array {
  if (turn === 0) return k;
  const out = new Uint8Array(k.length);
  const cut = turn * blockSize;
  // Kernel blocks [0, n - turn) show at user blocks [turn, n), the rest at [0, turn).
  out.set(k.subarray(0, rxBytes - cut), cut);
  out.set(k.subarray(rxBytes - cut, rxBytes), 0);
  out.set(k.subarray(rxBytes), rxBytes);
  return out;
}

/** Adds `[at, at + len)` of `view` to `saved`, joined to the piece before when they touch. */
function keep(
  saved: { at: number; bytes: Uint8Array }[],
  view: Uint8Array,
  at: number,
  len: number,
) {
  const last = saved[saved.length - 1];
  if (last && last.at + last.bytes.length === at) {
    last.bytes = view.subarray(last.at, at + len);
  } else saved.push({ at, bytes: view.subarray(at, at + len) });
}

interface RxState {
  /** The user block the kernel fills next. */
  next: number;
  /** Pieces to put back. */
  saved: { at: number; bytes: Uint8Array }[];
}

function rxFrames(view: Uint8Array, g: PacketRingShape, version: number): RxState | string {
  const dv = new DataView(view.buffer, view.byteOffset, view.byteLength);
  const perBlock = Math.floor(g.blockSize / g.frameSize);
  const at = (i: number) => Math.floor(i / perBlock) * g.blockSize + (i % perBlock) * g.frameSize;
  const times: bigint[] = [];
  for (let i = 0; i < g.frameNr; i++) {
    times.push(
      version === TPACKET_V1 ? stamp(dv, at(i) + 20, 1000n) : stamp(dv, at(i) + 16, 1n),
    );
  }
  const next = nextFilled(times);
  if (next === undefined) {
    return "the frames' timestamps do not tell which frame the kernel fills next";
  }
  if (next % perBlock !== 0) {
    return `the kernel fills frame ${next} next, inside a block of ${perBlock} frames (only whole blocks can be moved)`;
  }
  const saved: { at: number; bytes: Uint8Array }[] = [];
  for (let i = 0; i < g.frameNr; i++) {
    const off = at(i);
    if (dv.getUint32(off, true) & TP_STATUS_USER) keep(saved, view, off, g.frameSize);
    else if (!isZero(view.subarray(off, off + FRAME_HEADER))) keep(saved, view, off, FRAME_HEADER);
  }
  return { next: next / perBlock, saved };
}

/** V3: the block the kernel opened last, and whether it is still filling it with packets in it. */
function openBlock(
  view: Uint8Array,
  g: PacketRingShape,
): { block?: number; busy: boolean; full: boolean; closed: boolean } {
  const dv = new DataView(view.buffer, view.byteOffset, view.byteLength);
  const opened: bigint[] = [];
  for (let b = 0; b < g.blockNr; b++) opened.push(stamp(dv, b * g.blockSize + 32, 1n));
  let block: number | undefined;
  for (let b = 0; b < g.blockNr; b++) {
    if (opened[b] !== 0n && (block === undefined || opened[b] > opened[block])) block = b;
  }
  if (block === undefined) return { block: 0, busy: false, full: false, closed: false };
  const status = dv.getUint32(block * g.blockSize + 8, true);
  const packets = dv.getUint32(block * g.blockSize + 12, true);
  // A block the kernel closed has the time of its last packet, at or after its open time; the
  // one it fills keeps that of its previous round (or none).
  const last = stamp(dv, block * g.blockSize + 40, 1n);
  return {
    block,
    busy: !(status & TP_STATUS_USER) && packets > 0,
    full: !!(status & TP_STATUS_USER),
    closed: packets > 0 && last !== 0n && last >= opened[block],
  };
}

function rxBlocks(view: Uint8Array, g: PacketRingShape, next: number): RxState {
  const dv = new DataView(view.buffer, view.byteOffset, view.byteLength);
  const saved: { at: number; bytes: Uint8Array }[] = [];
  for (let b = 0; b < g.blockNr; b++) {
    // The block the kernel opens at restore gets a fresh header from it.
    if (b === next) continue;
    const off = b * g.blockSize;
    if (dv.getUint32(off + 8, true) & TP_STATUS_USER) keep(saved, view, off, g.blockSize);
    else if (!isZero(view.subarray(off, off + BLOCK_HEADER))) keep(saved, view, off, BLOCK_HEADER);
  }
  return { next, saved };
}

/** A free range of `size` bytes below 1 TiB (the restore bootstrap goes above), away from `areas`. */
function scratchRange(areas: readonly MapEntry[], size: number): bigint | undefined {
  const margin = 16n << 20n;
  const len = BigInt(Math.ceil(size / (2 << 20)) * (2 << 20));
  let candidate = 1n << 38n;
  for (const a of [...areas].sort((x, y) => (x.start < y.start ? -1 : 1))) {
    if (a.end + margin <= candidate) continue;
    if (candidate + len + margin <= a.start) break;
    candidate = (a.end + margin + (2n << 20n) - 1n) & ~((2n << 20n) - 1n);
  }
  return candidate + len <= 1n << 40n ? candidate : undefined;
}

/**
 * Dump: the rings of packet socket inode `ino` of frozen process `pid`,
 * read through `copy` (cryo's copy of the socket), its PACKET_VERSION
 * `version` and packet_diag's geometries.
 */
export function collectRing(
  pid: number,
  ino: number,
  copy: number,
  version: number,
  rxGeometry: PacketRingGeometry | undefined,
  txGeometry: PacketRingGeometry | undefined,
): RingCollected {
  const rx = rxGeometry && shapeOf(rxGeometry);
  const tx = txGeometry && shapeOf(txGeometry);
  const rxBytes = bytesOf(rx), total = rxBytes + bytesOf(tx);
  const maps = readMaps(pid);
  const name = `socket:[${ino}]`;
  const areas = maps.filter((a) => a.path === name);
  let start: bigint | undefined;
  let perms: string | undefined;
  let turn = 0;
  if (areas.length) {
    start = areas[0].start;
    perms = areas[0].perms;
    let end = start;
    for (const a of areas) {
      if (a.start !== end || a.perms !== perms) {
        return { problem: "its rings are mapped in several places or with different permissions" };
      }
      end = a.end;
    }
    if (Number(end - start) !== total) return { problem: "its rings are mapped in part" };
    const t = rx ? turnOf(areas, start, rxBytes, rx.blockSize, total) : 0;
    if (typeof t === "string") return { problem: t };
    turn = t;
  }
  let kernel = readPacketRings(copy, total);
  if (tx && !isZero(kernel.subarray(rxBytes))) {
    return { problem: "its tx ring was used (the kernel's position in it shows nowhere)" };
  }
  let state: RxState | string = { next: 0, saved: [] };
  if (rx && version === TPACKET_V3) {
    // A block the kernel is filling is handed over at its timeout: wait for that, as long as twice it.
    const deadline = Date.now() + 2 * rx.retireTmo + 100;
    let open = openBlock(userView(kernel, rxBytes, rx.blockSize, turn), rx);
    const filling = open.block;
    // Until that block is handed over (what comes after it, while frozen, is lost as on the wire).
    while (((open.busy && open.block === filling) || open.full) && Date.now() < deadline) {
      sleepSync(10);
      kernel = readPacketRings(copy, total);
      open = openBlock(userView(kernel, rxBytes, rx.blockSize, turn), rx);
    }
    if (open.full) {
      return {
        problem: "the ring is full: the kernel waits for the program to free a block (retry)",
      };
    }
    if (open.closed) {
      // Read and given back, and no block opened after it: the kernel waits to open the next.
      return {
        problem: "the kernel has not opened its next block since the ring was full (retry)",
      };
    }
    state = rxBlocks(userView(kernel, rxBytes, rx.blockSize, turn), rx, open.block ?? 0);
  } else if (rx) {
    state = rxFrames(userView(kernel, rxBytes, rx.blockSize, turn), rx, version);
  }
  if (typeof state === "string") return { problem: state };
  if (start === undefined && state.next !== 0) {
    return { problem: "its ring is not mapped and the kernel's position in it is not 0" };
  }
  let scratch: bigint | undefined;
  if (start !== undefined && state.next !== 0) {
    scratch = scratchRange(maps, total);
    if (scratch === undefined) return { problem: "no free range to map its rings at first" };
  }
  const view = userView(kernel, rxBytes, rx?.blockSize ?? PAGE, turn);
  void view;
  return {
    ring: {
      version,
      ...(rx ? { rx } : {}),
      ...(tx ? { tx } : {}),
      ...(start !== undefined ? { mapping: { start: hex(start), perms: perms! } } : {}),
      rxStart: state.next,
      saved: state.saved.map((s) => ({ at: s.at, data: encodeBase64(s.bytes) })),
      ...(scratch !== undefined ? { scratch: hex(scratch) } : {}),
    },
  };
}

function hex(v: bigint): Hex {
  return `0x${v.toString(16)}`;
}

/** Bytes the restore program carries for `ring`. */
export function ringDataBytes(ring: PacketRing | undefined): number {
  if (!ring) return 0;
  return ring.saved.reduce((n, s) => n + Math.ceil(s.data.length * 3 / 4), 0);
}

function request(g: PacketRingShape, version: number): Uint8Array {
  const b = new Uint8Array(version === TPACKET_V3 ? 28 : 16);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, g.blockSize, true);
  dv.setUint32(4, g.blockNr, true);
  dv.setUint32(8, g.frameSize, true);
  dv.setUint32(12, g.frameNr, true);
  if (version === TPACKET_V3) {
    dv.setUint32(16, g.retireTmo, true);
    dv.setUint32(20, g.sizeofPriv, true);
    dv.setUint32(24, g.features, true);
  }
  return b;
}

/**
 * Restore (program): the rings of the packet socket in `fdSlot` (its
 * version and reserve set already, not bound yet), mapped at the program's
 * address with the kernel's block 0 where the kernel filled next, and the
 * saved bytes put back.
 */
export function emitRing(p: ProgramBuilder, fdSlot: number, ring: PacketRing): void {
  for (
    const [g, opt, what] of [[ring.rx, PACKET_RX_RING, "rx"], [
      ring.tx,
      PACKET_TX_RING,
      "tx",
    ]] as const
  ) {
    if (!g) continue;
    const req = request(g, ring.version);
    p.op(SYS.setsockopt, [slot(fdSlot), SOL_PACKET, opt, p.data(req, 8), req.length], {
      comment:
        `PACKET_${what.toUpperCase()}_RING: ${g.blockNr} block(s) of ${g.blockSize}, ${g.frameNr} frame(s) of ${g.frameSize}`,
    });
  }
  if (!ring.mapping) return;
  const rxBytes = bytesOf(ring.rx), total = rxBytes + bytesOf(ring.tx);
  const start = BigInt(ring.mapping.start);
  const PROT_RW = 3, MAP_SHARED = 1, MAP_FIXED_NOREPLACE = 0x100000, MREMAP_MAYMOVE_FIXED = 3;
  const turn = ring.rxStart;
  if (turn === 0) {
    p.op(SYS.mmap, [start, total, PROT_RW, MAP_SHARED | MAP_FIXED_NOREPLACE, slot(fdSlot), 0], {
      comment: `map the rings at ${ring.mapping.start}`,
    });
  } else {
    const scratch = BigInt(ring.scratch!);
    const cut = BigInt(turn * ring.rx!.blockSize);
    const rx = BigInt(rxBytes);
    p.op(SYS.mmap, [scratch, total, PROT_RW, MAP_SHARED | MAP_FIXED_NOREPLACE, slot(fdSlot), 0], {
      comment: `map the rings at ${ring.scratch} first`,
    });
    p.op(SYS.mremap, [scratch, rx - cut, rx - cut, MREMAP_MAYMOVE_FIXED, start + cut], {
      comment:
        `the kernel's rx block 0 on to the program's block ${turn}, where it was to fill next`,
    });
    p.op(SYS.mremap, [scratch + rx - cut, cut, cut, MREMAP_MAYMOVE_FIXED, start], {
      comment: "and the kernel's last rx blocks before it",
    });
    if (total > rxBytes) {
      const txLen = BigInt(total) - rx;
      p.op(SYS.mremap, [scratch + rx, txLen, txLen, MREMAP_MAYMOVE_FIXED, start + rx], {
        comment: "the tx ring after the rx ring",
      });
    }
  }
  for (const s of ring.saved) {
    const bytes = decodeBase64(s.data);
    p.copy(start + BigInt(s.at), p.data(bytes, 8), bytes.length, {
      comment: `ring bytes ${s.at}-${s.at + bytes.length}`,
    });
  }
  const perms = ring.mapping.perms;
  const prot = (perms[0] === "r" ? 1 : 0) | (perms[1] === "w" ? 2 : 0) | (perms[2] === "x" ? 4 : 0);
  if (prot !== PROT_RW) {
    p.op(SYS.mprotect, [start, total, prot], { comment: `the rings' mapping ${perms}` });
  }
}

/**
 * The first mapping of a packet socket's rings in `mappings` that no
 * socket `sockets` re-creates maps again (one inherited across fork, or
 * whose socket another process makes), or undefined.
 */
export function unclaimedRingMapping(
  mappings: readonly { kind: string; start: Hex; end: Hex }[],
  sockets: readonly (PacketRing | undefined)[],
): string | undefined {
  const claimed: [bigint, bigint][] = [];
  for (const r of sockets) {
    if (!r?.mapping) continue;
    const start = BigInt(r.mapping.start);
    claimed.push([start, start + BigInt(bytesOf(r.rx) + bytesOf(r.tx))]);
  }
  // (Array's own findIndex: no loop of 10,000 rounds here for V8 to compile on-stack, see
  // engine/find_from.ts.)
  const k = mappings.findIndex((m) => {
    if (m.kind !== "packet-ring") return false;
    const s = BigInt(m.start), e = BigInt(m.end);
    return !claimed.some(([a, b]) => a <= s && e <= b);
  });
  return k < 0 ? undefined : `${mappings[k].start}-${mappings[k].end}`;
}
