/**
 * A network lock for TCP connections whose process tree is down: a BPF
 * program on the ingress of network devices (tcx, Linux 6.6+) that drops
 * every segment of the given connections, so that the kernel, which has no
 * socket for them any more, does not answer the peer with a reset. The
 * peer's segments go unanswered and are sent again once the restored
 * sockets are there. The program is attached through links pinned in a BPF
 * file system, which keep it in place after cryo exits; removing the pins
 * detaches it.
 *
 * The program, assembled here, reads the network header with
 * bpf_skb_load_bytes_relative (from the network header, whatever the link
 * layer), takes IPv4 and IPv6 TCP segments (IPv6 extension headers are
 * not followed: such a segment passes), and compares source address,
 * destination address and both ports with each connection's, as
 * immediates. A match returns TCX_DROP, anything else TCX_NEXT; a segment
 * marked INJECT_MARK (the restore's own, ffi/tcp_inject.ts) passes. The UAPI
 * numbers below are the kernel's stable ones (include/uapi/linux/bpf.h);
 * tests/tcp_lock_test.ts checks them against the running kernel's BTF.
 *
 * @module
 */

import { addressOf, cstr } from "./libc.ts";
import { INJECT_MARK } from "./tcp_inject.ts";
import {
  BPF_CMD,
  BpfError,
  bpfSyscall,
  encodeInsns,
  exit,
  insn,
  loadProgram,
  mov64,
  mov64Imm,
} from "./bpf.ts";

/** BPF_PROG_TYPE_SCHED_CLS (enum bpf_prog_type). */
export const BPF_PROG_TYPE_SCHED_CLS = 3;
/** BPF_TCX_INGRESS (enum bpf_attach_type). */
export const BPF_TCX_INGRESS = 46;
/** BPF_F_BEFORE (link flags): attach before the programs already there (first, without a relative). */
export const BPF_F_BEFORE = 1 << 3;
/** The bpf_skb_load_bytes_relative helper (enum bpf_func_id). */
export const SKB_LOAD_BYTES_RELATIVE = 68;
/** BPF_HDR_START_NET: offsets from the network header. */
const HDR_START_NET = 1;
/** enum tcx_action_base. */
export const TCX = { NEXT: -1, DROP: 2 } as const;
/** Offset of `mark` in struct __sk_buff. */
const SKB_MARK = 8;
/** Offset of `protocol` (__be16 in a u32) in struct __sk_buff. */
const SKB_PROTOCOL = 16;
/** ETH_P_IP and ETH_P_IPV6 as `protocol` holds them (network order, read little-endian). */
const PROTO_IPV4 = 0x0008, PROTO_IPV6 = 0xdd86;
const IPPROTO_TCP = 6;

/** One connection to lock, as its incoming segments carry it. */
export interface LockedConnection {
  /** The peer's address (4 or 16 bytes, network order): the segments' source. */
  peer: Uint8Array;
  /** The peer's port: the segments' source port. */
  peerPort: number;
  /** This side's address (the same length): the segments' destination. */
  local: Uint8Array;
  /** This side's port. */
  localPort: number;
}

type Item = number[] | { jump: number; dst: number; imm: number; to: string } | string;

const R0 = 0, R1 = 1, R2 = 2, R3 = 3, R4 = 4, R5 = 5, R6 = 6, R10 = 10;
/** BPF_LDX | BPF_MEM | BPF_W / BPF_B. */
const ldx32 = (dst: number, src: number, off: number) => insn(0x61, dst, src, off, 0);
const ldx8 = (dst: number, src: number, off: number) => insn(0x71, dst, src, off, 0);
/** Jumps to a label: if dst op imm (64-bit or 32-bit compare), or always. */
const jne = (dst: number, imm: number, to: string): Item => ({ jump: 0x55, dst, imm, to });
const jeq = (dst: number, imm: number, to: string): Item => ({ jump: 0x15, dst, imm, to });
const jne32 = (dst: number, imm: number, to: string): Item => ({ jump: 0x56, dst, imm, to });
const ja = (to: string): Item => ({ jump: 0x05, dst: 0, imm: 0, to });

/** Little-endian u32 of 4 bytes, as a signed 32-bit immediate. */
function word(b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) | 0;
}

/** The two ports as the TCP header's first 4 bytes read little-endian. */
function ports(c: LockedConnection): number {
  const b = new Uint8Array([
    c.peerPort >> 8,
    c.peerPort & 0xff,
    c.localPort >> 8,
    c.localPort & 0xff,
  ]);
  return word(b, 0);
}

/** bpf_skb_load_bytes_relative(skb, offset in r2, fp + to, len, from the network header). */
function loadBytes(to: number, len: number, offset?: number): Item[] {
  return [
    mov64(R1, R6),
    ...(offset === undefined ? [] : [mov64Imm(R2, offset)]),
    mov64(R3, R10),
    insn(0x07, R3, 0, 0, to), // r3 += to
    mov64Imm(R4, len),
    mov64Imm(R5, HDR_START_NET),
    insn(0x85, 0, 0, 0, SKB_LOAD_BYTES_RELATIVE),
    jne(R0, 0, "next"),
  ];
}

