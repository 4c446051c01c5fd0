/**
 * ptrace(2) for cryo. Every call is synchronous and must be made from the
 * main JS thread: the kernel binds a tracee to the tracer *thread*.
 *
 * @module
 */

import { rawSyscall, SyscallError } from "./libc.ts";
import { SYS } from "./sysno.ts";
import { decodeUserRegs, encodeUserRegs, USER_REGS_SIZE, type UserRegs } from "./regs.ts";
import { __WALL, PTRACE_EVENT, waitPid, type WaitStatus } from "./wait.ts";
import { Errno } from "./errno.ts";

/** ptrace request numbers. */
export const PTRACE = {
  PEEKDATA: 2,
  POKEDATA: 5,
  CONT: 7,
  KILL: 8,
  SYSCALL: 24,
  SINGLESTEP: 9,
  GETREGS: 12,
  SETREGS: 13,
  GETFPREGS: 14,
  SETFPREGS: 15,
  DETACH: 17,
  SETOPTIONS: 0x4200,
  GETEVENTMSG: 0x4201,
  GETSIGINFO: 0x4202,
  SETSIGINFO: 0x4203,
  GETREGSET: 0x4204,
  SETREGSET: 0x4205,
  SEIZE: 0x4206,
  INTERRUPT: 0x4207,
  LISTEN: 0x4208,
  PEEKSIGINFO: 0x4209,
  GETSIGMASK: 0x420a,
  SETSIGMASK: 0x420b,
  GET_SYSCALL_INFO: 0x420e,
  GET_RSEQ_CONFIGURATION: 0x420f,
  GET_SYSCALL_USER_DISPATCH_CONFIG: 0x4211,
} as const;

/** PTRACE_O_* option bits for {@link seize}. */
export const PTRACE_O = {
  TRACESYSGOOD: 1,
  TRACEFORK: 2,
  TRACEVFORK: 4,
  TRACECLONE: 8,
  TRACEEXEC: 0x10,
  TRACEVFORKDONE: 0x20,
  TRACEEXIT: 0x40,
  EXITKILL: 0x100000,
} as const;

/** ELF note types usable with GETREGSET/SETREGSET. */
export const NT = { PRSTATUS: 1, PRFPREG: 2, X86_XSTATE: 0x202 } as const;

const REQUEST_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(PTRACE).map(([k, v]) => [v, `PTRACE_${k}`]),
);

function ptrace(req: number, tid: number, addr: bigint | number = 0, data: unknown = 0): bigint {
  // deno-lint-ignore no-explicit-any
  const r = rawSyscall(SYS.ptrace, req, tid, addr, data as any);
  if (r < 0n) {
    throw new SyscallError(`ptrace(${REQUEST_NAMES[req] ?? req})`, [tid], Number(-r));
  }
  return r;
}

/** Attaches to `tid` without stopping it (PTRACE_SEIZE) with PTRACE_O_* options. */
export function seize(tid: number, options = 0): void {
  ptrace(PTRACE.SEIZE, tid, 0, options);
}

/** Sets PTRACE_O_* options on a stopped tracee. */
export function setOptions(tid: number, options: number): void {
  ptrace(PTRACE.SETOPTIONS, tid, 0, options);
}

/** Asks a seized tracee to stop (PTRACE_INTERRUPT); wait for the stop with {@link waitStop}. */
export function interrupt(tid: number): void {
  ptrace(PTRACE.INTERRUPT, tid);
}

/** Resumes a stopped tracee, delivering `sig` (0 = none). */
export function cont(tid: number, sig = 0): void {
  ptrace(PTRACE.CONT, tid, 0, sig);
}

/** Resumes a stopped tracee up to its next syscall entry or exit (PTRACE_SYSCALL). */
export function resumeToSyscall(tid: number, sig = 0): void {
  ptrace(PTRACE.SYSCALL, tid, 0, sig);
}

/** Executes one instruction, then stops with SIGTRAP. */
export function singleStep(tid: number, sig = 0): void {
  ptrace(PTRACE.SINGLESTEP, tid, 0, sig);
}

