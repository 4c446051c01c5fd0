/**
 * The bpf(2) system call, as much of it as one program needs: a BPF
 * `task_vma` iterator that writes (vm_start, vm_end, vm_flags) of each
 * memory area of one process, read as 24-byte records from an iterator fd.
 * The program is assembled here from a short instruction list; the kernel
 * struct offsets it uses are given by the caller, who takes them from the
 * running kernel's BTF (ffi/btf.ts), never from a header. The bpf_attr
 * layouts and command numbers below are the kernel's stable UAPI
 * (include/uapi/linux/bpf.h); tests/vma_flags_bpf_test.ts checks them
 * against the running kernel's BTF.
 *
 * @module
 */

import { addressOf, cstr, rawSyscall } from "./libc.ts";
import { errnoName } from "./errno.ts";
import { SYS } from "./sysno.ts";
import { SyscallTable, type TableRun } from "./syscall_table.ts";

/** bpf(2) on x86-64. */
export const SYS_BPF = 321;

/** The bpf(2) commands used (enum bpf_cmd). */
export const BPF_CMD = { PROG_LOAD: 5, OBJ_PIN: 6, LINK_CREATE: 28, ITER_CREATE: 33 } as const;
/** BPF_PROG_TYPE_TRACING (enum bpf_prog_type). */
export const BPF_PROG_TYPE_TRACING = 26;
/** BPF_TRACE_ITER (enum bpf_attach_type). */
export const BPF_TRACE_ITER = 28;
/** Size of union bpf_iter_link_info (its largest member, the cgroup one, is 16 bytes). */
export const ITER_LINK_INFO_SIZE = 16;

/** Byte offsets in union bpf_attr of the BPF_PROG_LOAD fields used. */
export const PROG_LOAD_ATTR = {
  prog_type: 0,
  insn_cnt: 4,
  insns: 8,
  license: 16,
  log_level: 24,
  log_size: 28,
  log_buf: 32,
  prog_name: 48,
  expected_attach_type: 68,
  attach_btf_id: 108,
} as const;
/** Byte offsets in union bpf_attr of the BPF_LINK_CREATE fields used. */
export const LINK_CREATE_ATTR = {
  prog_fd: 0,
  target_fd: 4,
  attach_type: 8,
  flags: 12,
  iter_info: 16,
  iter_info_len: 24,
} as const;
/** EAGAIN: the verifier was interrupted by a signal. */
const EAGAIN = 11;
/** Loads tried before an EAGAIN is taken for an answer. */
const LOAD_TRIES = 20;
/** Size of the bpf_attr passed (zeros past the fields set; the kernel accepts a shorter one). */
const ATTR_SIZE = 128;

/** A refused bpf(2) call: the command, its errno name and, for a load, the verifier's log. */
export class BpfError extends Error {
  /** The errno value. */
  readonly errno: number;
  /** The verifier log of a refused load ("" otherwise). */
  readonly log: string;
  constructor(what: string, errno: number, log = "") {
    super(`bpf(${what}) failed: ${errnoName(errno)}${log ? `\n${log}` : ""}`);
    this.name = "BpfError";
    this.errno = errno;
    this.log = log;
  }
}

/** The kernel layout the task_vma program reads, from the running kernel's BTF. */
export interface TaskVmaLayout {
  /** BTF id of FUNC bpf_iter_task_vma (the iterator target to attach to). */
  attachBtfId: number;
  /** The bpf_seq_write helper's number (enum bpf_func_id). */
  seqWriteHelper: number;
  /** Offset of `meta` in struct bpf_iter__task_vma (the program's context). */
  ctxMeta: number;
  /** Offset of `vma` in struct bpf_iter__task_vma. */
  ctxVma: number;
  /** Offset of `seq` in struct bpf_iter_meta. */
  metaSeq: number;
  /** Offsets of vm_start, vm_end and vm_flags in struct vm_area_struct (8 bytes each). */
  vmStart: number;
  vmEnd: number;
  vmFlags: number;
  /** The bpf_probe_read_kernel helper's number (enum bpf_func_id). */
  probeReadHelper: number;
  /** Offset of vm_policy (a pointer) in struct vm_area_struct; -1 when the kernel has none (no NUMA). */
  vmPolicy: number;
}

