/**
 * A BPF `task` iterator, restricted to the threads of one process, that
 * writes per thread the task_struct fields no outside interface shows:
 * the sigaltstack (sas_ss_sp, sas_ss_size, sas_ss_flags), clear_child_tid,
 * pdeath_signal, timer_slack_ns, cred->securebits, mm->def_flags, the
 * real_cred pointer, atomic_flags, seccomp.mode, comm, the task's own
 * address with its children list's first link, the low word of
 * thread_info.flags, personality, the mempolicy, nsproxy, fs, files and
 * cgroups (css_set) pointers, cred->thread_keyring, whether cred->session_keyring is set,
 * task->flags and *real_cred's ids,
 * capabilities and groups, a window on cred->security's LSM blob (the
 * Landlock domain pointer), with the thread's tid and tgid. Hand-assembled
 * like the task_vma program (ffi/bpf.ts); the
 * struct offsets come from the caller, who reads them from the running
 * kernel's BTF (engine/proc/thread_state_bpf.ts).
 *
 * @module
 */

import {
  add64Imm,
  BpfError,
  call,
  encodeInsns,
  exit,
  ITER_LINK_INFO_SIZE,
  jeqImm,
  jneImm,
  ldx32,
  ldx64,
  loadIterProgram,
  mov64,
  mov64Imm,
  stx32,
  stx64,
  withIterator,
} from "./bpf.ts";
import { addressOf, rawSyscall } from "./libc.ts";
import { SYS } from "./sysno.ts";
import { SyscallTable, tablesRunHere } from "./syscall_table.ts";

/** The kernel layout the task program reads, from the running kernel's BTF. */
export interface TaskStateLayout {
  /** BTF id of FUNC bpf_iter_task (the iterator target to attach to). */
  attachBtfId: number;
  /** The bpf_seq_write helper's number (enum bpf_func_id). */
  seqWriteHelper: number;
  /** The bpf_probe_read_kernel helper's number (enum bpf_func_id). */
  probeReadHelper: number;
  /** Offset of `meta` in struct bpf_iter__task (the program's context). */
  ctxMeta: number;
  /** Offset of `task` in struct bpf_iter__task. */
  ctxTask: number;
  /** Offset of `seq` in struct bpf_iter_meta. */
  metaSeq: number;
  /** Offsets in struct task_struct: pid and tgid (4 bytes each). */
  pid: number;
  tgid: number;
  /** sas_ss_sp and sas_ss_size (8 bytes each), sas_ss_flags (4 bytes). */
  sasSsSp: number;
  sasSsSize: number;
  sasSsFlags: number;
  /** pdeath_signal (4 bytes). */
  pdeathSignal: number;
  /** clear_child_tid (a pointer). */
  clearChildTid: number;
  /** timer_slack_ns (8 bytes). */
  timerSlackNs: number;
  /** cred (a pointer to struct cred). */
  cred: number;
  /** Offset of securebits in struct cred (4 bytes). */
  securebits: number;
  /** mm (a pointer to struct mm_struct). */
  mm: number;
  /** Offset of def_flags in struct mm_struct (8 bytes: the flags of mappings to come). */
  defFlags: number;
  /** real_cred (a pointer: the credentials /proc/<pid>/task/<tid>/status shows). */
  realCred: number;
  /** atomic_flags (8 bytes; bit 0 PFA_NO_NEW_PRIVS). */
  atomicFlags: number;
  /** Offset of seccomp.mode in task_struct (4 bytes). */
  seccompMode: number;
  /** flags (4 bytes: the PF_* bits, /proc/<pid>/stat's ninth field). */
  flags: number;
  /** Offsets in struct cred of uid, gid, suid, sgid, euid, egid, fsuid, fsgid (4 bytes each). */
  credUid: number;
  credGid: number;
  credSuid: number;
  credSgid: number;
  credEuid: number;
  credEgid: number;
  credFsuid: number;
  credFsgid: number;
  /** Offsets in struct cred of the capability sets (8 bytes each). */
  credCapInh: number;
  credCapPrm: number;
  credCapEff: number;
  credCapBnd: number;
  credCapAmb: number;
  /** Offset of group_info (a pointer) in struct cred, of ngroups (4 bytes) in struct group_info. */
  groupInfo: number;
  ngroups: number;
  /** comm (16 bytes). */
  comm: number;
  /** children (a struct list_head, whose first member is `next`). */
  children: number;
  /** thread_info.flags (8 bytes; its low word is read: the TIF_* bits). */
  threadInfoFlags: number;
  /** personality (4 bytes). */
  personality: number;
  /** mempolicy (a pointer: NULL for the default policy); -1 when the kernel has none (no NUMA): 0 is written. */
  mempolicy: number;
  /** nsproxy (a pointer: threads with the same one share their namespaces). */
  nsproxy: number;
  /** fs and files (pointers: threads with the same ones share cwd, root, umask and the fd table). */
  fs: number;
  files: number;
  /** cgroups (a pointer to the css_set: threads with the same one are in the same cgroups); -1 without cgroups: 0 is written. */
  cgroups: number;
  /**
   * loginuid and sessionid (4 bytes each; a thread's own, inherited at its
   * creation); -1 without audit (CONFIG_AUDIT): the unset value is written.
   */
  loginuid: number;
  sessionid: number;
  /** Offset of thread_keyring in struct cred (a pointer); -1 without keys (CONFIG_KEYS): 0 is written. */
  threadKeyring: number;
  /**
   * Offset of session_keyring in struct cred (a pointer); -1 without keys
   * (then no record says it was read: {@link TaskRecord.sessionKeyring}).
   */
  sessionKeyring: number;
  /** The TIF_NOTSC bit of thread_info.flags when found ({@link findNoTscBit}; not read by the program). */
  noTscBit?: number;
  /**
   * Offset of `security` in struct cred (a pointer to the LSMs' blob); -1
   * without CONFIG_SECURITY (no record then reads the blob).
   */
  credSecurity: number;
  /**
   * Offset of Landlock's part (struct landlock_cred_security, whose first
   * member is the domain pointer) in that blob, assigned at boot: found by
   * experiment (engine/proc/landlock_probe.ts). When set, the program reads
   * its first word into the record ({@link TaskRecord.landlockDomain}).
   */
  landlockOffset?: number;
}

