/**
 * Scheduling attributes of any thread, read and set from cryo itself
 * (no injection): sched_getattr/sched_setattr, CPU affinity, nice and I/O
 * priority, all addressed by tid.
 *
 * @module
 */

import { rawSyscall, SyscallError } from "./libc.ts";
import { SYS, syscallName } from "./sysno.ts";
import { type SchedAttr, schedAttr } from "./structs.ts";

/** Bytes of the CPU masks cryo reads and writes (1024 CPUs). */
export const CPU_MASK_BYTES = 128;
/** `which` of getpriority/setpriority for one thread. */
const PRIO_PROCESS = 0;
/** `which` of ioprio_get/ioprio_set for one thread. */
export const IOPRIO_WHO_PROCESS = 1;

function check(nr: number, args: unknown[], r: bigint): bigint {
  if (r < 0n) throw new SyscallError(syscallName(nr), args, Number(-r));
  return r;
}

/** sched_getattr(tid): policy, flags, nice, RT priority, deadline parameters, util clamps. */
export function schedGetattr(tid: number): SchedAttr {
  const buf = new Uint8Array(schedAttr.size);
  check(SYS.sched_getattr, [tid], rawSyscall(SYS.sched_getattr, tid, buf, schedAttr.size, 0));
  return schedAttr.decode(buf);
}

/** sched_setattr(tid, attr) (`attr.size` is ignored); returns 0 or -errno. */
export function schedSetattr(tid: number, attr: SchedAttr): bigint {
  const buf = schedAttr.encode({ ...attr, size: schedAttr.size });
  return rawSyscall(SYS.sched_setattr, tid, buf, 0);
}

/** The CPUs `tid` may run on, in increasing order. */
export function getAffinity(tid: number): number[] {
  const mask = new Uint8Array(CPU_MASK_BYTES);
  const n = Number(
    check(
      SYS.sched_getaffinity,
      [tid],
      rawSyscall(SYS.sched_getaffinity, tid, CPU_MASK_BYTES, mask),
    ),
  );
  return cpusOfMask(mask, n);
}

/** The CPUs of the first `n` bytes of a CPU mask (what sched_getaffinity returned), in order. */
export function cpusOfMask(mask: Uint8Array, n: number): number[] {
  // A byte at a time, its bits only when it has any: a restore reads one mask a thread (64
  // threads: 4,096 rounds of a loop over bits had V8 compile it on-stack, ~2.5 ms on its workers).
  const cpus: number[] = [];
  for (let b = 0; b < n; b++) {
    const byte = mask[b];
    if (!byte) continue;
    for (let bit = 0; bit < 8; bit++) if (byte & (1 << bit)) cpus.push(b * 8 + bit);
  }
  return cpus;
}

/** sched_setaffinity(tid, cpus); returns 0 or -errno. */
export function setAffinity(tid: number, cpus: readonly number[]): bigint {
  const mask = new Uint8Array(CPU_MASK_BYTES);
  for (const c of cpus) {
    if (c < 0 || c >= CPU_MASK_BYTES * 8) return -22n; // EINVAL
    mask[c >> 3] |= 1 << (c & 7);
  }
  return rawSyscall(SYS.sched_setaffinity, tid, CPU_MASK_BYTES, mask);
}

/** The nice value of thread `tid` (-20..19). */
export function getNice(tid: number): number {
  // The raw syscall returns 20 - nice (1..40), never negative.
  const r = check(SYS.getpriority, [tid], rawSyscall(SYS.getpriority, PRIO_PROCESS, tid));
  return 20 - Number(r);
}

/** setpriority(PRIO_PROCESS, tid, nice); returns 0 or -errno. */
export function setNice(tid: number, nice: number): bigint {
  return rawSyscall(SYS.setpriority, PRIO_PROCESS, tid, nice);
}

/** ioprio_get(IOPRIO_WHO_PROCESS, tid): class << 13 | data. */
export function getIoprio(tid: number): number {
  return Number(
    check(SYS.ioprio_get, [tid], rawSyscall(SYS.ioprio_get, IOPRIO_WHO_PROCESS, tid)),
  );
}

/** ioprio_set(IOPRIO_WHO_PROCESS, tid, ioprio); returns 0 or -errno. */
export function setIoprio(tid: number, ioprio: number): bigint {
  return rawSyscall(SYS.ioprio_set, IOPRIO_WHO_PROCESS, tid, ioprio);
}