/** Compares the 32-bit stack words at `at` with `values`; all equal: drop. */
function match(at: number[], values: number[], label: string): Item[] {
  const out: Item[] = [];
  at.forEach((off, i) => out.push(ldx32(R2, R10, off), jne32(R2, values[i], label)));
  out.push(mov64Imm(R0, TCX.DROP), exit(), label);
  return out;
}

/**
 * The program's instructions for `conns` (see the module doc). Stack: the
 * IP header at fp-64 (20 or 40 bytes), the TCP ports at fp-40 (IPv4) or
 * fp-16 (IPv6).
 */
export function lockProgram(conns: readonly LockedConnection[]): Uint8Array<ArrayBuffer> {
  const v4 = conns.filter((c) => c.peer.length === 4);
  const v6 = conns.filter((c) => c.peer.length === 16);
  const items: Item[] = [
    mov64(R6, R1),
    // A segment the restore itself injects (a half-closed connection's FIN) passes.
    ldx32(R2, R6, SKB_MARK),
    jeq(R2, INJECT_MARK, "next"),
    ldx32(R2, R6, SKB_PROTOCOL),
    jeq(R2, PROTO_IPV4, "v4"),
    jeq(R2, PROTO_IPV6, "v6"),
    "next",
    mov64Imm(R0, TCX.NEXT),
    exit(),
    "v4",
    ...loadBytes(-64, 20, 0),
    ldx8(R2, R10, -64 + 9), // protocol
    jne(R2, IPPROTO_TCP, "next"),
    ldx8(R2, R10, -64), // version and header length
    insn(0x57, R2, 0, 0, 0x0f), // r2 &= 15
    insn(0x67, R2, 0, 0, 2), // r2 <<= 2: the TCP header's offset
    ...loadBytes(-40, 4),
    ...v4.flatMap((c, i) =>
      match([-52, -48, -40], [word(c.peer, 0), word(c.local, 0), ports(c)], `v4-${i}`)
    ),
    ja("next"),
    "v6",
    ...loadBytes(-64, 40, 0),
    ldx8(R2, R10, -64 + 6), // next header
    jne(R2, IPPROTO_TCP, "next"),
    ...loadBytes(-16, 4, 40),
    ...v6.flatMap((c, i) =>
      match(
        [-56, -52, -48, -44, -40, -36, -32, -28, -16],
        [0, 4, 8, 12].map((k) => word(c.peer, k)).concat(
          [0, 4, 8, 12].map((k) => word(c.local, k)),
          [ports(c)],
        ),
        `v6-${i}`,
      )
    ),
    ja("next"),
  ];
  // Labels to instruction indexes, then the jumps' offsets.
  const at = new Map<string, number>();
  let n = 0;
  for (const it of items) {
    if (typeof it === "string") at.set(it, n);
    else n++;
  }
  const list: number[][] = [];
  for (const it of items) {
    if (typeof it === "string") continue;
    if (Array.isArray(it)) list.push(it);
    else list.push(insn(it.jump, it.dst, 0, at.get(it.to)! - (list.length + 1), it.imm));
  }
  return encodeInsns(list);
}

/** Loads {@link lockProgram} for `conns`; returns its fd. Throws {@link BpfError}. */
export function loadLockProgram(conns: readonly LockedConnection[]): number {
  return loadProgram({
    type: BPF_PROG_TYPE_SCHED_CLS,
    insns: lockProgram(conns),
    name: "cryo_tcp_lock",
    expectedAttachType: BPF_TCX_INGRESS,
  });
}

/**
 * Attaches program `progFd` first on the tcx ingress of device `ifindex`;
 * returns the link's fd (the program stays attached while the link lives).
 */
export function attachIngress(progFd: number, ifindex: number): number {
  const attr = new Uint8Array(64);
  const dv = new DataView(attr.buffer);
  dv.setUint32(0, progFd, true); // prog_fd
  dv.setUint32(4, ifindex, true); // target_ifindex
  dv.setUint32(8, BPF_TCX_INGRESS, true); // attach_type
  dv.setUint32(12, BPF_F_BEFORE, true); // flags; tcx.relative_fd 0: before all
  const r = bpfSyscall(BPF_CMD.LINK_CREATE, attr);
  if (typeof r !== "number") throw new BpfError("BPF_LINK_CREATE", r.errno);
  return r;
}

/** Pins the BPF object `fd` (a link) at `path`, in a BPF file system. */
export function pinObject(fd: number, path: string): void {
  const name = cstr(path);
  const attr = new Uint8Array(24);
  const dv = new DataView(attr.buffer);
  dv.setBigUint64(0, addressOf(name), true); // pathname
  dv.setUint32(8, fd, true); // bpf_fd
  const r = bpfSyscall(BPF_CMD.OBJ_PIN, attr);
  if (typeof r !== "number") throw new BpfError(`BPF_OBJ_PIN ${path}`, r.errno);
}