/**
 * Bytes the program writes per memory area: vm_start, vm_end, vm_flags,
 * vm_policy (u64 each; the last 0 for an area without a NUMA policy of its own).
 */
export const VMA_RECORD_SIZE = 32;

const R0 = 0, R1 = 1, R2 = 2, R3 = 3, R6 = 6, R7 = 7, R10 = 10;

/** One eBPF instruction: opcode, registers, 16-bit offset, 32-bit immediate. */
export function insn(code: number, dst: number, src: number, off: number, imm: number): number[] {
  return [code, dst, src, off, imm];
}
/** BPF_LDX | BPF_MEM | BPF_DW: dst = *(u64 *)(src + off). */
export const ldx64 = (dst: number, src: number, off: number) => insn(0x79, dst, src, off, 0);
/** BPF_STX | BPF_MEM | BPF_DW: *(u64 *)(dst + off) = src. */
export const stx64 = (dst: number, off: number, src: number) => insn(0x7b, dst, src, off, 0);
/** BPF_JMP | BPF_JEQ | BPF_K: if dst == imm goto pc + 1 + off. */
export const jeqImm = (dst: number, imm: number, off: number) => insn(0x15, dst, 0, off, imm);
/** BPF_ALU64 | BPF_MOV | BPF_X: dst = src. */
export const mov64 = (dst: number, src: number) => insn(0xbf, dst, src, 0, 0);
/** BPF_ALU64 | BPF_MOV | BPF_K: dst = imm. */
export const mov64Imm = (dst: number, imm: number) => insn(0xb7, dst, 0, 0, imm);
/** BPF_ALU64 | BPF_ADD | BPF_K: dst += imm. */
export const add64Imm = (dst: number, imm: number) => insn(0x07, dst, 0, 0, imm);
/** BPF_JMP | BPF_CALL: call helper imm (arguments in r1-r5, result in r0). */
export const call = (helper: number) => insn(0x85, 0, 0, 0, helper);
/** BPF_JMP | BPF_EXIT: return r0. */
export const exit = () => insn(0x95, 0, 0, 0, 0);
/** BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off). */
export const ldx32 = (dst: number, src: number, off: number) => insn(0x61, dst, src, off, 0);
/** BPF_STX | BPF_MEM | BPF_W: *(u32 *)(dst + off) = src. */
export const stx32 = (dst: number, off: number, src: number) => insn(0x63, dst, src, off, 0);
/** BPF_JMP | BPF_JNE | BPF_K: if dst != imm goto pc + 1 + off. */
export const jneImm = (dst: number, imm: number, off: number) => insn(0x55, dst, 0, off, imm);

/** What {@link taskIterProgram} needs of a task iterator program's layout (offsets and helpers from BTF). */
export interface TaskIterFrame {
  ctxMeta: number;
  ctxTask: number;
  metaSeq: number;
  seqWriteHelper: number;
}

/**
 * A task iterator program around `body`: r6 = ctx->meta, r7 = ctx->task
 * (the end when NULL: the iterator's last call), `body`, which fills the
 * `recordSize`-byte record at fp - recordSize, then bpf_seq_write of the
 * record and return 0.
 */
export function taskIterProgram(
  l: TaskIterFrame,
  body: readonly number[][],
  recordSize: number,
): Uint8Array<ArrayBuffer> {
  const write = [
    ldx64(1, 6, l.metaSeq), //         r1 = meta->seq
    mov64(2, 10), //                   r2 = fp
    add64Imm(2, -recordSize), //       r2 = the record
    mov64Imm(3, recordSize), //        r3 = its size
    call(l.seqWriteHelper), //         bpf_seq_write(r1, r2, r3)
  ];
  return encodeInsns([
    ldx64(6, 1, l.ctxMeta), //         r6 = ctx->meta
    ldx64(7, 1, l.ctxTask), //         r7 = ctx->task
    jeqImm(7, 0, body.length + write.length), // if r7 == NULL goto the end
    ...body,
    ...write,
    mov64Imm(0, 0), //                 r0 = 0
    exit(), //                         return r0
  ]);
}