/** What of cred->security's blob a program copies into the record (at most {@link LSM_WINDOW_BYTES}). */
export interface LsmWindow {
  offset: number;
  bytes: number;
}

/** The most bytes of the LSM blob a record holds. */
export const LSM_WINDOW_BYTES = 64;

/** The window of the regular program: the Landlock domain pointer, when its offset is known. */
export function landlockWindow(l: TaskStateLayout): LsmWindow | undefined {
  return l.credSecurity >= 0 && l.landlockOffset !== undefined
    ? { offset: l.landlockOffset, bytes: 8 }
    : undefined;
}

/** Bytes the program writes per thread (see {@link decodeTaskRecords}). */
export const TASK_RECORD_SIZE = 376;

/** At most this many bytes of a struct cred are copied, from its first id to its last capability set. */
export const CRED_BYTES = 96;

/** The part of struct cred the record copies: its start and length (throws when it is too long). */
export function credRange(l: TaskStateLayout): { start: number; length: number } {
  const ids = [l.credUid, l.credGid, l.credSuid, l.credSgid, l.credEuid, l.credEgid, l.credFsuid];
  const caps = [l.credCapInh, l.credCapPrm, l.credCapEff, l.credCapBnd, l.credCapAmb];
  const start = Math.min(...ids, l.credFsgid, ...caps);
  const end = Math.max(...[...ids, l.credFsgid].map((o) => o + 4), ...caps.map((o) => o + 8));
  if (end - start > CRED_BYTES) {
    throw new Error(`struct cred's ids and capabilities span ${end - start} bytes`);
  }
  return { start, length: end - start };
}