/** Detaches from a stopped tracee, delivering `sig` (0 = none). */
export function detach(tid: number, sig = 0): void {
  ptrace(PTRACE.DETACH, tid, 0, sig);
}

/** PTRACE_LISTEN: lets a group-stopped tracee wait for SIGCONT while still traced. */
export function listen(tid: number): void {
  ptrace(PTRACE.LISTEN, tid);
}

/** Message of the last ptrace event (new pid for fork/clone, old tid for exec). */
export function getEventMsg(tid: number): bigint {
  const buf = new BigUint64Array(1);
  ptrace(PTRACE.GETEVENTMSG, tid, 0, buf);
  return buf[0];
}

/** Reads the general registers. */
export function getRegs(tid: number): UserRegs {
  const buf = new Uint8Array(USER_REGS_SIZE);
  ptrace(PTRACE.GETREGS, tid, 0, buf);
  return decodeUserRegs(buf);
}

/** Writes the general registers. */
export function setRegs(tid: number, regs: UserRegs): void {
  ptrace(PTRACE.SETREGS, tid, 0, encodeUserRegs(regs));
}

/** Reads a register set (NT_*) into a buffer of at most `maxSize` bytes; returns the used part. */
export function getRegset(tid: number, type: number, maxSize: number): Uint8Array {
  const buf = new Uint8Array(maxSize);
  const iov = new BigUint64Array(2);
  iov[0] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
  iov[1] = BigInt(maxSize);
  ptrace(PTRACE.GETREGSET, tid, type, iov);
  return buf.subarray(0, Number(iov[1]));
}

/** Writes a register set (NT_*). */
export function setRegset(tid: number, type: number, bytes: Uint8Array): void {
  const copy = new Uint8Array(bytes);
  const iov = new BigUint64Array(2);
  iov[0] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(copy)));
  iov[1] = BigInt(copy.length);
  ptrace(PTRACE.SETREGSET, tid, type, iov);
}

let xsaveSizeCache: number | undefined;

/** Size of the XSAVE area the kernel exposes through NT_X86_XSTATE (needs any stopped tracee). */
export function xsaveSize(tid: number): number {
  xsaveSizeCache ??= getRegset(tid, NT.X86_XSTATE, 1 << 16).length;
  return xsaveSizeCache;
}

/** The XSAVE area's size when {@link xsaveSize} found it already in this process, else undefined. */
export function knownXsaveSize(): number | undefined {
  return xsaveSizeCache;
}

/** Reads the full XSAVE area (NT_X86_XSTATE). */
export function getXstate(tid: number): Uint8Array {
  return getRegset(tid, NT.X86_XSTATE, xsaveSize(tid));
}

/** Writes the full XSAVE area (NT_X86_XSTATE). */
export function setXstate(tid: number, bytes: Uint8Array): void {
  setRegset(tid, NT.X86_XSTATE, bytes);
}

/**
 * The buffers of the three requests that set a thread's final state
 * (its XSAVE area, registers and signal mask), made ahead of
 * {@link setFinalState} (engine/restore/final_state.ts makes them while
 * the restore waits for its stubs).
 */
export interface FinalStateRequests {
  /** The iovec of PTRACE_SETREGSET NT_X86_XSTATE (pointing into {@link xstate}). */
  xstateIov: BigUint64Array;
  /** A copy of the XSAVE area (kept alive with its iovec). */
  xstate: Uint8Array;
  /** `user_regs_struct` as {@link setRegs} writes it. */
  regs: Uint8Array;
  /** The mask as {@link setSigmask} writes it. */
  sigmask: BigUint64Array;
}

/** The buffers {@link setFinalState} writes: the same bytes setXstate, setRegs, setSigmask write. */
export function finalStateRequests(
  xstate: Uint8Array,
  regs: UserRegs,
  sigmask: bigint,
): FinalStateRequests {
  const copy = new Uint8Array(xstate);
  const iov = new BigUint64Array(2);
  iov[0] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(copy)));
  iov[1] = BigInt(copy.length);
  return {
    xstateIov: iov,
    xstate: copy,
    regs: encodeUserRegs(regs),
    sigmask: new BigUint64Array([sigmask]),
  };
}

