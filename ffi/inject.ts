/**
 * Syscall injection: run one system call inside a ptrace-stopped thread.
 *
 * The thread's registers are saved, rip is pointed at a `syscall`
 * instruction found in the target's executable memory, the arguments are
 * loaded, the thread runs that one instruction and the result is read
 * from rax; every register and the signal mask are then put back exactly.
 * Two ways, both ending in a stop inside the kernel's signal handling
 * (where the original stop was, so the syscall-restart logic applies to
 * the saved frame when it resumes, and pending signals are found):
 *
 * - usually a single step (one stop), with every signal but SIGTRAP
 *   blocked: the step is reported as a forced SIGTRAP, which must stay
 *   unblocked or the kernel would reset the target's SIGTRAP action;
 * - when SIGTRAP is pending (for the thread or the process) or ignored by
 *   the target — a step would take the pending one, or reset SIG_IGN — or
 *   the injected syscall itself sends SIGTRAP, sets its action or sets the
 *   mask: PTRACE_SYSCALL up to the syscall's exit with every signal blocked (its
 *   stops are ptrace notifications, not signals), then a PTRACE_INTERRUPT
 *   stop: three stops.
 *
 * `orig_rax` is -1 on the injected frame so the kernel never applies
 * restart logic to it. What an unblocked signal can do while the thread
 * runs is tolerated: a group stop is passed through, and a SIGSTOP (or a
 * SIGTRAP sent meanwhile) dequeued by the thread is taken and sent again
 * to it afterwards (from cryo: a SIGSTOP's sender cannot be observed),
 * never lost.
 *
 * @module
 */

import { processVmRead } from "./process_vm.ts";
import { rawSyscall } from "./libc.ts";
import { SYS } from "./sysno.ts";
import { PTRACE_EVENT } from "./wait.ts";
import {
  cont,
  getRegs,
  getSiginfo,
  getSigmask,
  interrupt,
  resumeToSyscall,
  setRegs,
  setSigmask,
  singleStep,
  waitStop,
} from "./ptrace.ts";
import { signed, syscallRegs, type UserRegs } from "./regs.ts";

/** An injected syscall did not come back as expected. */
export class InjectionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InjectionError";
  }
}

const ALL_SIGNALS = 0xffffffffffffffffn;
const SIGTRAP = 5;
const SIGTRAP_BIT = 1n << BigInt(SIGTRAP - 1);
/**
 * Every signal but SIGTRAP (the single step's forced SIGTRAP must find it
 * unblocked, or the kernel resets the target's SIGTRAP action to SIG_DFL).
 */
const ALL_BUT_SIGTRAP = ALL_SIGNALS & ~SIGTRAP_BIT;
/** Stops tolerated while one syscall is injected (group stops, stolen SIGSTOPs, ...). */
const MAX_STOPS = 64;

/**
 * Runs syscall `nr` with up to six arguments in stopped thread `tid`, using
 * the `syscall` instruction at `syscallAddr`. Returns the raw result (a
 * negative value is -errno). Registers and signal mask are restored exactly.
 */
export function injectSyscall(
  tid: number,
  syscallAddr: bigint,
  nr: number,
  ...args: (number | bigint)[]
): bigint {
  const saved = getRegs(tid);
  const savedMask = getSigmask(tid);
  const a = args.map((x) => BigInt.asUintN(64, BigInt(x)));
  while (a.length < 6) a.push(0n);
  const regs: UserRegs = syscallRegs(saved, nr, a, syscallAddr);
  const stolen: number[] = [];
  const step = !touchesSigtrap(nr, a) && !sigtrapInPlay(tid);
  setSigmask(tid, step ? ALL_BUT_SIGTRAP : ALL_SIGNALS);
  setRegs(tid, regs);
  try {
    let result: bigint;
    if (step) {
      result = stepOver(tid, nr, regs, stolen);
    } else {
      result = runToExit(tid, nr, regs, stolen);
      parkInInterruptStop(tid, stolen);
    }
    setRegs(tid, saved);
    setSigmask(tid, savedMask);
    return result;
  } catch (e) {
    // Put the thread back if it is still there; report the original failure.
    try {
      setRegs(tid, saved);
      setSigmask(tid, savedMask);
    } catch { /* gone or running: nothing to restore */ }
    throw e;
  } finally {
    // A SIGSTOP the thread dequeued meanwhile goes back to its process, a SIGTRAP to it.
    for (const sig of stolen) {
      if (sig === SIGTRAP) rawSyscall(SYS.tgkill, tgidOf(tid), tid, sig);
      else rawSyscall(SYS.kill, tid, sig);
    }
  }
}