/** One thread's record, as the program wrote it. */
export interface TaskRecord {
  /** task->pid and task->tgid (ids in the initial pid namespace). */
  tid: number;
  tgid: number;
  sasSsSp: bigint;
  sasSsSize: bigint;
  sasSsFlags: number;
  pdeathSignal: number;
  clearChildTid: bigint;
  timerSlackNs: bigint;
  /** cred->securebits (0 when `credRead` is false). */
  securebits: number;
  /** Whether the task had a cred to read securebits from. */
  credRead: boolean;
  /** mm->def_flags (0 when `mmRead` is false): VM_LOCKED and VM_LOCKONFAULT after mlockall(MCL_FUTURE). */
  defFlags: bigint;
  /** Whether the task had an mm to read def_flags from. */
  mmRead: boolean;
  /** task->real_cred, as a number: threads with the same one have the same credentials. */
  realCred: bigint;
  /** task->atomic_flags. */
  atomicFlags: bigint;
  /** task->seccomp.mode. */
  seccompMode: number;
  /** task->flags (PF_*: what /proc/<pid>/task/<tid>/stat shows as its flags). */
  flags: number;
  /**
   * The bytes of *real_cred from {@link credRange}'s start ({@link CRED_BYTES}, zeros after the
   * range), when read (`credBytesRead`); `groupInfo` (real_cred->group_info) and its `ngroups` when
   * `groupsRead`.
   */
  credBytes: Uint8Array;
  credBytesRead: boolean;
  groupInfo: bigint;
  ngroups: number;
  groupsRead: boolean;
  /** task->comm's bytes up to its first NUL (at most 16). */
  comm: Uint8Array;
  /** The task_struct's address, and task->children.next: the list is empty when that is the address of task->children itself. */
  task: bigint;
  childrenNext: bigint;
  /** The low 32 bits of task->thread_info.flags (TIF_* bits). */
  tifFlags: number;
  /** task->personality. */
  personality: number;
  /** task->mempolicy, as a number (0: the default policy). */
  mempolicy: bigint;
  /** task->nsproxy, as a number: threads with the same one share their namespaces. */
  nsproxy: bigint;
  /** task->cred->thread_keyring, as a number (0: none, or no cred). */
  threadKeyring: bigint;
  /**
   * Whether task->cred->session_keyring (the cred keyctl's lookups use) is
   * set: "none" (NULL), "set", or undefined when it could not be read (no
   * cred, a failed read, a kernel without keys).
   */
  sessionKeyring?: "none" | "set";
  /** task->fs and task->files, as numbers. */
  fs: bigint;
  files: bigint;
  /** task->cgroups (its css_set), as a number; 0 when the kernel has no cgroups. */
  cgroups: bigint;
  /** task->loginuid and task->sessionid (4294967295: unset, or a kernel without audit). */
  loginuid: number;
  sessionid: number;
  /**
   * The bytes of task->cred->security's blob the program's window copied
   * (from the window's offset; zeros after it), when `lsmRead`.
   */
  lsmBytes: Uint8Array;
  lsmRead: boolean;
}

/**
 * The Landlock domain pointer of record `r` of the regular program
 * ({@link landlockWindow}): 0n for none, undefined when not read (no
 * window, no cred, a failed read).
 */
export function landlockDomain(r: TaskRecord): bigint | undefined {
  if (!r.lsmRead) return undefined;
  return new DataView(r.lsmBytes.buffer, r.lsmBytes.byteOffset, 8).getBigUint64(0, true);
}

const R0 = 0, R1 = 1, R2 = 2, R3 = 3, R6 = 6, R7 = 7, R10 = 10;

/**
 * The program, one instruction per line. It runs once per thread of the
 * process and once more at the end with `task` NULL; each call writes one
 * {@link TASK_RECORD_SIZE}-byte record at fp - TASK_RECORD_SIZE:
 * tid u32 @0, tgid u32 @4, sas_ss_sp u64 @8, sas_ss_size u64 @16,
 * sas_ss_flags u32 @24, pdeath_signal u32 @28, clear_child_tid u64 @32,
 * timer_slack_ns u64 @40, securebits u32 @48, cred read (1) u32 @52,
 * mm->def_flags u64 @56, mm read (1) u32 @64, thread_info.flags' low word
 * u32 @68, real_cred u64 @72, atomic_flags u64 @80, seccomp.mode u32 @88,
 * personality u32 @92, comm 16 bytes @96, the task's address u64 @112,
 * children.next u64 @120, mempolicy u64 @128, nsproxy u64 @136,
 * cred->thread_keyring u64 @144, fs u64 @152, files u64 @160,
 * task->flags u32 @168, what was read of the cred u32 @172 (1: its bytes,
 * 3: and its groups), from *real_cred the {@link credRange} bytes @176
 * (96, zeros after), real_cred->group_info u64 @272,
 * group_info->ngroups u32 @280, cred->session_keyring u32 @284 (0: not
 * read, 1: NULL, 2: set), task->cgroups u64 @288, task->loginuid u32
 * @296, task->sessionid u32 @300, the LSM window's bytes of
 * task->cred->security @304 (64, zeros after), the window read (1) u32 @368.
 *
 * The members that are pointers to structs (cred, mm, real_cred,
 * children.next) are read with bpf_probe_read_kernel, not loaded: the
 * verifier looks up a type by name in the whole kernel BTF for each such
 * load from the trusted task pointer (btf_nested_type_is_trusted, a linear
 * scan: ~1.2 ms each on 6.18, 7 ms for the program as loads; 0.15 ms read
 * this way). A failed read leaves zeros, as a NULL pointer would. The
 * instruction numbers in the comments are those of a kernel with NUMA and
 * keys (without them, fewer instructions write zeros).
 */