/**
 * The program, one instruction per line (as a disassembly would show it).
 * It runs once per memory area of the task, and once more at the end with
 * `vma` NULL; each call writes one 32-byte record to the iterator's seq file.
 * vm_policy, a pointer, is read with bpf_probe_read_kernel, not loaded (as
 * ffi/bpf_task.ts does: a load of a pointer member makes the verifier look
 * its type up in the whole kernel BTF).
 */
export function taskVmaProgram(l: TaskVmaLayout): Uint8Array<ArrayBuffer> {
  const policy = l.vmPolicy >= 0
    ? [
      mov64(R1, R10), //                    r1 = fp
      add64Imm(R1, -8), //                  r1 = fp - 8
      mov64Imm(R2, 8), //                   r2 = 8
      mov64(R3, R7), //                     r3 = vma
      add64Imm(R3, l.vmPolicy), //          r3 = &vma->vm_policy
      call(l.probeReadHelper), //           *(u64 *)(fp - 8) = vma->vm_policy (0 if it fails)
    ]
    : [mov64Imm(R2, 0), stx64(R10, -8, R2)]; // no NUMA: *(u64 *)(fp - 8) = 0
  const body = [
    ldx64(R2, R7, l.vmStart), //          r2 = vma->vm_start
    stx64(R10, -32, R2), //               *(u64 *)(fp - 32) = r2
    ldx64(R2, R7, l.vmEnd), //            r2 = vma->vm_end
    stx64(R10, -24, R2), //               *(u64 *)(fp - 24) = r2
    ldx64(R2, R7, l.vmFlags), //          r2 = vma->vm_flags
    stx64(R10, -16, R2), //               *(u64 *)(fp - 16) = r2
    ...policy,
    ldx64(R1, R6, l.metaSeq), //          r1 = meta->seq
    mov64(R2, R10), //                    r2 = fp
    add64Imm(R2, -VMA_RECORD_SIZE), //    r2 = fp - 32 (the record)
    mov64Imm(R3, VMA_RECORD_SIZE), //     r3 = 32
    call(l.seqWriteHelper), //            bpf_seq_write(r1, r2, r3)
  ];
  const list = [
    ldx64(R6, R1, l.ctxMeta), //          0: r6 = ctx->meta
    ldx64(R7, R1, l.ctxVma), //           1: r7 = ctx->vma
    jeqImm(R7, 0, body.length), //        2: if r7 == NULL goto the end call
    ...body,
    mov64Imm(R0, 0), //                   r0 = 0
    exit(), //                            return r0
  ];
  return encodeInsns(list);
}

/** The bytes of instructions made by {@link insn} (8 bytes each, little-endian). */
export function encodeInsns(list: readonly number[][]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(list.length * 8);
  const dv = new DataView(out.buffer);
  list.forEach(([code, dst, src, off, imm], i) => {
    dv.setUint8(i * 8, code);
    dv.setUint8(i * 8 + 1, (src << 4) | dst);
    dv.setInt16(i * 8 + 2, off, true);
    dv.setInt32(i * 8 + 4, imm, true);
  });
  return out;
}

/**
 * Runs `fn` with every signal blocked in the calling thread (put back
 * after): the verifier gives up with EAGAIN when a signal is pending, and a
 * profiler's SIGPROF every 50 us would make every load fail. A signal sent
 * meanwhile is delivered once the mask is back (a few ms later).
 */
function withSignalsBlocked<T>(fn: () => T): T {
  const all = new BigUint64Array([~0n]);
  const old = new BigUint64Array(1);
  const SIG_SETMASK = 2;
  const blocked = rawSyscall(SYS.rt_sigprocmask, SIG_SETMASK, all, old, 8) === 0n;
  try {
    return fn();
  } finally {
    if (blocked) rawSyscall(SYS.rt_sigprocmask, SIG_SETMASK, old, null, 8);
  }
}

