/**
 * The engine side of restoring credentials: once everything else of a
 * process is restored (its program ran, the engine's per-thread injections
 * are done), every thread runs its own credentials section of the restore
 * program (see creds.ts), all threads at once (each changes only its own
 * credentials); each thread but the main one starts at its own-state
 * section, which goes on into it (engine/restore/thread_state.ts). Every
 * thread's credentials
 * are then read back (status file; securebits by the section itself when
 * recorded as 0, else by a prctl run in the thread) and compared with the
 * record: a difference, or a step the
 * kernel refused, fails the restore with one line; it never goes on with
 * other credentials.
 *
 * What the engine still does afterwards needs no privilege in the tracee:
 * munmap of the bootstrap, and ptrace requests (registers, XSAVE, signal
 * mask, detach) on tasks it is already attached to.
 *
 * @module
 */

import { cont, getRegs, setRegs, waitStop } from "../../ffi/ptrace.ts";
import type { UserRegs } from "../../ffi/regs.ts";
import { SYS } from "../../ffi/sysno.ts";
import { errnoName } from "../../ffi/errno.ts";
import type { ProcessImage } from "../model.ts";
import { RestoreError } from "../errors.ts";
import { describeFailedOp, OP_SIZE } from "../program/builder.ts";
import type { Bootstrap } from "../restore/stub.ts";
import { type CredsSections, PR, readThreadCreds, SECBIT_KEEP_CAPS } from "./creds.ts";
import { credsDifferences } from "./creds_check.ts";
import { parseStatus, type ProcStatus } from "../proc/status.ts";
import { procPath, readProcText } from "../proc/io.ts";
import { CredsLines, statusHoldsCreds } from "./creds_text.ts";
import { processVmReadFully } from "../../ffi/process_vm.ts";
import type { RunAreas } from "../restore/thread_state.ts";
import { RUN_AREA_BYTES, RUN_DONE_SLOT } from "./sched_run.ts";

const SIGTRAP = 5;
const NO_SYSCALL = 0xffffffffffffffffn;
/** The direction flag of eflags (the stub's copies need it clear; `loopRip` skips its `cld`). */
const EFLAGS_DF = 0x400n;

/** What {@link restoreCreds} needs of a compiled process. */
export interface CompiledCreds {
  bootstrap: Bootstrap;
  /** Address of a `syscall; int3` gadget (for the read-back prctl calls). */
  syscallGadget: bigint;
  creds: CredsSections;
  /**
   * The slots of each thread's run but the main one's (engine/restore/thread_state.ts):
   * slot 0 receives its timer slack. Without them every run uses the program's slots.
   */
  threadSections?: readonly { tid: number; slots: bigint }[];
}

/** A stopped thread to continue from other registers, and where it must stop again. */
export interface Run {
  tid: number;
  regs: UserRegs;
  /** Explains the stop when it is not the expected one (null: as expected). */
  check: (st: { signal: number }, after: UserRegs) => string | null;
}

/**
 * Continues every thread of `runs` from its registers, all at once, then
 * waits for each to stop again; returns the registers at those stops.
 * Throws `fail` + the first explanation of an unexpected stop.
 */
export function runAll(runs: Run[], fail: (tid: number) => string): UserRegs[] {
  for (const r of runs) {
    setRegs(r.tid, r.regs);
    cont(r.tid, 0);
  }
  const out: UserRegs[] = [];
  let problem: string | undefined;
  for (const r of runs) {
    const st = waitStop(r.tid);
    const after = getRegs(r.tid);
    const why = r.check(st, after);
    if (why !== null && problem === undefined) problem = `${fail(r.tid)}: ${why}`;
    out.push(after);
  }
  if (problem !== undefined) throw new RestoreError(problem);
  return out;
}

/**
 * A run of the program from op `op` in thread `tid` (stopped) until DONE;
 * with `slots`, the run's slot results go there (r12) instead of the
 * program's slots. The run starts from the thread's registers, or from a
 * copy of `from` (the registers of a thread stopped at the same place of
 * the same stub, e.g. another thread parked at its birth: the stub reads
 * none of the registers set here; the finalize sets every register
 * afterwards).
 */
export function sectionRun(
  tid: number,
  boot: Bootstrap,
  op: number,
  slots?: bigint,
  from?: UserRegs,
): Run {
  const program = boot.restore;
  const regs = from ? { ...from } : getRegs(tid);
  regs.rip = boot.resumeRip;
  if (slots !== undefined) {
    regs.rip = boot.loopRip;
    regs.r12 = slots;
    regs.eflags &= ~EFLAGS_DF;
  }
  regs.rbx = program.opsAddress + BigInt(op * OP_SIZE);
  regs.orig_rax = NO_SYSCALL; // no syscall restart on the way out of this stop
  return {
    tid,
    regs,
    check: (st, after) => {
      if (st.signal === SIGTRAP && after.rip === boot.doneRip) return null;
      if (st.signal === SIGTRAP && after.rip === boot.failRip) {
        return describeFailedOp(program, after.rbx, after.rax);
      }
      return `unexpected stop (signal ${st.signal}) at 0x${after.rip.toString(16)}`;
    },
  };
}