export function taskStateProgram(
  l: TaskStateLayout,
  /** What of the LSM blob to copy (none: zeros). */
  window: LsmWindow | undefined = landlockWindow(l),
): Uint8Array<ArrayBuffer> {
  const R = -TASK_RECORD_SIZE;
  const TMP = R - 8; // a pointer read from the task, below the record
  /** r1 = fp + dst, r2 = size, r3 = r7 + off (or r3 + off): bpf_probe_read_kernel(r1, r2, r3). */
  const probe = (dst: number, size: number, off: number, fromTask = true) => [
    mov64(R1, R10),
    add64Imm(R1, dst),
    mov64Imm(R2, size),
    ...(fromTask ? [mov64(R3, R7)] : []),
    add64Imm(R3, off),
    call(l.probeReadHelper),
  ];
  const body = [
    ldx32(R2, R7, l.pid), //               3: r2 = task->pid
    stx32(R10, R + 0, R2), //              4: record.tid = r2
    ldx32(R2, R7, l.tgid), //              5: r2 = task->tgid
    stx32(R10, R + 4, R2), //              6: record.tgid = r2
    ldx64(R2, R7, l.sasSsSp), //           7: r2 = task->sas_ss_sp
    stx64(R10, R + 8, R2), //              8: record.sas_ss_sp = r2
    ldx64(R2, R7, l.sasSsSize), //         9: r2 = task->sas_ss_size
    stx64(R10, R + 16, R2), //            10: record.sas_ss_size = r2
    ldx32(R2, R7, l.sasSsFlags), //       11: r2 = task->sas_ss_flags
    stx32(R10, R + 24, R2), //            12: record.sas_ss_flags = r2
    ldx32(R2, R7, l.pdeathSignal), //     13: r2 = task->pdeath_signal
    stx32(R10, R + 28, R2), //            14: record.pdeath_signal = r2
    ldx64(R2, R7, l.clearChildTid), //    15: r2 = task->clear_child_tid (a user pointer: a scalar)
    stx64(R10, R + 32, R2), //            16: record.clear_child_tid = r2
    ldx64(R2, R7, l.timerSlackNs), //     17: r2 = task->timer_slack_ns
    stx64(R10, R + 40, R2), //            18: record.timer_slack_ns = r2
    mov64Imm(R2, 0), //                   19: r2 = 0
    stx64(R10, R + 48, R2), //            20: record.securebits = record.cred_read = 0
    ...probe(TMP, 8, l.cred), //       21-26: tmp = task->cred
    ldx64(R3, R10, TMP), //               27: r3 = tmp
    jeqImm(R3, 0, 8), //                  28: if r3 == NULL goto 37
    ...probe(R + 48, 4, l.securebits, false), // 29-33: record.securebits = cred->securebits
    jneImm(R0, 0, 2), //                  34: if the read failed goto 37
    mov64Imm(R2, 1), //                   35: r2 = 1
    stx32(R10, R + 52, R2), //            36: record.cred_read = 1
    mov64Imm(R2, 0), //                   37: r2 = 0
    stx64(R10, R + 56, R2), //            38: record.def_flags = 0
    stx64(R10, R + 64, R2), //            39: record.mm_read = record's word @68 = 0
    ...probe(TMP, 8, l.mm), //         40-45: tmp = task->mm
    ldx64(R3, R10, TMP), //               46: r3 = tmp
    jeqImm(R3, 0, 8), //                  47: if r3 == NULL goto 56
    ...probe(R + 56, 8, l.defFlags, false), // 48-52: record.def_flags = mm->def_flags
    jneImm(R0, 0, 2), //                  53: if the read failed goto 56
    mov64Imm(R2, 1), //                   54: r2 = 1
    stx32(R10, R + 64, R2), //            55: record.mm_read = 1
    ...probe(R + 72, 8, l.realCred), // 56-61: record.real_cred = task->real_cred
    ldx64(R2, R7, l.atomicFlags), //      62: r2 = task->atomic_flags
    stx64(R10, R + 80, R2), //            63: record.atomic_flags = r2
    mov64Imm(R2, 0), //                   64: r2 = 0
    stx64(R10, R + 88, R2), //            65: record.seccomp_mode = record's word @92 = 0
    ldx32(R2, R7, l.seccompMode), //      66: r2 = task->seccomp.mode
    stx32(R10, R + 88, R2), //            67: record.seccomp_mode = r2
    ldx64(R2, R7, l.comm), //             68: r2 = task->comm[0..8]
    stx64(R10, R + 96, R2), //            69: record.comm[0..8] = r2
    ldx64(R2, R7, l.comm + 8), //         70: r2 = task->comm[8..16]
    stx64(R10, R + 104, R2), //           71: record.comm[8..16] = r2
    stx64(R10, R + 112, R7), //           72: record.task = r7
    ...probe(R + 120, 8, l.children), // 73-78: record.children_next = task->children.next
    ldx64(R2, R7, l.threadInfoFlags), //  79: r2 = task->thread_info.flags
    stx32(R10, R + 68, R2), //            80: record.tif_flags = its low word
    ldx32(R2, R7, l.personality), //      81: r2 = task->personality
    stx32(R10, R + 92, R2), //            82: record.personality = r2
    ...(l.mempolicy >= 0 //            83-88: record.mempolicy = task->mempolicy (0 without NUMA)
      ? probe(R + 128, 8, l.mempolicy)
      : [mov64Imm(R2, 0), stx64(R10, R + 128, R2)]),
    ...probe(R + 136, 8, l.nsproxy), //   89-94: record.nsproxy = task->nsproxy
    mov64Imm(R2, 0), //                   95: r2 = 0
    stx64(R10, R + 144, R2), //           96: record.thread_keyring = 0
    ...(l.threadKeyring >= 0 //        97-109: record.thread_keyring = task->cred->thread_keyring
      ? [
        ...probe(TMP, 8, l.cred), //      97-102: tmp = task->cred
        ldx64(R3, R10, TMP), //          103: r3 = tmp
        jeqImm(R3, 0, 5), //             104: if r3 == NULL goto 110
        ...probe(R + 144, 8, l.threadKeyring, false), // 105-109
      ]
      : []),
    ...probe(R + 152, 8, l.fs), //    110-115: record.fs = task->fs
    ...probe(R + 160, 8, l.files), // 116-121: record.files = task->files
    ...credPart(l, R, probe), //  122-166: task->flags, the cred's ids, capabilities and groups
    ...sessionKeyringPart(l, R, TMP, probe), // record.session_keyring (0 without keys)
    ...(l.cgroups >= 0 //                  record.cgroups = task->cgroups (0 without cgroups)
      ? probe(R + 288, 8, l.cgroups)
      : [mov64Imm(R2, 0), stx64(R10, R + 288, R2)]),
    ...(l.loginuid >= 0 && l.sessionid >= 0 // record.loginuid, .sessionid (unset without audit)
      ? [
        ldx32(R2, R7, l.loginuid),
        stx32(R10, R + 296, R2),
        ldx32(R2, R7, l.sessionid),
        stx32(R10, R + 300, R2),
      ]
      : [mov64Imm(R2, -1), stx32(R10, R + 296, R2), stx32(R10, R + 300, R2)]),
    ...lsmPart(l, window, R, TMP, probe), // record.lsm bytes @304, read mark @368
    ldx64(R1, R6, l.metaSeq), //         167: r1 = meta->seq
    mov64(R2, R10), //                   168: r2 = fp
    add64Imm(R2, R), //                  169: r2 = fp - 376 (the record)
    mov64Imm(R3, TASK_RECORD_SIZE), //   170: r3 = 376
    call(l.seqWriteHelper), //           171: bpf_seq_write(r1, r2, r3)
  ];
  return encodeInsns([
    ldx64(R6, R1, l.ctxMeta), //           0: r6 = ctx->meta
    ldx64(R7, R1, l.ctxTask), //           1: r7 = ctx->task
    jeqImm(R7, 0, body.length), //         2: if r7 == NULL goto the end (172)
    ...body, //                       3-171: the record, written
    mov64Imm(R0, 0), //                  172: r0 = 0
    exit(), //                           173: return r0
  ]);
}

