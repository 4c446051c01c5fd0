/**
 * Byte-exact codecs for the kernel structs cryo passes to and reads from
 * the kernel (x86-64 layouts). Each codec is a {@link Struct}: a list of
 * little-endian fields with `size`, `encode(value)` and `decode(bytes)`.
 *
 * @module
 */

type FieldType = "u64" | "i64" | "u32" | "i32" | "pad32";

/** A fixed-layout struct codec. */
export interface Struct<T> {
  /** Size in bytes. */
  readonly size: number;
  /** Encodes a value into a new buffer of `size` bytes. */
  encode(value: T): Uint8Array<ArrayBuffer>;
  /** Decodes `size` bytes at the start of `bytes`. */
  decode(bytes: Uint8Array): T;
}

function defineStruct<T extends Record<string, bigint | number>>(
  fields: [keyof T & string, FieldType][],
): Struct<T> {
  const widths = { u64: 8, i64: 8, u32: 4, i32: 4, pad32: 4 };
  const offsets: number[] = [];
  let size = 0;
  for (const [, t] of fields) {
    offsets.push(size);
    size += widths[t];
  }
  return {
    size,
    encode(value: T) {
      const out = new Uint8Array(size);
      const dv = new DataView(out.buffer);
      fields.forEach(([name, t], i) => {
        const v = value[name] ?? 0;
        const o = offsets[i];
        if (t === "u64") dv.setBigUint64(o, BigInt.asUintN(64, BigInt(v)), true);
        else if (t === "i64") dv.setBigInt64(o, BigInt.asIntN(64, BigInt(v)), true);
        else if (t === "u32") dv.setUint32(o, Number(v), true);
        else if (t === "i32") dv.setInt32(o, Number(v), true);
      });
      return out;
    },
    decode(bytes: Uint8Array) {
      const dv = new DataView(bytes.buffer, bytes.byteOffset, size);
      const out: Record<string, bigint | number> = {};
      fields.forEach(([name, t], i) => {
        const o = offsets[i];
        if (t === "u64") out[name] = dv.getBigUint64(o, true);
        else if (t === "i64") out[name] = dv.getBigInt64(o, true);
        else if (t === "u32") out[name] = dv.getUint32(o, true);
        else if (t === "i32") out[name] = dv.getInt32(o, true);
      });
      return out as T;
    },
  };
}

/** Kernel `struct sigaction` as rt_sigaction(2) takes it (sigset of 8 bytes). */
export interface KernelSigaction extends Record<string, bigint> {
  handler: bigint;
  flags: bigint;
  restorer: bigint;
  mask: bigint;
}
/** Codec for {@link KernelSigaction} (32 bytes). */
export const kernelSigaction: Struct<KernelSigaction> = defineStruct<KernelSigaction>([
  ["handler", "u64"],
  ["flags", "u64"],
  ["restorer", "u64"],
  ["mask", "u64"],
]);

/** `stack_t` for sigaltstack(2). */
export interface StackT extends Record<string, bigint | number> {
  sp: bigint;
  flags: number;
  size: bigint;
}
/** Codec for {@link StackT} (24 bytes). */
export const stackT: Struct<StackT> = defineStruct<StackT>([
  ["sp", "u64"],
  ["flags", "i32"],
  ["_pad", "pad32"],
  ["size", "u64"],
]);

/** `struct itimerval` (seconds and microseconds). */
export interface Itimerval extends Record<string, bigint> {
  intervalSec: bigint;
  intervalUsec: bigint;
  valueSec: bigint;
  valueUsec: bigint;
}
/** Codec for {@link Itimerval} (32 bytes). */
export const itimerval: Struct<Itimerval> = defineStruct<Itimerval>([
  ["intervalSec", "i64"],
  ["intervalUsec", "i64"],
  ["valueSec", "i64"],
  ["valueUsec", "i64"],
]);

/** `struct rlimit` (RLIM_INFINITY = 2^64-1). */
export interface RlimitStruct extends Record<string, bigint> {
  cur: bigint;
  max: bigint;
}
/** Codec for {@link RlimitStruct} (16 bytes). */
export const rlimit: Struct<RlimitStruct> = defineStruct<RlimitStruct>([
  ["cur", "u64"],
  ["max", "u64"],
]);