/**
 * `setXstate`, `setRegs` and `setSigmask` of stopped thread `tid`, in that
 * order, from buffers made by {@link finalStateRequests} (each set used
 * once: the kernel may shorten the iovec's length).
 */
export function setFinalState(tid: number, r: FinalStateRequests): void {
  ptrace(PTRACE.SETREGSET, tid, NT.X86_XSTATE, r.xstateIov);
  ptrace(PTRACE.SETREGS, tid, 0, r.regs);
  ptrace(PTRACE.SETSIGMASK, tid, 8, r.sigmask);
}

/** Reads the blocked-signal mask. */
export function getSigmask(tid: number): bigint {
  const buf = new BigUint64Array(1);
  ptrace(PTRACE.GETSIGMASK, tid, 8, buf);
  return buf[0];
}

/** Sets the blocked-signal mask. */
export function setSigmask(tid: number, mask: bigint): void {
  const buf = new BigUint64Array([mask]);
  ptrace(PTRACE.SETSIGMASK, tid, 8, buf);
}

/** Size of a siginfo_t. */
export const SIGINFO_SIZE = 128;

/**
 * Reads pending signals without dequeuing them (PTRACE_PEEKSIGINFO):
 * the thread's private queue, or the process-wide one when `shared`.
 */
export function peekSiginfo(tid: number, shared: boolean): Uint8Array[] {
  const out: Uint8Array[] = [];
  const batch = 32;
  for (let off = 0;; off += batch) {
    const args = new Uint8Array(16);
    const dv = new DataView(args.buffer);
    dv.setBigUint64(0, BigInt(off), true);
    dv.setUint32(8, shared ? 1 : 0, true);
    dv.setInt32(12, batch, true);
    const buf = new Uint8Array(SIGINFO_SIZE * batch);
    const n = Number(
      ptrace(
        PTRACE.PEEKSIGINFO,
        tid,
        BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(args))),
        buf,
      ),
    );
    for (let i = 0; i < n; i++) out.push(buf.slice(i * SIGINFO_SIZE, (i + 1) * SIGINFO_SIZE));
    if (n < batch) return out;
  }
}

/** The siginfo of the signal that caused the current stop. */
export function getSiginfo(tid: number): Uint8Array {
  const buf = new Uint8Array(SIGINFO_SIZE);
  ptrace(PTRACE.GETSIGINFO, tid, 0, buf);
  return buf;
}

/**
 * Whether stopped thread `tid`'s ptrace stop lies inside the kernel's
 * signal handling (a signal-delivery stop, a group stop, a
 * PTRACE_EVENT_STOP), whose way out restarts a syscall its registers say
 * was interrupted (orig_rax the call, rax an ERESTART* code) or ends it in
 * EINTR for a signal with a handler; false at a syscall stop or a
 * PTRACE_EVENT stop of a syscall (fork, clone, exec...), left straight for
 * user space. A stop with no siginfo (a group stop of a thread attached
 * without PTRACE_SEIZE) is inside signal handling too.
 */
export function stopInSignalHandling(tid: number): boolean {
  const buf = new Uint8Array(SIGINFO_SIZE);
  try {
    ptrace(PTRACE.GETSIGINFO, tid, 0, buf);
  } catch (e) {
    if (e instanceof SyscallError && e.errno === Errno.EINVAL) return true;
    throw e;
  }
  const view = new DataView(buf.buffer);
  const signo = view.getInt32(0, true);
  const code = view.getInt32(8, true);
  if (signo !== SIGTRAP_NUMBER) return true;
  if (code === SIGTRAP_NUMBER || code === (SIGTRAP_NUMBER | 0x80)) return false; // a syscall stop
  const event = code >> 8;
  return (code & 0xff) !== SIGTRAP_NUMBER || event === 0 || event === PTRACE_EVENT.STOP;
}

const SIGTRAP_NUMBER = 5;

