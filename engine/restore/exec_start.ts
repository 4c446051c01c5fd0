/**
 * What the engine does at the exec stop of an image: the bootstrap range
 * becomes anonymous memory holding `boot`'s blob, the kernel's exec set-up
 * is undone and vvar/vdso moved to their dumped addresses (exec_setup.ts),
 * and the stub is started at its restore entry. Used by the session
 * (session.ts) and by an early start (early_start.ts).
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { errnoName } from "../../ffi/errno.ts";
import { findSyscallInstruction, injectSyscall } from "../../ffi/inject.ts";
import { processVmWriteFully } from "../../ffi/process_vm.ts";
import { cont, getRegs, getXstate, setRegs } from "../../ffi/ptrace.ts";
import { decodeXsaveHeader, xsaveXcr0 } from "../../ffi/structs.ts";
import { decodeBase64 } from "../base64.ts";
import type { ProcessImage } from "../model.ts";
import { RestoreError } from "../errors.ts";
import { readMaps } from "../proc/maps.ts";
import type { Bootstrap } from "./stub.ts";
import { execSetupProgram, runExecSetup } from "./exec_setup.ts";

const PROT_RWX = 7;
const MAP_PRIVATE_FIXED_ANON = 0x02 | 0x10 | 0x20;

/**
 * At `pid`'s exec stop of `image`: maps the bootstrap anonymously, writes
 * `boot`'s blob, runs the exec set-up (the vdso parked through
 * `vdsoScratch`), then lets the stub run `boot`'s restore program.
 */
export function startAtExec(
  pid: number,
  image: ProcessImage,
  boot: Bootstrap,
  vdsoScratch: bigint,
): void {
  const base = boot.base;
  const size = BigInt(image.bootstrap.size);
  // 1. Anonymous bootstrap with the fresh program (the image file must not stay mapped).
  const site = findSyscallInstruction(pid);
  const r = injectSyscall(pid, site, SYS.mmap, base, size, PROT_RWX, MAP_PRIVATE_FIXED_ANON, -1, 0);
  if (r < 0n) throw new RestoreError(`mmap(bootstrap) failed: ${errnoName(Number(-r))}`);
  processVmWriteFully(pid, base, boot.blob);
  // 2. Unmap what the kernel set up for the exec, move vvar/vdso to the dumped
  // addresses: one program the stub runs (engine/restore/exec_setup.ts).
  const wanted = image.mappings.filter((m) => m.kind === "vdso");
  const maps = readMaps(pid).map((m) => ({ start: m.start, end: m.end, name: m.path }));
  runExecSetup(pid, boot, execSetupProgram(maps, wanted, base, size, vdsoScratch));
  // 3. Run the restore program.
  runFromEntry(pid, boot);
}

/** Lets the stopped stub of `pid` run `boot`'s restore program from its first op. */
export function runFromEntry(pid: number, boot: Bootstrap): void {
  const regs = getRegs(pid);
  regs.rip = boot.entryRestore;
  regs.orig_rax = 0xffffffffffffffffn;
  setRegs(pid, regs);
  cont(pid, 0);
}

/** Refuses images whose threads use XSAVE features that `tid` (this CPU and kernel) lacks. */
export function checkXsaveFeatures(tid: number, images: Iterable<ProcessImage>): void {
  const have = xsaveXcr0(getXstate(tid));
  for (const image of images) {
    for (const t of image.threads) {
      const used = decodeXsaveHeader(decodeBase64(t.xsave)).xstateBv;
      if ((used & ~have) !== 0n) {
        throw new RestoreError(
          `cannot restore: thread ${t.tid} uses XSAVE features 0x${
            used.toString(16)
          } but this CPU offers 0x${have.toString(16)}`,
        );
      }
    }
  }
}