/** bpf(2) with `attr`, retried on EINTR: the fd or value it returned, or its errno. */
export function bpfSyscall(
  cmd: number,
  attr: Uint8Array<ArrayBuffer>,
): number | { errno: number } {
  for (;;) {
    const r = rawSyscall(SYS_BPF, cmd, attr, attr.length);
    if (r === -4n) continue; // EINTR
    return r < 0n ? { errno: Number(-r) } : Number(r);
  }
}

/**
 * Loads the task_vma iterator program; returns its fd (close-on-exec).
 * Throws {@link BpfError} (with the verifier's log when it refused it).
 */
export function loadTaskVmaProgram(l: TaskVmaLayout): number {
  return loadIterProgram(taskVmaProgram(l), "cryo_vmas", l.attachBtfId);
}

/**
 * Loads `insns` as a BPF iterator program (BPF_PROG_TYPE_TRACING,
 * BPF_TRACE_ITER, license GPL) attached to the iterator target whose FUNC
 * has BTF id `attachBtfId`; returns its fd (close-on-exec). Throws
 * {@link BpfError} (with the verifier's log when it refused it).
 */
export function loadIterProgram(
  insns: Uint8Array<ArrayBuffer>,
  name: string,
  attachBtfId: number,
): number {
  return loadProgram({
    type: BPF_PROG_TYPE_TRACING,
    insns,
    name,
    expectedAttachType: BPF_TRACE_ITER,
    attachBtfId,
  });
}

/** What {@link loadProgram} loads. */
export interface ProgramToLoad {
  /** enum bpf_prog_type. */
  type: number;
  /** The instructions ({@link encodeInsns}). */
  insns: Uint8Array<ArrayBuffer>;
  /** The program's name (up to 15 characters are kept). */
  name: string;
  /** enum bpf_attach_type the program is loaded for (0: none). */
  expectedAttachType?: number;
  /** BTF id of the attach target (tracing programs). */
  attachBtfId?: number;
}

/**
 * Loads a BPF program (license GPL); returns its fd (close-on-exec). Throws
 * {@link BpfError} (with the verifier's log when it refused it).
 */
export function loadProgram(p: ProgramToLoad): number {
  const license = cstr("GPL");
  const attempt = (log?: Uint8Array<ArrayBuffer>) => {
    const attr = new Uint8Array(ATTR_SIZE);
    const dv = new DataView(attr.buffer);
    dv.setUint32(PROG_LOAD_ATTR.prog_type, p.type, true);
    dv.setUint32(PROG_LOAD_ATTR.insn_cnt, p.insns.length / 8, true);
    dv.setBigUint64(PROG_LOAD_ATTR.insns, addressOf(p.insns), true);
    dv.setBigUint64(PROG_LOAD_ATTR.license, addressOf(license), true);
    if (log) {
      dv.setUint32(PROG_LOAD_ATTR.log_level, 1, true);
      dv.setUint32(PROG_LOAD_ATTR.log_size, log.length, true);
      dv.setBigUint64(PROG_LOAD_ATTR.log_buf, addressOf(log), true);
    }
    attr.set(new TextEncoder().encode(p.name.slice(0, 15)), PROG_LOAD_ATTR.prog_name);
    dv.setUint32(PROG_LOAD_ATTR.expected_attach_type, p.expectedAttachType ?? 0, true);
    dv.setUint32(PROG_LOAD_ATTR.attach_btf_id, p.attachBtfId ?? 0, true);
    // The verifier gives up with EAGAIN when a signal is pending (a profiler's
    // SIGPROF every 50 us makes that the rule): a few more tries.
    for (let tries = 1;; tries++) {
      const r = bpfSyscall(BPF_CMD.PROG_LOAD, attr);
      if (typeof r === "number" || r.errno !== EAGAIN || tries === LOAD_TRIES) return r;
    }
  };
  const r = withSignalsBlocked(attempt);
  if (typeof r === "number") return r;
  // Again with the verifier's log, for the reason.
  const log = new Uint8Array(64 * 1024);
  const again = withSignalsBlocked(() => attempt(log));
  if (typeof again === "number") return again;
  const end = log.indexOf(0);
  const text = new TextDecoder().decode(log.subarray(0, end < 0 ? log.length : end)).trim();
  throw new BpfError("BPF_PROG_LOAD", r.errno, text);
}