/**
 * Whether SIGTRAP is pending for thread `tid` or its process, or ignored
 * (/proc/<tid>/status SigPnd, ShdPnd, SigIgn): then a single step cannot be used.
 */
function sigtrapInPlay(tid: number): boolean {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${tid}/status`);
  } catch {
    return true;
  }
  for (const field of ["SigPnd", "ShdPnd", "SigIgn"]) {
    const m = text.match(new RegExp(`^${field}:\\s+([0-9a-f]+)`, "m"));
    if (!m || (BigInt(`0x${m[1]}`) & SIGTRAP_BIT) !== 0n) return true;
  }
  return false;
}

/**
 * Whether injected syscall `nr` (arguments `a`) changes what a single
 * step's SIGTRAP would meet: sends SIGTRAP, sets its action, or sets the mask.
 */
function touchesSigtrap(nr: number, a: readonly bigint[]): boolean {
  const trap = BigInt(SIGTRAP);
  switch (nr) {
    case SYS.kill:
    case SYS.tkill:
    case SYS.rt_sigqueueinfo:
      return a[1] === trap;
    case SYS.tgkill:
    case SYS.rt_tgsigqueueinfo:
      return a[2] === trap;
    case SYS.rt_sigaction:
      return a[0] === trap && a[1] !== 0n;
    case SYS.rt_sigprocmask:
      return a[1] !== 0n;
    default:
      return false;
  }
}

/** The process of thread `tid`. */
function tgidOf(tid: number): number {
  try {
    const m = Deno.readTextFileSync(`/proc/${tid}/status`).match(/^Tgid:\s+(\d+)/m);
    return m ? Number(m[1]) : tid;
  } catch {
    return tid;
  }
}

/** si_code of the signal `tid` is stopped for (> 0: sent by the kernel, like a step trap). */
function stopSignalCode(tid: number): number {
  return new DataView(getSiginfo(tid).buffer).getInt32(8, true);
}

/** Single-steps `tid` over the injected syscall; returns rax. */
function stepOver(tid: number, nr: number, regs: UserRegs, stolen: number[]): bigint {
  for (let i = 0; i < MAX_STOPS; i++) {
    singleStep(tid);
    const st = waitStop(tid);
    if (st.event === 0 && st.signal === SIGTRAP && stopSignalCode(tid) > 0) {
      const after = getRegs(tid);
      if (after.rip === regs.rip) {
        // From a stop inside a syscall (e.g. an exec stop) the first step only
        // completes that syscall (which stores its own result in rax): again.
        setRegs(tid, regs);
        continue;
      }
      if (after.rip !== regs.rip + 2n) {
        throw new InjectionError(
          `thread ${tid}: injected syscall ${nr} ended at rip 0x${after.rip.toString(16)}`,
        );
      }
      return signed(after.rax);
    }
    if (st.event === 0) {
      stolen.push(st.signal); // a SIGSTOP, or a SIGTRAP someone sent: not ours to take
      continue;
    }
    // PTRACE_EVENT_STOP (a group stop, an interrupt): go on.
  }
  throw new InjectionError(`thread ${tid}: injected syscall ${nr} did not complete`);
}

/** Resumes `tid` with PTRACE_SYSCALL until the exit stop of the injected syscall; returns rax. */
function runToExit(tid: number, nr: number, regs: UserRegs, stolen: number[]): bigint {
  let entered = false;
  for (let i = 0; i < MAX_STOPS; i++) {
    resumeToSyscall(tid, 0);
    const st = waitStop(tid);
    if (st.event === 0 && (st.signal & 0x7f) === SIGTRAP) {
      // A syscall stop (SIGTRAP itself is blocked: it cannot be a signal;
      // with PTRACE_O_TRACESYSGOOD the stop reads SIGTRAP | 0x80).
      // Entry and exit stops look alike: the injected syscall's entry is
      // the first one just past the instruction with orig_rax = nr, its exit the next.
      const after = getRegs(tid);
      const ours = after.rip === regs.rip + 2n && after.orig_rax === BigInt(nr);
      if (entered) {
        if (!ours) {
          throw new InjectionError(
            `thread ${tid}: injected syscall ${nr} ended at rip 0x${after.rip.toString(16)}`,
          );
        }
        return signed(after.rax);
      }
      if (ours) {
        entered = true;
        continue;
      }
      // The exit of the syscall the thread was stopped in (e.g. at an exec
      // stop): it stored its own result; load the injected frame again.
      setRegs(tid, regs);
      continue;
    }
    if (st.event === 0) {
      stolen.push(st.signal); // a signal-delivery-stop: only SIGSTOP gets through the mask
      continue;
    }
    // PTRACE_EVENT_STOP (a group stop, an interrupt): go on.
  }
  throw new InjectionError(`thread ${tid}: injected syscall ${nr} did not complete`);
}

/**
 * From the injected syscall's exit stop, moves `tid` to a PTRACE_INTERRUPT
 * stop (inside signal handling, where the original stop was), without
 * letting it run any user code.
 */
function parkInInterruptStop(tid: number, stolen: number[]): void {
  interrupt(tid);
  for (let i = 0; i < MAX_STOPS; i++) {
    cont(tid, 0);
    const st = waitStop(tid);
    if (st.event === PTRACE_EVENT.STOP) return;
    if (st.event === 0 && (st.signal & 0x7f) !== SIGTRAP) stolen.push(st.signal);
  }
  throw new InjectionError(`thread ${tid}: did not stop again after an injected syscall`);
}

/**
 * The lines of a maps text whose permissions start `r?x` (readable and
 * executable), found without splitting the others: a process may have tens
 * of thousands of mappings and only a few executable ones.
 */
export function executableMapsLines(text: string): string[] {
  const out: string[] = [];
  for (let at = 0; at < text.length;) {
    let nl = text.indexOf("\n", at);
    if (nl < 0) nl = text.length;
    const sp = text.indexOf(" ", at);
    if (
      sp >= 0 && sp + 3 < nl && text.charCodeAt(sp + 1) === 0x72 /* r */ &&
      text.charCodeAt(sp + 3) === 0x78 /* x */
    ) {
      out.push(text.slice(at, nl));
    }
    at = nl + 1;
  }
  return out;
}

/**
 * Finds the address of a `syscall` instruction (0f 05) in the executable
 * mappings of `pid`, preferring [vdso], then any other executable mapping.
 * `exclude` skips a range (e.g. cryo's own bootstrap area).
 */
export function findSyscallInstruction(
  pid: number,
  exclude?: { start: bigint; end: bigint },
  /** The text of /proc/<pid>/maps if the caller just read it. */
  mapsText?: string,
): bigint {
  const lines = executableMapsLines(mapsText ?? Deno.readTextFileSync(`/proc/${pid}/maps`));
  const ranges = lines.map((l) => {
    const [range, perms] = l.split(/\s+/);
    const [s, e] = range.split("-").map((x) => BigInt(`0x${x}`));
    return { start: s, end: e, perms, name: l.split(/\s+/).slice(5).join(" ") };
  }).filter((m) => m.perms[0] === "r" && m.perms[2] === "x" && m.name !== "[vsyscall]")
    .filter((m) => !exclude || m.end <= exclude.start || m.start >= exclude.end);
  ranges.sort((x, y) => (x.name === "[vdso]" ? 0 : 1) - (y.name === "[vdso]" ? 0 : 1));
  const chunk = 1 << 16;
  const buf = new Uint8Array(chunk + 1);
  for (const m of ranges) {
    for (let a = m.start; a < m.end; a += BigInt(chunk)) {
      const len = Number(m.end - a < BigInt(chunk + 1) ? m.end - a : BigInt(chunk + 1));
      let n: number;
      try {
        n = processVmRead(pid, a, buf.subarray(0, len));
      } catch {
        break;
      }
      for (let i = 0; i + 1 < n; i++) {
        if (buf[i] === 0x0f && buf[i + 1] === 0x05) return a + BigInt(i);
      }
    }
  }
  throw new InjectionError(`process ${pid}: no syscall instruction found in executable memory`);
}

/** PTRACE_EVENT_STOP, the stop PTRACE_INTERRUPT leads to. */
const PTRACE_EVENT_STOP = 128;

/**
 * Puts a thread stopped by an injected syscall's single step (a SIGTRAP
 * signal-delivery stop) back into a PTRACE_INTERRUPT stop, without running
 * any of its code: PTRACE_INTERRUPT queues the trap, PTRACE_CONT (discarding
 * the SIGTRAP) lets the kernel reach it before returning to user space.
 * Should the tracer die in a signal-delivery stop, the kernel would deliver
 * that SIGTRAP and kill the process; from an interrupt stop it just resumes.
 */
export function returnToInterruptStop(tid: number): void {
  interrupt(tid);
  cont(tid, 0);
  const st = waitStop(tid);
  if (st.event !== PTRACE_EVENT_STOP) {
    throw new InjectionError(
      `thread ${tid}: expected an interrupt stop after an injected syscall, got signal ${st.signal} event ${st.event}`,
    );
  }
}
