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
  insn,
  ITER_LINK_INFO_SIZE,
  jeqImm,
  ldx32,
  ldx64,
  loadIterProgram,
  mov64,
  mov64Imm,
  stx32,
  taskIterProgram,
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
  /** Offsets in task_struct of pid, tgid, thread_pid and restart_block. */
  pid: number;
  tgid: number;
  threadPid: number;
  restartBlock: number;
  /** Offsets in struct pid of level and numbers[], in struct upid of nr, and sizeof(struct upid). */
  pidLevel: number;
  pidNumbers: number;
  upidNr: number;
  upidSize: number;
  /** sizeof(struct restart_block), at most {@link RESTART_BYTES}. */
  restartSize: number;
}

/** The most bytes of restart_block a record holds. */
export const RESTART_BYTES = 64;
/** One record: tid u32 @0, tgid u32 @4, restart_block's bytes @8 (zeros past its size). */
export const RESTART_RECORD_SIZE = 8 + RESTART_BYTES;

const R1 = 1, R2 = 2, R3 = 3, R7 = 7, R8 = 8, R9 = 9, R10 = 10;
const mul64Imm = (dst: number, imm: number) => insn(0x27, dst, 0, 0, imm);
const add64 = (dst: number, src: number) => insn(0x0f, dst, src, 0, 0);
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
    mov64Imm(R2, 0), //                      r2 = 0
    stx32(R10, R + 4, R2), //                record.vtid = 0 (set below)
    ...zeros, //                             record @8 to the end = 0
    mov64(R1, R10), //                       r1 = fp
    add64Imm(R1, R + 8), //                  r1 = the record's bytes
    mov64Imm(R2, l.restartSize), //          r2 = sizeof(restart_block)
    mov64(R3, R7), //                        r3 = task
    add64Imm(R3, l.restartBlock), //         r3 = &task->restart_block
    call(l.probeReadHelper), //              bpf_probe_read_kernel(r1, r2, r3)
    mov64(R1, R10), //                       r1 = fp
    add64Imm(R1, R - 8), //                  r1 = a scratch word below the record
    mov64Imm(R2, 8), //                      r2 = 8
    mov64(R3, R7), //                        r3 = task
    add64Imm(R3, l.threadPid), //            r3 = &task->thread_pid
    call(l.probeReadHelper), //              scratch = task->thread_pid
    ldx64(R8, R10, R - 8), //                r8 = the struct pid
    jeqImm(R8, 0, 15), //             none: vtid stays 0
    mov64(R1, R10), //                       r1 = fp
    add64Imm(R1, R - 8), //                  r1 = the scratch word
    mov64Imm(R2, 4), //                      r2 = 4
    mov64(R3, R8), //                        r3 = pid
    add64Imm(R3, l.pidLevel), //             r3 = &pid->level
    call(l.probeReadHelper), //              scratch = pid->level
    ldx32(R9, R10, R - 8), //                r9 = level
    mul64Imm(R9, l.upidSize), //             r9 = level * sizeof(struct upid)
    add64(R8, R9), //                        r8 = pid + level * sizeof(upid)
    add64Imm(R8, l.pidNumbers + l.upidNr), // r8 = &pid->numbers[level].nr
    mov64(R1, R10), //                       r1 = fp
    add64Imm(R1, R + 4), //                  r1 = &record.vtid
    mov64Imm(R2, 4), //                      r2 = 4
    mov64(R3, R8), //                        r3 = &numbers[level].nr
    call(l.probeReadHelper), //              record.vtid = the tid in its own pid namespace
  ];
  return taskIterProgram(l, body, RESTART_RECORD_SIZE);
}

/** Loads the program; returns its fd. Throws {@link BpfError} (with the verifier's log). */
export function loadRestartBlockProgram(l: RestartBlockLayout): number {
  return loadIterProgram(restartBlockProgram(l), "cryo_restart", l.attachBtfId);
}

/** Offset of `pid` in union bpf_iter_link_info's `task` member (after `tid`). */
const ITER_TASK_PID_OFFSET = 4;

/**
 * The restart_block bytes ({@link RESTART_BYTES}) of each thread of
 * process `pid` (a pid of cryo's namespace), by tid, read with program
 * `progFd` to the end (or to the first thread seen twice). `namespaced`:
 * keyed by the tid in the thread's own pid namespace (cryo runs in another
 * namespace than the initial one, where task->pid is not the tid it
 * knows), else by task->pid.
 */
export function readRestartBlocks(
  progFd: number,
  pid: number,
  namespaced = false,
): Map<number, Uint8Array> {
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
        const tid = new DataView(all.buffer, at).getUint32(namespaced ? 4 : 0, true);
        if (out.has(tid)) return out; // it started over
        out.set(tid, all.slice(at + 8, at + RESTART_RECORD_SIZE));
      }
      pending = all.slice(at);
    }
    return out;
  });
}