/** RLIM_INFINITY. */
export const RLIM_INFINITY = 0xffffffffffffffffn;

/** `struct prctl_mm_map` for prctl(PR_SET_MM, PR_SET_MM_MAP). */
export interface PrctlMmMap extends Record<string, bigint | number> {
  startCode: bigint;
  endCode: bigint;
  startData: bigint;
  endData: bigint;
  startBrk: bigint;
  brk: bigint;
  startStack: bigint;
  argStart: bigint;
  argEnd: bigint;
  envStart: bigint;
  envEnd: bigint;
  auxv: bigint;
  auxvSize: number;
  exeFd: number;
}
/** Codec for {@link PrctlMmMap} (104 bytes). */
export const prctlMmMap: Struct<PrctlMmMap> = defineStruct<PrctlMmMap>([
  ["startCode", "u64"],
  ["endCode", "u64"],
  ["startData", "u64"],
  ["endData", "u64"],
  ["startBrk", "u64"],
  ["brk", "u64"],
  ["startStack", "u64"],
  ["argStart", "u64"],
  ["argEnd", "u64"],
  ["envStart", "u64"],
  ["envEnd", "u64"],
  ["auxv", "u64"],
  ["auxvSize", "u32"],
  ["exeFd", "u32"],
]);

/** `struct clone_args` for clone3(2) (version 2, with set_tid and cgroup). */
export interface CloneArgs extends Record<string, bigint> {
  flags: bigint;
  pidfd: bigint;
  childTid: bigint;
  parentTid: bigint;
  exitSignal: bigint;
  stack: bigint;
  stackSize: bigint;
  tls: bigint;
  setTid: bigint;
  setTidSize: bigint;
  cgroup: bigint;
}
/** Codec for {@link CloneArgs} (88 bytes). */
export const cloneArgs: Struct<CloneArgs> = defineStruct<CloneArgs>([
  ["flags", "u64"],
  ["pidfd", "u64"],
  ["childTid", "u64"],
  ["parentTid", "u64"],
  ["exitSignal", "u64"],
  ["stack", "u64"],
  ["stackSize", "u64"],
  ["tls", "u64"],
  ["setTid", "u64"],
  ["setTidSize", "u64"],
  ["cgroup", "u64"],
]);

/** Clone flags used by cryo. */
export const CLONE = {
  VM: 0x100n,
  FS: 0x200n,
  FILES: 0x400n,
  SIGHAND: 0x800n,
  /** The child is traced by the caller's tracer (with its options), without a clone event stop. */
  PTRACE: 0x2000n,
  PARENT: 0x8000n,
  THREAD: 0x10000n,
  SYSVSEM: 0x40000n,
  SETTLS: 0x80000n,
  PARENT_SETTID: 0x100000n,
  CHILD_CLEARTID: 0x200000n,
  CHILD_SETTID: 0x1000000n,
} as const;

/** `struct rseq` registration as reported by PTRACE_GET_RSEQ_CONFIGURATION. */
export interface RseqConfiguration extends Record<string, bigint | number> {
  addr: bigint;
  len: number;
  sig: number;
  flags: number;
}
/** Codec for {@link RseqConfiguration} (24 bytes). */
export const rseqConfiguration: Struct<RseqConfiguration> = defineStruct<RseqConfiguration>([
  ["addr", "u64"],
  ["len", "u32"],
  ["sig", "u32"],
  ["flags", "u32"],
  ["_pad", "pad32"],
]);

/** The first fields of `siginfo_t` (the full struct is 128 bytes). */
export interface SiginfoHead {
  signo: number;
  errno: number;
  code: number;
  /** si_pid (for kill/sigqueue/SIGCHLD) */
  pid: number;
  /** si_uid */
  uid: number;
}

/** Size of siginfo_t. */
export const SIGINFO_BYTES = 128;

/** Decodes the common head of a siginfo_t. */
export function decodeSiginfo(bytes: Uint8Array): SiginfoHead {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, SIGINFO_BYTES);
  return {
    signo: dv.getInt32(0, true),
    errno: dv.getInt32(4, true),
    code: dv.getInt32(8, true),
    pid: dv.getInt32(16, true),
    uid: dv.getUint32(20, true),
  };
}