/** A prctl(`option`) run in thread `tid` (stopped) through the `syscall; int3` gadget. */
function prctlRun(tid: number, gadget: bigint, option: number): Run {
  const regs = getRegs(tid);
  Object.assign(regs, {
    rip: gadget,
    rax: BigInt(SYS.prctl),
    orig_rax: NO_SYSCALL,
    rdi: BigInt(option),
    rsi: 0n,
    rdx: 0n,
    r10: 0n,
    r8: 0n,
  });
  return {
    tid,
    regs,
    check: (st, after) => {
      if (st.signal !== SIGTRAP || after.rip !== gadget + 3n) {
        return `prctl(${option}) stopped with signal ${st.signal} at 0x${after.rip.toString(16)}`;
      }
      return after.rax >= 0xfffffffffffff001n
        ? `prctl(${option}) failed: ${errnoName(Number(-BigInt.asIntN(64, after.rax)))}`
        : null;
    },
  };
}

/**
 * Restores and then checks the credentials of every thread of `image`,
 * whose threads are all stopped (the main one at the program's END, the
 * others parked), with the bootstrap still mapped. Returns the run area
 * of each thread of `compiled.threadSections` (its timer slack and the
 * scheduling it read, unchecked: engine/task/sched.ts `checkTimerSlacks`,
 * engine/task/sched_run.ts `checkSchedsReadInRuns`).
 */
export function restoreCreds(
  image: ProcessImage,
  compiled: CompiledCreds,
): RunAreas {
  const pid = image.pid;
  const boot = compiled.bootstrap;
  const gadget = compiled.syscallGadget;
  const fail = (what: string) => `cannot restore the credentials of process ${pid} (${what})`;
  const own = compiled.threadSections ?? [];
  const slotsOf = new Map(own.map((s) => [s.tid, s.slots]));
  // The threads but the main one are all parked at their birth in the stub, after the same
  // clone3: one's registers serve as the start of every run (one PTRACE_GETREGS, not one each).
  let parked: UserRegs | undefined;
  const runs = compiled.creds.threads.map(({ tid, op }) => {
    if (tid === pid) return sectionRun(tid, boot, op, slotsOf.get(tid));
    parked ??= getRegs(tid);
    return sectionRun(tid, boot, op, slotsOf.get(tid), parked);
  });
  for (const r of runs) {
    setRegs(r.tid, r.regs);
    cont(r.tid, 0);
  }
  const stops = runs.map((r) => waitStop(r.tid));
  // Each run's area, read once every run stopped: a run that stopped with SIGTRAP and left its
  // tid as its done mark is at its section's END; any other stop is explained from its registers.
  const areas = readRunAreas(pid, own);
  let problem: string | undefined;
  runs.forEach((r, i) => {
    const st = stops[i];
    const area = areas.get(r.tid);
    if (st.signal === SIGTRAP && area && doneMarkOf(area) === BigInt(r.tid)) return;
    const why = r.check(st, getRegs(r.tid));
    // A thread but the main one runs its own-state section first (engine/restore/thread_state.ts).
    const who = r.tid === pid
      ? fail(`thread ${r.tid}`)
      : `cannot restore the state or the credentials of process ${pid} (thread ${r.tid})`;
    if (why !== null) problem ??= `${who}: ${why}`;
  });
  if (problem !== undefined) throw new RestoreError(problem);

  // Read back: securebits recorded as 0 by the sections themselves (creds.ts), the
  // others by a prctl in their threads; the rest from the status files.
  const readFail = (tid: number) => `cannot read back the credentials of thread ${tid}`;
  const others = image.threads.filter((t) => t.creds!.securebits !== 0);
  const read = runAll(others.map((t) => prctlRun(t.tid, gadget, PR.GET_SECUREBITS)), readFail);
  const bits = image.threads.map((t) => {
    const i = others.indexOf(t);
    return i < 0 ? 0 : Number(read[i].rax);
  });
  // A status whose lines are the record's own text holds the record (creds_text.ts): no parse;
  // any other is parsed like the first one parsed (lines whose text is the same give the same
  // values) and compared field by field.
  let like: ProcStatus | undefined;
  const lines = new CredsLines();
  image.threads.forEach((t, i) => {
    const want = t.creds!;
    const text = readProcText(pid, "status", t.tid);
    const keepCaps = (bits[i] & SECBIT_KEEP_CAPS) !== 0;
    if (
      bits[i] === want.securebits && keepCaps === want.keepCaps &&
      statusHoldsCreds(text, lines.of(want))
    ) return;
    const st = parseStatus(text, pid, procPath(pid, "status", t.tid), like);
    like ??= st;
    const have = readThreadCreds(pid, t.tid, bits[i], keepCaps, st);
    const diff = credsDifferences(want, have);
    if (diff.length) {
      throw new RestoreError(
        `restored credentials of process ${pid} thread ${t.tid} differ from the image: ${
          diff.join("; ")
        }`,
      );
    }
  });
  return areas;
}

/** The done mark a run left in its area (sched_run.ts RUN_DONE_SLOT): its tid, or all ones. */
function doneMarkOf(area: DataView): bigint {
  return area.getBigUint64(RUN_DONE_SLOT * 8, true);
}

/** Each run's own area (one read: {@link RUN_AREA_BYTES} each, one after the other). */
function readRunAreas(pid: number, own: readonly { tid: number; slots: bigint }[]): RunAreas {
  const out = new Map<number, DataView>();
  if (own.length === 0) return out;
  const buf = new Uint8Array(RUN_AREA_BYTES * own.length);
  processVmReadFully(pid, own[0].slots, buf);
  own.forEach((s, i) => {
    if (s.slots !== own[0].slots + BigInt(RUN_AREA_BYTES * i)) {
      throw new RestoreError(`internal error: the slots of thread ${s.tid} are not in order`);
    }
    out.set(s.tid, new DataView(buf.buffer, RUN_AREA_BYTES * i, RUN_AREA_BYTES));
  });
  return out;
}