/**
 * The records of the task_vma program `progFd` for the memory areas of
 * thread `tid`'s process, in address order: an iterator link restricted to
 * that one task (union bpf_iter_link_info's task.tid), an iterator fd, read
 * to its end. Returns the bytes read (a multiple of {@link VMA_RECORD_SIZE}).
 */
export function readTaskVmas(progFd: number, tid: number): Uint8Array<ArrayBuffer> {
  const info = new Uint8Array(ITER_LINK_INFO_SIZE);
  new DataView(info.buffer).setUint32(0, tid, true); // task.tid
  return withIterator(progFd, info, readAll);
}

/**
 * Runs `read` on an iterator fd of program `progFd` made through a link
 * with `info` (a union bpf_iter_link_info); closes both afterwards.
 */
export function withIterator<T>(
  progFd: number,
  info: Uint8Array<ArrayBuffer>,
  read: (fd: number) => T,
): T {
  const { link, fd } = openIterator(progFd, info);
  try {
    return read(fd);
  } finally {
    rawSyscall(SYS.close, fd);
    rawSyscall(SYS.close, link);
  }
}

/**
 * A link of iterator program `progFd` made with `info` (a union
 * bpf_iter_link_info) and an iterator fd on it; the caller closes both.
 * Throws (nothing left open) when either cannot be made.
 */
function openIterator(progFd: number, info: Uint8Array<ArrayBuffer>): { link: number; fd: number } {
  const attr = new Uint8Array(ATTR_SIZE);
  const dv = new DataView(attr.buffer);
  dv.setUint32(LINK_CREATE_ATTR.prog_fd, progFd, true);
  dv.setUint32(LINK_CREATE_ATTR.attach_type, BPF_TRACE_ITER, true);
  dv.setBigUint64(LINK_CREATE_ATTR.iter_info, addressOf(info), true);
  dv.setUint32(LINK_CREATE_ATTR.iter_info_len, info.length, true);
  const link = bpfSyscall(BPF_CMD.LINK_CREATE, attr);
  if (typeof link !== "number") throw new BpfError("BPF_LINK_CREATE", link.errno);
  const iterAttr = new Uint8Array(8);
  new DataView(iterAttr.buffer).setUint32(0, link, true); // link_fd
  const fd = bpfSyscall(BPF_CMD.ITER_CREATE, iterAttr);
  if (typeof fd !== "number") {
    rawSyscall(SYS.close, link);
    throw new BpfError("BPF_ITER_CREATE", fd.errno);
  }
  return { link, fd };
}

/** The most one read of a task_vma iterator returns (its seq_file buffer, 6.18). */
const ITER_READ_BYTES = 32 * 1024;

/** {@link readTaskVmas} running on another thread ({@link startTaskVmasRead}). */
export interface TaskVmasRead {
  /** Settles once every read ran. */
  finished: Promise<void>;
  /**
   * The records read, to their proven end (a read that returned nothing, or
   * records that start over, as {@link readAll} ends), once finished; or
   * undefined when a read failed or the reads did not reach the end.
   */
  take(): Uint8Array<ArrayBuffer> | undefined;
  /** Closes the iterator's fds (once finished; again: nothing). */
  close(): void;
}

/**
 * {@link readTaskVmas} on one of Deno's blocking-pool threads: the link and
 * the iterator fd made here, then a syscall table (ffi/syscall_table.ts) of
 * reads of {@link ITER_READ_BYTES} each into their own slots, enough for
 * `expectBytes` of records and two reads more (the end is proven by a read
 * beyond it). Throws when the link or the iterator cannot be made.
 */