/** Instructions {@link credPart} adds. */
const CRED_INSNS = 1 + 15 + 2 + 27;

/**
 * The record's bytes @168 to the end: zeros, task->flags, then from *real_cred (read
 * @72) its {@link credRange}, group_info and group_info->ngroups, and the
 * read marks (see {@link taskStateProgram}).
 */
function credPart(
  l: TaskStateLayout,
  R: number,
  probe: (dst: number, size: number, off: number, fromTask?: boolean) => number[][],
): number[][] {
  const { start, length } = credRange(l);
  const zeros = [];
  for (let at = 168; at < 288; at += 8) zeros.push(stx64(R10, R + at, R2));
  const out = [
    mov64Imm(R2, 0), //                      r2 = 0
    ...zeros, //                             record @168 to @288 = 0 (15 stores; @288 is written after)
    ldx32(R2, R7, l.flags), //               r2 = task->flags
    stx32(R10, R + 168, R2), //              record.flags = r2
    ldx64(R3, R10, R + 72), //               0: r3 = real_cred
    jeqImm(R3, 0, 25), //                    1: if NULL goto the end
    ...probe(R + 176, length, start, false), // 2-6: record.cred = real_cred's bytes
    jneImm(R0, 0, 19), //                    7: if the read failed goto the end
    mov64Imm(R2, 1), //                      8
    stx32(R10, R + 172, R2), //              9: record.read = 1
    ldx64(R3, R10, R + 72), //              10: r3 = real_cred
    ...probe(R + 272, 8, l.groupInfo, false), // 11-15: record.group_info = real_cred->group_info
    jneImm(R0, 0, 10), //                   16: if the read failed goto the end
    ldx64(R3, R10, R + 272), //             17: r3 = group_info
    jeqImm(R3, 0, 8), //                    18: if NULL goto the end
    ...probe(R + 280, 4, l.ngroups, false), // 19-23: record.ngroups = group_info->ngroups
    jneImm(R0, 0, 2), //                    24: if the read failed goto the end
    mov64Imm(R2, 3), //                     25
    stx32(R10, R + 172, R2), //             26: record.read = 3
  ];
  if (out.length !== CRED_INSNS) throw new Error(`internal: ${out.length} cred instructions`);
  return out;
}

