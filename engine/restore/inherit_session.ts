/**
 * The engine's part in restoring a child by inheritance (see
 * engine/memory/inherit_restore.ts): at the birth stop of a child the
 * parent's program forked, the child still runs the parent's stub in the
 * parent's bootstrap. The engine maps the child's own bootstrap (clear of
 * everything the parent has, chosen at dump time), writes the child's
 * compiled blob into it and points the child at its restore entry.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { injectSyscall } from "../../ffi/inject.ts";
import { processVmWriteFully } from "../../ffi/process_vm.ts";
import { getRegs, setRegs } from "../../ffi/ptrace.ts";
import { errnoName } from "../../ffi/errno.ts";
import { RestoreError } from "../errors.ts";
import type { ProcessImage } from "../model.ts";
import type { CompiledProcess } from "./compile.ts";

const PROT_RWX = 7;
/** MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE: never over an inherited mapping. */
const MAP_BOOTSTRAP = 0x02 | 0x20 | 0x100000;

/**
 * Prepares the inheriting child `pid`, stopped at birth, to run its own
 * restore program. `parent` is the compiled parent, whose syscall gadget
 * the child has inherited.
 */
export function startInheritedChild(
  pid: number,
  image: ProcessImage,
  compiled: CompiledProcess,
  parent: CompiledProcess,
): void {
  const boot = compiled.bootstrap;
  const r = injectSyscall(
    pid,
    parent.syscallGadget,
    SYS.mmap,
    boot.base,
    BigInt(image.bootstrap.size),
    PROT_RWX,
    MAP_BOOTSTRAP,
    -1,
    0,
  );
  if (r < 0n) {
    throw new RestoreError(
      `process ${pid}: mmap of its bootstrap in the inherited memory failed: ${
        errnoName(Number(-r))
      }`,
    );
  }
  processVmWriteFully(pid, boot.base, boot.blob);
  const regs = getRegs(pid);
  regs.rip = boot.entryRestore;
  regs.orig_rax = 0xffffffffffffffffn;
  setRegs(pid, regs);
}
