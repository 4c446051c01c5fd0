/**
 * A BPF `task` iterator, restricted to the threads of one process, that
 * writes per thread its tid, tgid and the bytes of task->restart_block:
 * the state behind `restart_syscall` (which function the kernel runs when
 * the thread resumes, with its arguments), which no other interface shows.
 * Hand-assembled like ffi/bpf_task.ts; the offsets come from the caller,
 * who reads them from the running kernel's BTF
 * (engine/task/restart_block.ts).
 *
 * @module
 */

import {
  add64Imm,
  call,
  encodeInsns,
  exit,
  insn,
  ITER_LINK_INFO_SIZE,
  jeqImm,
  ldx64,
  loadIterProgram,
  mov64,
  mov64Imm,
  withIterator,
} from "./bpf.ts";
import { BpfError } from "./bpf.ts";
import { rawSyscall } from "./libc.ts";
import { SYS } from "./sysno.ts";

/** The kernel layout the program reads, from the running kernel's BTF. */
export interface RestartBlockLayout {
  /** BTF id of FUNC bpf_iter_task (the iterator target). */
  attachBtfId: number;
  /** bpf_seq_write and bpf_probe_read_kernel (enum bpf_func_id). */
  seqWriteHelper: number;
  probeReadHelper: number;
  /** Offsets of bpf_iter__task's meta and task, and of bpf_iter_meta's seq. */
  ctxMeta: number;
  ctxTask: number;
  metaSeq: number;
  /** Offsets in task_struct of pid, tgid and restart_block. */
  pid: number;
  tgid: number;
  restartBlock: number;
  /** sizeof(struct restart_block), at most {@link RESTART_BYTES}. */
  restartSize: number;
}

/** The most bytes of restart_block a record holds. */
export const RESTART_BYTES = 64;
/** One record: tid u32 @0, tgid u32 @4, restart_block's bytes @8 (zeros past its size). */
export const RESTART_RECORD_SIZE = 8 + RESTART_BYTES;

const R0 = 0, R1 = 1, R2 = 2, R3 = 3, R6 = 6, R7 = 7, R10 = 10;
/** BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off). */
const ldx32 = (dst: number, src: number, off: number) => insn(0x61, dst, src, off, 0);
/** BPF_STX | BPF_MEM | BPF_W: *(u32 *)(dst + off) = src. */
const stx32 = (dst: number, off: number, src: number) => insn(0x63, dst, src, off, 0);
/** BPF_STX | BPF_MEM | BPF_DW: *(u64 *)(dst + off) = src. */
const stx64 = (dst: number, off: number, src: number) => insn(0x7b, dst, src, off, 0);

/** The program: one {@link RESTART_RECORD_SIZE}-byte record per thread, at fp - 72. */
export function restartBlockProgram(l: RestartBlockLayout): Uint8Array<ArrayBuffer> {
  if (l.restartSize > RESTART_BYTES) throw new Error(`restart_block is ${l.restartSize} bytes`);
  const R = -RESTART_RECORD_SIZE;
  const zeros = [];
  for (let at = 8; at < RESTART_RECORD_SIZE; at += 8) zeros.push(stx64(R10, R + at, R2));
  const body = [
    ldx32(R2, R7, l.pid), //                 r2 = task->pid
    stx32(R10, R + 0, R2), //                record.tid = r2
    ldx32(R2, R7, l.tgid), //                r2 = task->tgid
    stx32(R10, R + 4, R2), //                record.tgid = r2
    mov64Imm(R2, 0), //                      r2 = 0
    ...zeros, //                             record @8 to the end = 0
    mov64(R1, R10), //                       r1 = fp
    add64Imm(R1, R + 8), //                  r1 = the record's bytes
    mov64Imm(R2, l.restartSize), //          r2 = sizeof(restart_block)
    mov64(R3, R7), //                        r3 = task
    add64Imm(R3, l.restartBlock), //         r3 = &task->restart_block
    call(l.probeReadHelper), //              bpf_probe_read_kernel(r1, r2, r3)
    ldx64(R1, R6, l.metaSeq), //             r1 = meta->seq
    mov64(R2, R10), //                       r2 = fp
    add64Imm(R2, R), //                      r2 = the record
    mov64Imm(R3, RESTART_RECORD_SIZE), //    r3 = its size
    call(l.seqWriteHelper), //               bpf_seq_write(r1, r2, r3)
  ];
  return encodeInsns([
    ldx64(R6, R1, l.ctxMeta), //             r6 = ctx->meta
    ldx64(R7, R1, l.ctxTask), //             r7 = ctx->task
    jeqImm(R7, 0, body.length), //           if r7 == NULL goto the end
    ...body,
    mov64Imm(R0, 0),
    exit(),
  ]);
}

/** Loads the program; returns its fd. Throws {@link BpfError} (with the verifier's log). */
export function loadRestartBlockProgram(l: RestartBlockLayout): number {
  return loadIterProgram(restartBlockProgram(l), "cryo_restart", l.attachBtfId);
}

/** Offset of `pid` in union bpf_iter_link_info's `task` member (after `tid`). */
const ITER_TASK_PID_OFFSET = 4;

/**
 * The restart_block bytes ({@link RESTART_BYTES}) of each thread of
 * process `pid`, by tid, read with program `progFd` to the end (or to the
 * first thread seen twice).
 */
export function readRestartBlocks(progFd: number, pid: number): Map<number, Uint8Array> {
  const info = new Uint8Array(ITER_LINK_INFO_SIZE);
  new DataView(info.buffer).setUint32(ITER_TASK_PID_OFFSET, pid, true);
  return withIterator(progFd, info, (fd) => {
    const out = new Map<number, Uint8Array>();
    const buf = new Uint8Array(16 * 1024);
    let pending = new Uint8Array(0);
    for (;;) {
      const r = rawSyscall(SYS.read, fd, buf, buf.length);
      if (r === -4n) continue; // EINTR
      if (r < 0n) throw new BpfError("read of the restart_block iterator", Number(-r));
      if (r === 0n) break;
      const all = new Uint8Array(pending.length + Number(r));
      all.set(pending);
      all.set(buf.subarray(0, Number(r)), pending.length);
      let at = 0;
      for (; at + RESTART_RECORD_SIZE <= all.length; at += RESTART_RECORD_SIZE) {
        const tid = new DataView(all.buffer, at).getUint32(0, true);
        if (out.has(tid)) return out; // it started over
        out.set(tid, all.slice(at + 8, at + RESTART_RECORD_SIZE));
      }
      pending = all.slice(at);
    }
    return out;
  });
}