export function startTaskVmasRead(progFd: number, tid: number, expectBytes: number): TaskVmasRead {
  const info = new Uint8Array(ITER_LINK_INFO_SIZE);
  new DataView(info.buffer).setUint32(0, tid, true); // task.tid
  const { link, fd } = openIterator(progFd, info);
  const slots = Math.ceil(expectBytes / (ITER_READ_BYTES - VMA_RECORD_SIZE)) + 2;
  const buf = new Uint8Array(slots * ITER_READ_BYTES);
  const table = new SyscallTable(slots);
  for (let i = 0; i < slots; i++) {
    const at = i * ITER_READ_BYTES;
    table.syscall(SYS.read, fd, buf.subarray(at, at + ITER_READ_BYTES), ITER_READ_BYTES);
  }
  let run: TableRun;
  try {
    run = table.run();
  } catch (e) {
    rawSyscall(SYS.close, fd);
    rawSyscall(SYS.close, link);
    throw e;
  }
  let open = true;
  return {
    finished: run.finished,
    take: () => {
      if (!run.done()) return undefined;
      const out = new Uint8Array(slots * ITER_READ_BYTES);
      const w = new Uint32Array(buf.buffer);
      let n = 0, lastEnd = 0;
      for (let i = 0; i < slots; i++) {
        const r = table.result(i);
        if (r < 0n) return undefined;
        if (r === 0n) return out.slice(0, n); // the end
        const at = i * ITER_READ_BYTES, len = Number(r);
        if (len % VMA_RECORD_SIZE !== 0) return undefined;
        // A read past the last area gives the records of the read before it again: its
        // first record does not lie above the last one (addresses as numbers from their
        // 32-bit halves). Within a read the kernel walks up; the caller compares every
        // record with maps, so records that did not would never be taken for the areas.
        const k = at >> 2, e = (at + len - VMA_RECORD_SIZE) >> 2;
        if (w[k + 1] * 0x100000000 + w[k] < lastEnd) return out.slice(0, n);
        lastEnd = w[e + 3] * 0x100000000 + w[e + 2];
        out.set(buf.subarray(at, at + len), n);
        n += len;
      }
      return undefined; // no read beyond the end: not proven complete
    },
    close: () => {
      if (!open || !run.done()) return;
      open = false;
      rawSyscall(SYS.close, fd);
      rawSyscall(SYS.close, link);
    },
  };
}

/** The read buffer, kept between calls (10,000 areas make 240 KB). */
let buffer = new Uint8Array(256 * 1024);

/**
 * Reads the iterator's records to their end. The end is the first read
 * that returns nothing, or the first record that does not lie above the one
 * before it: on this kernel (6.18) a task-filtered task_vma iterator read in
 * several reads (each returns at most its 32 KiB buffer, ~1,365 records)
 * does not end after the last area, but gives the last read's records again
 * and again. The caller compares the areas with maps, so an iteration that
 * ended early or went on is never taken for the process's areas.
 */
function readAll(fd: number): Uint8Array<ArrayBuffer> {
  let n = 0, checked = 0, lastEnd = 0;
  for (;;) {
    if (n === buffer.length) {
      const bigger = new Uint8Array(buffer.length * 2);
      bigger.set(buffer);
      buffer = bigger;
    }
    const r = rawSyscall(SYS.read, fd, buffer.subarray(n), buffer.length - n);
    if (r === -4n) continue; // EINTR
    if (r < 0n) throw new BpfError("read of the iterator", Number(-r));
    if (r === 0n) break;
    n += Number(r);
    // Addresses as numbers from their 32-bit halves (exact below 2^53): no bigint per record.
    const w = new Uint32Array(buffer.buffer, 0, n >> 2);
    // The new records by findIndex, V8's own loop: no loop of 10,000 rounds for V8 to
    // compile for on-stack replacement (engine/find_from.ts).
    const from = checked, fresh = Math.floor((n - checked) / VMA_RECORD_SIZE);
    const over = new Uint8Array(fresh).findIndex((_, i) => {
      const k = (from + i * VMA_RECORD_SIZE) >> 2;
      const start = w[k + 1] * 0x100000000 + w[k];
      if (start < lastEnd) return true;
      lastEnd = w[k + 3] * 0x100000000 + w[k + 2];
      return false;
    });
    if (over >= 0) return buffer.slice(0, from + over * VMA_RECORD_SIZE); // it started over
    checked = from + fresh * VMA_RECORD_SIZE;
  }
  return buffer.slice(0, n);
}
