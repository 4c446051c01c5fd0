/**
 * Syscall injection: run one system call inside a ptrace-stopped thread.
 *
 * The thread's registers are saved, rip is pointed at a `syscall`
 * instruction found in the target's executable memory, the arguments are
 * loaded, the thread single-steps over that one instruction, the result is
 * read from rax and every register is put back exactly. All signals but
 * SIGTRAP are blocked for the duration so that nothing else can run in the
 * target (a SIGTRAP handler of the target is kept: see ALL_BUT_SIGTRAP).
 * `orig_rax` is set to -1 on the injected frame so the kernel never applies
 * syscall-restart logic to it, while the saved frame (possibly stopped
 * inside an interrupted syscall) keeps its own restart semantics.
 *
 * @module
 */

import { processVmRead } from "./process_vm.ts";
import {
  cont,
  getRegs,
  getSigmask,
  interrupt,
  setRegs,
  setSigmask,
  singleStep,
  waitStop,
} from "./ptrace.ts";
import { signed, type UserRegs } from "./regs.ts";

/** An injected syscall did not come back to the expected single-step stop. */
export class InjectionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InjectionError";
  }
}

/**
 * Every signal but SIGTRAP. The single step is reported with a forced
 * SIGTRAP; if SIGTRAP were blocked the kernel would reset the target's
 * SIGTRAP handler to SIG_DFL. Left unblocked, the trap just stops the
 * thread for us and is discarded when we resume it.
 */
const ALL_BUT_SIGTRAP = 0xffffffffffffffffn & ~(1n << 4n);

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
  const regs: UserRegs = {
    ...saved,
    rax: BigInt(nr),
    orig_rax: 0xffffffffffffffffn,
    rip: syscallAddr,
    rdi: a[0],
    rsi: a[1],
    rdx: a[2],
    r10: a[3],
    r8: a[4],
    r9: a[5],
    eflags: saved.eflags & ~0x100n,
  };
  setSigmask(tid, ALL_BUT_SIGTRAP);
  setRegs(tid, regs);
  try {
    let after = saved;
    // From a stop inside a syscall (e.g. PTRACE_EVENT_EXEC) the first step
    // only completes that syscall (which stores its own return value in rax)
    // and reports at once: load the registers again and step once more.
    for (let attempt = 0; attempt < 2; attempt++) {
      if (attempt > 0) setRegs(tid, regs);
      singleStep(tid);
      const st = waitStop(tid);
      if (st.signal !== 5) {
        throw new InjectionError(
          `thread ${tid}: injected syscall ${nr} stopped with signal ${st.signal} instead of SIGTRAP`,
        );
      }
      after = getRegs(tid);
      if (after.rip !== syscallAddr) break;
    }
    if (after.rip !== syscallAddr + 2n) {
      throw new InjectionError(
        `thread ${tid}: injected syscall ${nr} ended at rip 0x${after.rip.toString(16)}`,
      );
    }
    const result = signed(after.rax);
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
  }
}

/**
 * Finds the address of a `syscall` instruction (0f 05) in the executable
 * mappings of `pid`, preferring [vdso], then any other executable mapping.
 * `exclude` skips a range (e.g. cryo's own bootstrap area).
 */
export function findSyscallInstruction(
  pid: number,
  exclude?: { start: bigint; end: bigint },
): bigint {
  const lines = Deno.readTextFileSync(`/proc/${pid}/maps`).split("\n").filter(Boolean);
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