/** Encodes a siginfo_t with the given head (rest zero). */
export function encodeSiginfo(head: SiginfoHead): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(SIGINFO_BYTES);
  const dv = new DataView(out.buffer);
  dv.setInt32(0, head.signo, true);
  dv.setInt32(4, head.errno, true);
  dv.setInt32(8, head.code, true);
  dv.setInt32(16, head.pid, true);
  dv.setUint32(20, head.uid, true);
  return out;
}

/** The XSAVE header (at byte 512 of the XSAVE area). */
export interface XsaveHeader {
  /** Which state components are present (XSTATE_BV). */
  xstateBv: bigint;
  /** Compaction bits (XCOMP_BV); 0 for the standard format ptrace uses. */
  xcompBv: bigint;
}

/** Decodes the XSAVE header of an XSAVE area. */
export function decodeXsaveHeader(area: Uint8Array): XsaveHeader {
  const dv = new DataView(area.buffer, area.byteOffset + 512, 64);
  return { xstateBv: dv.getBigUint64(0, true), xcompBv: dv.getBigUint64(8, true) };
}

/**
 * The XCR0 feature mask of an XSAVE area read through ptrace: the kernel
 * stores it in the first 8 software-reserved bytes (offset 464), as gdb
 * expects.
 */
export function xsaveXcr0(area: Uint8Array): bigint {
  const dv = new DataView(area.buffer, area.byteOffset + 464, 8);
  return dv.getBigUint64(0, true);
}

/** `struct flock` for fcntl F_SETLK / F_OFD_SETLK (32 bytes; l_type and l_whence are shorts). */
export interface FlockStruct extends Record<string, bigint | number> {
  /** l_type (F_RDLCK 0, F_WRLCK 1, F_UNLCK 2) in the low 16 bits, l_whence in the high 16. */
  typeWhence: number;
  /** l_start. */
  start: bigint;
  /** l_len (0: to the end of the file). */
  len: bigint;
  /** l_pid (0 for OFD locks). */
  pid: number;
}
/** Codec for {@link FlockStruct}. */
export const flockStruct: Struct<FlockStruct> = defineStruct<FlockStruct>([
  ["typeWhence", "u32"],
  ["pad0", "pad32"],
  ["start", "i64"],
  ["len", "i64"],
  ["pid", "i32"],
  ["pad1", "pad32"],
]);

/** `struct f_owner_ex` for fcntl F_GETOWN_EX / F_SETOWN_EX (8 bytes). */
export interface FOwnerEx extends Record<string, number> {
  /** F_OWNER_TID 0, F_OWNER_PID 1, F_OWNER_PGRP 2. */
  type: number;
  pid: number;
}
/** Codec for {@link FOwnerEx}. */
export const fOwnerEx: Struct<FOwnerEx> = defineStruct<FOwnerEx>([["type", "i32"], ["pid", "i32"]]);
/** `struct tcp_repair_window` (TCP_REPAIR_WINDOW). */
export interface TcpRepairWindowStruct extends Record<string, number> {
  sndWl1: number;
  sndWnd: number;
  maxWindow: number;
  rcvWnd: number;
  rcvWup: number;
}

/** Codec of {@link TcpRepairWindowStruct} (five u32). */
export const tcpRepairWindow: Struct<TcpRepairWindowStruct> = defineStruct<TcpRepairWindowStruct>([
  ["sndWl1", "u32"],
  ["sndWnd", "u32"],
  ["maxWindow", "u32"],
  ["rcvWnd", "u32"],
  ["rcvWup", "u32"],
]);

/** `struct itimerspec` (seconds and nanoseconds; interval first). */
export interface Itimerspec extends Record<string, bigint> {
  intervalSec: bigint;
  intervalNsec: bigint;
  valueSec: bigint;
  valueNsec: bigint;
}
/** Codec for {@link Itimerspec} (32 bytes). */
export const itimerspec: Struct<Itimerspec> = defineStruct<Itimerspec>([
  ["intervalSec", "i64"],
  ["intervalNsec", "i64"],
  ["valueSec", "i64"],
  ["valueNsec", "i64"],
]);