/** What PTRACE_GET_SYSCALL_INFO reports at a syscall stop. */
export interface SyscallInfo {
  /** 1 = entry, 2 = exit (PTRACE_SYSCALL_INFO_*), 0 = not a syscall stop. */
  op: number;
  /** The instruction pointer (just past the `syscall` instruction). */
  ip: bigint;
  /** The syscall number (at entry). */
  nr: bigint;
  /** The result (at exit; negative: -errno). */
  rval: bigint;
}

/** Reads the syscall a thread stopped in a syscall stop is entering or leaving. */
export function getSyscallInfo(tid: number): SyscallInfo {
  const buf = new Uint8Array(88);
  ptrace(PTRACE.GET_SYSCALL_INFO, tid, buf.length, buf);
  const dv = new DataView(buf.buffer);
  const op = buf[0];
  return {
    op,
    ip: dv.getBigUint64(8, true),
    nr: op === 1 ? dv.getBigUint64(24, true) : -1n,
    rval: op === 2 ? dv.getBigInt64(24, true) : 0n,
  };
}

/** A thread's rseq registration (all zero when it has none). */
export interface RseqConfig {
  /** Address of the registered `struct rseq`. */
  addr: bigint;
  /** Registered length. */
  len: number;
  /** Abort signature. */
  sig: number;
  /** Registration flags. */
  flags: number;
}

/** Reads the rseq registration (PTRACE_GET_RSEQ_CONFIGURATION). */
export function getRseqConfig(tid: number): RseqConfig {
  const buf = new Uint8Array(24);
  ptrace(PTRACE.GET_RSEQ_CONFIGURATION, tid, 24, buf);
  const dv = new DataView(buf.buffer);
  return {
    addr: dv.getBigUint64(0, true),
    len: dv.getUint32(8, true),
    sig: dv.getUint32(12, true),
    flags: dv.getUint32(16, true),
  };
}

/**
 * The syscall user dispatch mode of a stopped tracee
 * (PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG, Linux 6.4: 0 off, 1 on), or
 * undefined when the kernel has no such request.
 */
export function syscallUserDispatchMode(tid: number): number | undefined {
  const buf = new BigUint64Array(4); // struct ptrace_sud_config: mode, selector, offset, len
  const r = rawSyscall(SYS.ptrace, PTRACE.GET_SYSCALL_USER_DISPATCH_CONFIG, tid, 32, buf);
  if (r === -5n /* EIO: unknown request */ || r === -22n /* EINVAL */) return undefined;
  if (r < 0n) {
    throw new SyscallError("ptrace(PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG)", [tid], Number(-r));
  }
  return Number(buf[0]);
}

/** Reads one word of the tracee's memory. */
export function peekData(tid: number, addr: bigint): bigint {
  const buf = new BigUint64Array(1);
  // The raw syscall stores the word at *data.
  ptrace(PTRACE.PEEKDATA, tid, addr, buf);
  return buf[0];
}

/** Writes one word of the tracee's memory. */
export function pokeData(tid: number, addr: bigint, value: bigint): void {
  ptrace(PTRACE.POKEDATA, tid, addr, BigInt.asUintN(64, value));
}

/** A tracee that is gone (exited or killed) while cryo waited for it. */
export class TraceeGoneError extends Error {
  /** The thread id. */
  readonly tid: number;
  /** How it ended. */
  readonly status: WaitStatus;
  constructor(tid: number, status: WaitStatus) {
    super(
      status.kind === "exited"
        ? `process ${tid} exited (status ${status.code}) while being checkpointed`
        : status.kind === "signaled"
        ? `process ${tid} was killed by signal ${status.signal} while being checkpointed`
        : `process ${tid} vanished`,
    );
    this.name = "TraceeGoneError";
    this.tid = tid;
    this.status = status;
  }
}

/**
 * Blocks until `tid` is in a ptrace stop and returns that stop. Throws
 * {@link TraceeGoneError} if it exits instead.
 */
export function waitStop(tid: number): WaitStatus & { kind: "stopped" } {
  const st = waitPid(tid, __WALL);
  if (st.kind === "stopped") return st;
  throw new TraceeGoneError(tid, st);
}