/**
 * Instructions writing whether task->cred->session_keyring is set, u32 @284
 * (after {@link credPart}, which zeroes it): 1 for NULL, 2 for set, 0 when
 * not read (a kernel without keys: no instruction).
 */
function sessionKeyringPart(
  l: TaskStateLayout,
  R: number,
  TMP: number,
  probe: (dst: number, size: number, off: number, fromTask?: boolean) => number[][],
): number[][] {
  if (l.sessionKeyring < 0) return [];
  return [
    ...probe(TMP, 8, l.cred), //                   0-5: tmp = task->cred
    ldx64(R3, R10, TMP), //                          6: r3 = tmp
    jeqImm(R3, 0, 11), //                            7: if NULL goto the end
    ...probe(TMP, 8, l.sessionKeyring, false), // 8-12: tmp = cred->session_keyring
    jneImm(R0, 0, 5), //                            13: if the read failed goto the end
    ldx64(R2, R10, TMP), //                         14: r2 = tmp
    mov64Imm(R3, 1), //                             15: r3 = 1
    jeqImm(R2, 0, 1), //                            16: if r2 == NULL goto 18
    mov64Imm(R3, 2), //                             17: r3 = 2
    stx32(R10, R + 284, R3), //                     18: record.session_keyring = r3
  ];
}

/**
 * Instructions writing the LSM window @304 (zeros first, as the mark @368
 * and the pad @372), then, when there is a window, the bytes of
 * task->cred->security from its offset and the mark 1 once read.
 */
function lsmPart(
  l: TaskStateLayout,
  window: LsmWindow | undefined,
  R: number,
  TMP: number,
  probe: (dst: number, size: number, off: number, fromTask?: boolean) => number[][],
): number[][] {
  const zeros = [mov64Imm(R2, 0)];
  for (let at = 304; at < TASK_RECORD_SIZE; at += 8) zeros.push(stx64(R10, R + at, R2));
  if (!window || l.credSecurity < 0) return zeros;
  if (window.bytes <= 0 || window.bytes > LSM_WINDOW_BYTES || window.offset < 0) {
    throw new Error(`internal: LSM window ${window.offset}+${window.bytes}`);
  }
  return [
    ...zeros,
    ...probe(TMP, 8, l.cred), //                        0-5: tmp = task->cred
    ldx64(R3, R10, TMP), //                               6: r3 = tmp
    jeqImm(R3, 0, 16), //                                 7: if NULL goto the end
    ...probe(TMP, 8, l.credSecurity, false), //        8-12: tmp = cred->security
    jneImm(R0, 0, 10), //                                13: if the read failed goto the end
    ldx64(R3, R10, TMP), //                              14: r3 = tmp
    jeqImm(R3, 0, 8), //                                 15: if NULL goto the end
    ...probe(R + 304, window.bytes, window.offset, false), // 16-20: the window's bytes
    jneImm(R0, 0, 2), //                                 21: if the read failed goto the end
    mov64Imm(R2, 1), //                                  22
    stx32(R10, R + 368, R2), //                          23: record.lsm_read = 1
  ];
}

/** Loads the task program; returns its fd. Throws {@link BpfError} (with the verifier's log). */
export function loadTaskStateProgram(
  l: TaskStateLayout,
  window: LsmWindow | undefined = landlockWindow(l),
): number {
  return loadIterProgram(taskStateProgram(l, window), "cryo_threads", l.attachBtfId);
}

/** Offset of `pid` in union bpf_iter_link_info's `task` member (after `tid`). */
export const ITER_TASK_PID_OFFSET = 4;

/**
 * The records of the task program `progFd` for the threads of process
 * `pid` (an iterator link restricted to it: bpf_iter_link_info's task.pid,
 * read in the caller's pid namespace), read to their end: the first read
 * that returns nothing, or the first record of a thread already seen (the
 * task_vma iterator restricted to one task starts over instead of ending
 * on this kernel; this one is read the same careful way).
 */
export function readTaskStates(progFd: number, pid: number): TaskRecord[] {
  return decodeTaskRecords(readTaskStateBytes(progFd, pid));
}