/** The fields of `struct sigevent` timer_create reads (x86-64, 64 bytes in all). */
export interface Sigevent extends Record<string, bigint | number> {
  /** sigev_value (the union's pointer view). */
  value: bigint;
  signo: number;
  notify: number;
  /** sigev_notify_thread_id, for SIGEV_THREAD_ID. */
  tid: number;
}
/** Codec for {@link Sigevent} (64 bytes; the rest of the union is zero). */
export const sigevent: Struct<Sigevent> = defineStruct<Sigevent>([
  ["value", "u64"],
  ["signo", "i32"],
  ["notify", "i32"],
  ["tid", "i32"],
  ...Array.from({ length: 11 }, () => ["_pad", "pad32"] as [string, "pad32"]),
]);

/** `struct sched_attr` of sched_getattr(2) / sched_setattr(2) (SCHED_ATTR_SIZE_VER1). */
export interface SchedAttr extends Record<string, bigint | number> {
  size: number;
  policy: number;
  flags: bigint;
  nice: number;
  priority: number;
  runtime: bigint;
  deadline: bigint;
  period: bigint;
  utilMin: number;
  utilMax: number;
}
/** Codec for {@link SchedAttr} (56 bytes). */
export const schedAttr: Struct<SchedAttr> = defineStruct<SchedAttr>([
  ["size", "u32"],
  ["policy", "u32"],
  ["flags", "u64"],
  ["nice", "i32"],
  ["priority", "u32"],
  ["runtime", "u64"],
  ["deadline", "u64"],
  ["period", "u64"],
  ["utilMin", "u32"],
  ["utilMax", "u32"],
]);

/** `struct seccomp_metadata` of PTRACE_SECCOMP_GET_METADATA. */
export interface SeccompMetadata extends Record<string, bigint> {
  filterOff: bigint;
  flags: bigint;
}
/** Codec for {@link SeccompMetadata} (16 bytes). */
export const seccompMetadata: Struct<SeccompMetadata> = defineStruct<SeccompMetadata>([
  ["filterOff", "u64"],
  ["flags", "u64"],
]);

/** `struct sock_fprog` (a classic BPF program: length and pointer to its instructions). */
export interface SockFprog extends Record<string, bigint | number> {
  len: number;
  filter: bigint;
}
/** Codec for {@link SockFprog} (16 bytes: u16 length padded to 8). */
export const sockFprog: Struct<SockFprog> = defineStruct<SockFprog>([
  ["len", "u32"],
  ["_pad", "pad32"],
  ["filter", "u64"],
]);

/** `_LINUX_CAPABILITY_VERSION_3`: capget/capset with two data words (64 capabilities). */
export const LINUX_CAPABILITY_VERSION_3 = 0x20080522;

/** `struct __user_cap_header_struct` for capget(2)/capset(2). */
export interface CapUserHeader extends Record<string, number> {
  version: number;
  /** 0 = the calling thread. */
  pid: number;
}
/** Codec for {@link CapUserHeader} (8 bytes). */
export const capUserHeader: Struct<CapUserHeader> = defineStruct<CapUserHeader>([
  ["version", "u32"],
  ["pid", "i32"],
]);

/** The three capability sets capset(2) takes, as 64-bit masks (bit n = capability n). */
export interface CapSets {
  effective: bigint;
  permitted: bigint;
  inheritable: bigint;
}

/**
 * The two `struct __user_cap_data_struct` of a version 3 capset/capget
 * (24 bytes: effective, permitted, inheritable of capabilities 0-31, then
 * of 32-63).
 */
export const capUserData = {
  size: 24,
  encode(sets: CapSets): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(24);
    const dv = new DataView(out.buffer);
    for (let word = 0; word < 2; word++) {
      const part = (v: bigint) => Number((v >> BigInt(32 * word)) & 0xffffffffn);
      dv.setUint32(word * 12, part(sets.effective), true);
      dv.setUint32(word * 12 + 4, part(sets.permitted), true);
      dv.setUint32(word * 12 + 8, part(sets.inheritable), true);
    }
    return out;
  },
  decode(bytes: Uint8Array): CapSets {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, 24);
    const both = (o: number) =>
      BigInt(dv.getUint32(o, true)) | (BigInt(dv.getUint32(o + 12, true)) << 32n);
    return { effective: both(0), permitted: both(4), inheritable: both(8) };
  },
} as const satisfies Struct<CapSets>;
