/**
 * The address-space clean-up at an image's exec stop, as one small program
 * the stub runs: unmap whatever the kernel set up for the exec (its stack,
 * ...), then move vvar/vdso to the dumped addresses through a scratch area
 * of the bootstrap. Before, each of these syscalls was injected on its own
 * (8 to 10 ptrace round trips per process); now the engine writes the
 * program into the bootstrap's scratch area and resumes the stub once.
 *
 * The order (unmap first, then move) leaves the same address space as
 * moving first and unmapping what remains: nothing but the bootstrap,
 * [vsyscall] and the moved vvar/vdso.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { cont, getRegs, setRegs, setSigmask, waitStop } from "../../ffi/ptrace.ts";
import { PTRACE_EVENT } from "../../ffi/wait.ts";
import { processVmWriteFully } from "../../ffi/process_vm.ts";
import type { Mapping } from "../model.ts";
import { RestoreError } from "../errors.ts";
import { type BuiltProgram, describeFailedOp, ProgramBuilder } from "../program/builder.ts";
import type { Bootstrap } from "./stub.ts";
import { VDSO_SCRATCH_BYTES } from "./compile.ts";

const MREMAP_MAYMOVE_FIXED = 1 | 2;
const SIGTRAP = 5;
const SIGSTOP = 19;
const ALL_SIGNALS = 0xffffffffffffffffn;
const NO_SYSCALL = 0xffffffffffffffffn;

/** A mapping of the freshly exec'd image (from its maps). */
export interface FreshMapping {
  start: bigint;
  end: bigint;
  name: string;
}

/**
 * The clean-up program for a process whose maps are `fresh`, whose
 * bootstrap is [`base`, `base + size`) with its vdso scratch area at
 * `scratch`, and whose image recorded the vvar/vdso mappings `wanted`.
 * Throws a RestoreError when this kernel's vvar/vdso differ from the dump.
 */
export function execSetupProgram(
  fresh: readonly FreshMapping[],
  wanted: readonly Mapping[],
  base: bigint,
  size: bigint,
  scratch: bigint,
): BuiltProgram {
  // The program sits in the second half of the scratch area (the first holds the parked vdso).
  const p = new ProgramBuilder(scratch + BigInt(VDSO_SCRATCH_BYTES / 2));
  const moves: { from: FreshMapping; len: bigint; to: bigint; name: string }[] = [];
  for (const w of wanted) {
    const cur = fresh.find((m) => m.name === w.name);
    const len = BigInt(w.end) - BigInt(w.start);
    if (!cur || cur.end - cur.start !== len) {
      throw new RestoreError(`cannot restore: ${w.name} of this kernel differs from the dump`);
    }
    moves.push({ from: cur, len, to: BigInt(w.start), name: w.name });
  }
  for (const m of fresh) {
    const keep = m.name === "[vsyscall]" || (m.start >= base && m.end <= base + size) ||
      moves.some((v) => v.from === m);
    if (keep) continue;
    p.op(SYS.munmap, [m.start, m.end - m.start], { comment: `munmap(${m.name || "anon"})` });
  }
  // Through the scratch area: a destination may overlap where another one is now.
  let at = scratch;
  for (const v of moves) {
    p.op(SYS.mremap, [v.from.start, v.len, v.len, MREMAP_MAYMOVE_FIXED, at], {
      comment: `mremap(${v.name})`,
    });
    at += v.len;
  }
  const parkedEnd = at;
  at = scratch;
  for (const v of moves) {
    p.op(SYS.mremap, [at, v.len, v.len, MREMAP_MAYMOVE_FIXED, v.to], {
      comment: `mremap(${v.name})`,
    });
    at += v.len;
  }
  p.end("exec set-up done");
  const built = p.build();
  if (parkedEnd > p.base || built.end > scratch + BigInt(VDSO_SCRATCH_BYTES)) {
    throw new RestoreError("cannot restore: vvar/vdso do not fit the bootstrap's scratch area");
  }
  return built;
}

/**
 * Runs `program` in process `pid`, stopped at its exec stop with the
 * bootstrap (`boot`) mapped: writes it, resumes the stub at its first op
 * (all signals blocked, as the restore program does first anyway) and
 * waits for its END. Throws a RestoreError naming the failing op.
 */
export function runExecSetup(pid: number, boot: Bootstrap, program: BuiltProgram): void {
  processVmWriteFully(pid, program.base, program.bytes);
  const regs = getRegs(pid);
  regs.rip = boot.resumeRip;
  regs.rbx = program.opsAddress;
  regs.orig_rax = NO_SYSCALL;
  setRegs(pid, regs);
  setSigmask(pid, ALL_SIGNALS);
  cont(pid, 0);
  for (;;) {
    const st = waitStop(pid);
    if (st.event === PTRACE_EVENT.STOP || (st.event === 0 && st.signal === SIGSTOP)) {
      cont(pid, 0); // a stop request: not for a process still being restored
      continue;
    }
    const after = getRegs(pid);
    if (st.event === 0 && st.signal === SIGTRAP && after.rip === boot.doneRip) return;
    if (st.event === 0 && st.signal === SIGTRAP && after.rip === boot.failRip) {
      const why = describeFailedOp(program, after.rbx, after.rax);
      throw new RestoreError(`restore of process ${pid} failed at its exec: ${why}`);
    }
    throw new RestoreError(
      `restore of process ${pid} failed at its exec: stop (signal ${st.signal}, event ${st.event}) at 0x${
        after.rip.toString(16)
      }`,
    );
  }
}
