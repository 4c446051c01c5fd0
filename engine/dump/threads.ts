/**
 * Per-thread state read through ptrace while the thread is stopped:
 * registers, XSAVE area, signal mask, private pending signals, rseq,
 * robust futex list, and whether it sits in an interrupted syscall.
 *
 * @module
 */

import {
  getRegs,
  getRseqConfig,
  getSigmask,
  getXstate,
  knownXsaveSize,
  peekSiginfo,
} from "../../ffi/ptrace.ts";
import { regsToHex, signed, type UserRegs } from "../../ffi/regs.ts";
import { decodeSiginfo } from "../../ffi/structs.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { Errno } from "../../ffi/errno.ts";
import { encodeBase64 } from "../base64.ts";
import { setThreadXsave } from "../image/thread_xsave.ts";
import type { SigInfoRecord, ThreadState } from "../model.ts";
import type { InjectedThreadState } from "./injected.ts";
import { type ProcStatus, statusComm } from "../proc/status.ts";
import { prepareThreadReads, type ThreadReads } from "../../ffi/thread_reads.ts";
import { listTids } from "../proc/tasks.ts";

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** Converts raw siginfo buffers into model records. */
export function siginfoRecords(raw: Uint8Array[]): SigInfoRecord[] {
  return raw.map((b) => {
    const h = decodeSiginfo(b);
    return { signo: h.signo, code: h.code, raw: encodeBase64(b) };
  });
}

/** How an interrupted syscall must come back after restore. */
export function restartKind(regs: UserRegs): ThreadState["syscall"] {
  const nr = Number(signed(regs.orig_rax));
  if (nr < 0) return { nr: -1, restart: "none" };
  const rax = Number(signed(regs.rax));
  switch (-rax) {
    case Errno.ERESTARTSYS:
    case Errno.ERESTARTNOINTR:
    case Errno.ERESTARTNOHAND:
    case Errno.ERESTART_RESTARTBLOCK:
      return { nr, restart: "restart" };
    default:
      return { nr, restart: "none" };
  }
}

function robustList(tid: number): { head: string; len: number } {
  const head = new BigUint64Array(1);
  const len = new BigUint64Array(1);
  const r = rawSyscall(SYS.get_robust_list, tid, head, len);
  if (r < 0n) return { head: "0x0", len: 0 };
  return { head: hex(head[0]), len: Number(len[0]) };
}

function comm(pid: number, tid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/task/${tid}/comm`).trimEnd();
  } catch {
    return "";
  }
}

/**
 * Collects the state of stopped thread `tid` of process `pid` (`status`:
 * its status read after the freeze, whose Name is its comm; `read`: its
 * ptrace and robust-list reads made already, ffi/thread_reads.ts, else
 * each is made here).
 */
export function collectThread(
  pid: number,
  tid: number,
  injected: InjectedThreadState,
  status?: ProcStatus,
  read?: ThreadReads,
): ThreadState {
  // Read once when the thread was opened for injection, if it was (put back exactly since).
  const own = injected.own;
  const regs = own?.regs ?? read?.regs ?? getRegs(tid);
  const rseq = read?.rseq ?? getRseqConfig(tid);
  const robust = read?.robustList;
  const t: ThreadState = {
    tid,
    comm: status ? statusComm(status) : comm(pid, tid),
    regs: regsToHex(regs),
    sigmask: hex(own?.mask ?? read?.sigmask ?? getSigmask(tid)),
    pending: siginfoRecords(read?.pending ?? peekSiginfo(tid, false)),
    sigaltstack: injected.sigaltstack,
    rseq: rseq.addr === 0n
      ? null
      : { addr: hex(rseq.addr), len: rseq.len, sig: hex(BigInt(rseq.sig)), flags: rseq.flags },
    robustList: read
      ? (robust ? { head: hex(robust.head), len: robust.len } : { head: "0x0", len: 0 })
      : robustList(tid),
    clearChildTid: injected.clearChildTid,
    syscall: restartKind(regs),
  };
  if (injected.numaPolicy) t.mempolicy = injected.numaPolicy; // engine/memory/mempolicy.ts
  // The XSAVE area as bytes, written once, to the thread's NT_X86_XSTATE note.
  setThreadXsave(t, own?.xstate ?? read?.xstate ?? getXstate(tid));
  return t;
}

/**
 * Before a freeze: builds the table of the per-thread reads of the threads
 * of `pid` as listed now (ffi/thread_reads.ts `prepareThreadReads`), so
 * that the freeze only runs it when it finds the same threads. Nothing when
 * the XSAVE size is not known yet in this process (the rehearsal's collect
 * finds it) or `pid` is gone. Never throws.
 */
export function prepareThreadReadsOf(pid: number): void {
  const xsaveBytes = knownXsaveSize();
  if (xsaveBytes === undefined) return;
  try {
    prepareThreadReads(listTids(pid), xsaveBytes);
  } catch { /* gone: the freeze finds out */ }
}

/** Signals pending for the whole process (read through any of its threads). */
export function sharedPending(tid: number): SigInfoRecord[] {
  return siginfoRecords(peekSiginfo(tid, true));
}