/**
 * The records {@link readTaskStates} decodes, as the iterator gave them:
 * whole records, each thread once (a walk that started over is cut where
 * a thread comes again). For a caller that compares two reads byte for byte.
 */
export function readTaskStateBytes(progFd: number, pid: number): Uint8Array<ArrayBuffer> {
  return readTaskIterBytes(progFd, pid, TASK_RECORD_SIZE);
}

/**
 * The records of `size` bytes (each starting with the thread's tid, decoded
 * by `decode`) that a task iterator program `progFd` writes per thread of
 * process `pid`, read as {@link readTaskStates} reads them.
 */
export function readTaskIterRecords<T>(
  progFd: number,
  pid: number,
  size: number,
  decode: (whole: Uint8Array) => T[],
): T[] {
  return decode(readTaskIterBytes(progFd, pid, size));
}

/**
 * The bytes of the records of `size` bytes (each starting with the
 * thread's tid) that a task iterator program `progFd` writes per thread of
 * process `pid`: whole records, each thread once, read to their end (the
 * first read that returns nothing, or the first record of a thread already
 * seen: the iterator restricted to one task may start over).
 */
export function readTaskIterBytes(
  progFd: number,
  pid: number,
  size: number,
): Uint8Array<ArrayBuffer> {
  const info = new Uint8Array(ITER_LINK_INFO_SIZE);
  new DataView(info.buffer).setUint32(ITER_TASK_PID_OFFSET, pid, true);
  return withIterator(progFd, info, (fd) => {
    const seen = new Set<number>();
    let buf = new Uint8Array(Math.max(64 * 1024, size * 64)), n = 0, whole = 0;
    for (;;) {
      if (n === buf.length) {
        const bigger = new Uint8Array(buf.length * 2);
        bigger.set(buf);
        buf = bigger;
      }
      const r = rawSyscall(SYS.read, fd, buf.subarray(n), buf.length - n);
      if (r === -4n) continue; // EINTR
      if (r < 0n) throw new BpfError("read of the task iterator", Number(-r));
      if (r === 0n) break;
      n += Number(r);
      const dv = new DataView(buf.buffer);
      for (; whole + size <= n; whole += size) {
        const tid = dv.getUint32(whole, true);
        if (seen.has(tid)) return buf.slice(0, whole); // it started over
        seen.add(tid);
      }
    }
    if (n % size !== 0) throw new Error(`the task iterator gave ${n} bytes, not whole records`);
    return buf.slice(0, n);
  });
}

/** Offset of a record's `tifFlags` (thread_info.flags) in its bytes. */
export const TIF_FLAGS_AT = 68;

const PR_GET_TSC = 25;
const PR_SET_TSC = 26;
const PR_TSC_ENABLE = 1;
const PR_TSC_SIGSEGV = 2;
/** Reads of the iterator per look at cryo's records, each into its own part of this many bytes. */
const READS = 4;
const READ_PART = 16 * 1024;

/**
 * The bit of thread_info.flags that PR_SET_TSC(PR_TSC_SIGSEGV) sets
 * (TIF_NOTSC: 16 before Linux 6.18's generic TIF bits, 21 after; it is
 * in no BTF), found by experiment on cryo's own thread: one syscall table
 * run here sets the mode, reads task program `progFd`'s records of cryo's
 * process and sets the mode back (no user code runs in between, so no
 * rdtsc can fault), a second read without it; the bit set in the first
 * record of this thread and not in the second, when exactly one is (up to
 * 3 tries). Undefined when it cannot be told, or when this thread's mode
 * was not the default. Never throws.
 */
