/**
 * A small BPF `task` iterator program, restricted to the threads of one
 * process, that writes per thread only what a dump of a process of few
 * threads needs of its credentials: the Landlock domain pointer
 * (task->cred->security at Landlock's offset in the LSMs' blob) and
 * whether task->cred->session_keyring is set. The regular task program
 * (ffi/bpf_task.ts) writes both among ~60 other fields; loading it costs a
 * verifier run over ~300 instructions (0.5 to 3 ms, more under load, on
 * every dump), this one ~40 instructions. Same layout (from the running
 * kernel's BTF), same read (ffi/bpf_task.ts `readTaskStates`'s careful
 * end), records of {@link CRED_RECORD_SIZE} bytes.
 *
 * @module
 */

import {
  add64Imm,
  call,
  jeqImm,
  jneImm,
  ldx32,
  ldx64,
  loadIterProgram,
  mov64,
  mov64Imm,
  stx32,
  stx64,
  taskIterProgram,
} from "./bpf.ts";
import { readTaskIterRecords, type TaskStateLayout } from "./bpf_task.ts";

/** Bytes the program writes per thread (see {@link landlockProgram}). */
export const CRED_RECORD_SIZE = 24;

/** One thread's record of the small program. */
export interface CredRecord {
  /** task->pid and task->tgid (ids in the initial pid namespace). */
  tid: number;
  tgid: number;
  /** The Landlock domain pointer (0n: none), undefined when it could not be read. */
  landlockDomain: bigint | undefined;
  /** Whether task->cred->session_keyring is set (undefined: not read). */
  sessionKeyring?: "none" | "set";
}

const R0 = 0, R1 = 1, R2 = 2, R3 = 3, R7 = 7, R10 = 10;
/**
 * The program: per thread a record of tid u32 @0, tgid u32 @4, the domain
 * pointer u64 @8, the domain read (1) u32 @16, the session keyring u32 @20
 * (0: not read, 1: NULL, 2: set). Struct pointers are read with
 * bpf_probe_read_kernel (see ffi/bpf_task.ts `taskStateProgram` on why).
 * Needs `l.landlockOffset` and `l.credSecurity >= 0`.
 */
export function landlockProgram(l: TaskStateLayout): Uint8Array<ArrayBuffer> {
  if (l.landlockOffset === undefined || l.credSecurity < 0) {
    throw new Error("the layout has no Landlock offset");
  }
  const R = -CRED_RECORD_SIZE;
  const CRED = R - 8; // task->cred, below the record
  const TMP = R - 16; // a pointer read from the cred
  /** bpf_probe_read_kernel(fp + dst, size, r3 + off), r3 set before. */
  const probe = (dst: number, size: number, off: number) => [
    mov64(R1, R10),
    add64Imm(R1, dst),
    mov64Imm(R2, size),
    add64Imm(R3, off),
    call(l.probeReadHelper),
  ];
  const keyring = l.sessionKeyring < 0 ? [] : [
    ldx64(R3, R10, CRED), //                    0: r3 = cred
    ...probe(TMP, 8, l.sessionKeyring), //    1-5: tmp = cred->session_keyring
    jneImm(R0, 0, 5), //                        6: if the read failed goto the end
    ldx64(R2, R10, TMP), //                     7: r2 = tmp
    mov64Imm(R3, 1), //                         8: r3 = 1
    jeqImm(R2, 0, 1), //                        9: if r2 == NULL goto 11
    mov64Imm(R3, 2), //                        10: r3 = 2
    stx32(R10, R + 20, R3), //                 11: record.session_keyring = r3
  ];
  const domain = [
    ldx64(R3, R10, CRED), //                    0: r3 = cred
    ...probe(TMP, 8, l.credSecurity), //      1-5: tmp = cred->security
    jneImm(R0, 0, 10), //                       6: if the read failed goto the end
    ldx64(R3, R10, TMP), //                     7: r3 = tmp
    jeqImm(R3, 0, 8), //                        8: if NULL goto the end
    ...probe(R + 8, 8, l.landlockOffset), // 9-13: record.domain = the blob's word
    jneImm(R0, 0, 2), //                       14: if the read failed goto the end
    mov64Imm(R2, 1), //                        15
    stx32(R10, R + 16, R2), //                 16: record.domain_read = 1
  ];
  const withCred = [...keyring, ...domain];
  const body = [
    ldx32(R2, R7, l.pid), //                    r2 = task->pid
    stx32(R10, R + 0, R2), //                   record.tid = r2
    ldx32(R2, R7, l.tgid), //                   r2 = task->tgid
    stx32(R10, R + 4, R2), //                   record.tgid = r2
    mov64Imm(R2, 0), //                         r2 = 0
    stx64(R10, R + 8, R2), //                   record.domain = 0
    stx64(R10, R + 16, R2), //                  record.domain_read = record.session_keyring = 0
    mov64(R3, R7), //                           r3 = task
    ...probe(CRED, 8, l.cred), //               cred = task->cred
    jneImm(R0, 0, 2 + withCred.length), //      if the read failed goto the write
    ldx64(R3, R10, CRED), //                    r3 = cred
    jeqImm(R3, 0, withCred.length), //          if NULL goto the write
    ...withCred,
  ];
  return taskIterProgram(l, body, CRED_RECORD_SIZE);
}

/** Loads {@link landlockProgram}; returns its fd. Throws {@link BpfError} (with the verifier's log). */
export function loadLandlockProgram(l: TaskStateLayout): number {
  return loadIterProgram(landlockProgram(l), "cryo_landlock", l.attachBtfId);
}

/** Decodes whole records (layout: {@link landlockProgram}). */
export function decodeCredRecords(bytes: Uint8Array): CredRecord[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: CredRecord[] = [];
  for (let at = 0; at + CRED_RECORD_SIZE <= bytes.length; at += CRED_RECORD_SIZE) {
    const keyring = dv.getUint32(at + 20, true);
    out.push({
      tid: dv.getUint32(at, true),
      tgid: dv.getUint32(at + 4, true),
      landlockDomain: dv.getUint32(at + 16, true) === 1 ? dv.getBigUint64(at + 8, true) : undefined,
      ...(keyring === 1
        ? { sessionKeyring: "none" }
        : keyring === 2
        ? { sessionKeyring: "set" }
        : {}),
    });
  }
  return out;
}

/**
 * The records of program `progFd` for the threads of process `pid` (read
 * in the caller's pid namespace), as ffi/bpf_task.ts `readTaskStates`
 * reads its own.
 */
export function readCredRecords(progFd: number, pid: number): CredRecord[] {
  return readTaskIterRecords(progFd, pid, CRED_RECORD_SIZE, decodeCredRecords);
}