export function findNoTscBit(progFd: number): number | undefined {
  try {
    if (!tablesRunHere()) return undefined;
    const info = new Uint8Array(ITER_LINK_INFO_SIZE);
    new DataView(info.buffer).setUint32(ITER_TASK_PID_OFFSET, Deno.pid, true);
    // This thread's record (not necessarily the main thread's: a test runs in a worker),
    // from reads of whole records, each into its own part of a buffer.
    const own = (bytes: Uint8Array, results: bigint[], self: number) => {
      for (const [i, n] of results.entries()) {
        if (n <= 0n) break;
        const part = bytes.subarray(i * READ_PART, i * READ_PART + Number(n));
        const r = decodeTaskRecords(part).find((r) => r.tid === self);
        if (r) return r.tifFlags;
      }
      return undefined;
    };
    for (let round = 0; round < 3; round++) {
      const set = new Uint8Array(READS * READ_PART), plain = new Uint8Array(READS * READ_PART);
      const mode = new Uint8Array(4);
      const t = new SyscallTable(16);
      const tid = t.syscall(SYS.gettid);
      const got = t.syscall(SYS.prctl, PR_GET_TSC, mode, 0, 0, 0);
      const on = t.syscall(SYS.prctl, PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0);
      const reads = (fd: number, buf: Uint8Array<ArrayBuffer>) => {
        t.keep(buf);
        return Array.from(
          { length: READS },
          (_, i) => t.syscall(SYS.read, fd, addressOf(buf) + BigInt(i * READ_PART), READ_PART),
        );
      };
      const [r1, off, r2] = withIterator(
        progFd,
        info,
        (fd1) =>
          withIterator(progFd, info, (fd2) => {
            const r1 = reads(fd1, set);
            const off = t.syscall(SYS.prctl, PR_SET_TSC, PR_TSC_ENABLE, 0, 0, 0);
            const r2 = reads(fd2, plain);
            t.runHere();
            return [r1, off, r2] as const;
          }),
      );
      if (t.result(got) < 0n || new DataView(mode.buffer).getInt32(0, true) !== PR_TSC_ENABLE) {
        return undefined;
      }
      if (t.result(on) < 0n || t.result(off) < 0n) return undefined;
      const self = Number(t.result(tid));
      const a = own(set, r1.map((i) => t.result(i)), self);
      const b = own(plain, r2.map((i) => t.result(i)), self);
      if (a === undefined || b === undefined) return undefined;
      const diff = (a & ~b) >>> 0;
      if (diff !== 0 && (diff & (diff - 1)) === 0) return 31 - Math.clz32(diff);
    }
  } catch { /* cannot tell */ }
  return undefined;
}

/** Decodes whole records (layout: {@link taskStateProgram}). */
export function decodeTaskRecords(bytes: Uint8Array): TaskRecord[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: TaskRecord[] = [];
  for (let at = 0; at + TASK_RECORD_SIZE <= bytes.length; at += TASK_RECORD_SIZE) {
    out.push({
      tid: dv.getUint32(at, true),
      tgid: dv.getUint32(at + 4, true),
      sasSsSp: dv.getBigUint64(at + 8, true),
      sasSsSize: dv.getBigUint64(at + 16, true),
      sasSsFlags: dv.getUint32(at + 24, true),
      pdeathSignal: dv.getInt32(at + 28, true),
      clearChildTid: dv.getBigUint64(at + 32, true),
      timerSlackNs: dv.getBigUint64(at + 40, true),
      securebits: dv.getUint32(at + 48, true),
      credRead: dv.getUint32(at + 52, true) === 1,
      defFlags: dv.getBigUint64(at + 56, true),
      mmRead: dv.getUint32(at + 64, true) === 1,
      realCred: dv.getBigUint64(at + 72, true),
      atomicFlags: dv.getBigUint64(at + 80, true),
      seccompMode: dv.getUint32(at + 88, true),
      flags: dv.getUint32(at + 168, true),
      credBytes: bytes.slice(at + 176, at + 176 + CRED_BYTES),
      credBytesRead: (dv.getUint32(at + 172, true) & 1) !== 0,
      groupInfo: dv.getBigUint64(at + 272, true),
      ngroups: dv.getInt32(at + 280, true),
      groupsRead: (dv.getUint32(at + 172, true) & 2) !== 0,
      comm: commBytes(bytes.subarray(at + 96, at + 112)),
      task: dv.getBigUint64(at + 112, true),
      childrenNext: dv.getBigUint64(at + 120, true),
      tifFlags: dv.getUint32(at + 68, true),
      personality: dv.getUint32(at + 92, true),
      mempolicy: dv.getBigUint64(at + 128, true),
      nsproxy: dv.getBigUint64(at + 136, true),
      threadKeyring: dv.getBigUint64(at + 144, true),
      ...sessionKeyringOf(dv.getUint32(at + 284, true)),
      fs: dv.getBigUint64(at + 152, true),
      files: dv.getBigUint64(at + 160, true),
      cgroups: dv.getBigUint64(at + 288, true),
      loginuid: dv.getUint32(at + 296, true),
      sessionid: dv.getUint32(at + 300, true),
      lsmBytes: bytes.slice(at + 304, at + 304 + LSM_WINDOW_BYTES),
      lsmRead: dv.getUint32(at + 368, true) === 1,
    });
  }
  return out;
}

/** The record's session keyring word (@284) as {@link TaskRecord.sessionKeyring}. */
function sessionKeyringOf(v: number): Pick<TaskRecord, "sessionKeyring"> {
  return v === 1 ? { sessionKeyring: "none" } : v === 2 ? { sessionKeyring: "set" } : {};
}

/** A comm's bytes up to its first NUL (a copy). */
function commBytes(b: Uint8Array): Uint8Array {
  const nul = b.indexOf(0);
  return b.slice(0, nul < 0 ? b.length : nul);
}
