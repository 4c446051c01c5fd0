/**
 * The engine side of restoring credentials: once everything else of a
 * process is restored (its program ran, the engine's per-thread injections
 * are done), each thread runs its own credentials section of the restore
 * program (see creds.ts), then the main thread the process-wide one
 * (dumpable). Every thread's credentials are then read back and compared
 * with the record: a difference, or a step the kernel refused, fails the
 * restore with one line; it never goes on with other credentials.
 *
 * What the engine still does afterwards needs no privilege in the tracee:
 * munmap of the bootstrap, and ptrace requests (registers, XSAVE, signal
 * mask, detach) on tasks it is already attached to.
 *
 * @module
 */

import { cont, getRegs, setRegs, waitStop } from "../../ffi/ptrace.ts";
import { injectSyscall } from "../../ffi/inject.ts";
import { SYS } from "../../ffi/sysno.ts";
import { errnoName } from "../../ffi/errno.ts";
import type { ProcessImage } from "../model.ts";
import { RestoreError } from "../errors.ts";
import { describeFailure, OP_SIZE } from "../program/builder.ts";
import type { Bootstrap } from "../restore/stub.ts";
import { type CredsSections, PR, readThreadCreds } from "./creds.ts";
import { credsDifferences } from "./creds_check.ts";

const SIGTRAP = 5;

/** What {@link restoreCreds} needs of a compiled process. */
export interface CompiledCreds {
  bootstrap: Bootstrap;
  /** Address of a `syscall; int3` gadget (for the read-back prctl calls). */
  syscallGadget: bigint;
  creds: CredsSections;
}

/**
 * Restores and then checks the credentials of every thread of `image`,
 * whose threads are all stopped (the main one at the program's END, the
 * others parked), with the bootstrap still mapped.
 */
export function restoreCreds(image: ProcessImage, compiled: CompiledCreds): void {
  const pid = image.pid;
  for (const { tid, op } of compiled.creds.threads) {
    runSection(pid, tid, compiled.bootstrap, op, `thread ${tid}`);
  }
  runSection(pid, pid, compiled.bootstrap, compiled.creds.process, "dumpable flag");
  verifyCreds(image, compiled.syscallGadget);
}

/** Runs the program from op `op` in stopped thread `tid` until it stops at DONE. */
function runSection(pid: number, tid: number, boot: Bootstrap, op: number, what: string): void {
  const program = boot.restore;
  const regs = getRegs(tid);
  regs.rip = boot.resumeRip;
  regs.rbx = program.opsAddress + BigInt(op * OP_SIZE);
  regs.orig_rax = 0xffffffffffffffffn; // no syscall restart on the way out of this stop
  setRegs(tid, regs);
  cont(tid, 0);
  const st = waitStop(tid);
  const after = getRegs(tid);
  if (st.signal === SIGTRAP && after.rip === boot.doneRip) return;
  const fail = `cannot restore the credentials of process ${pid} (${what})`;
  if (st.signal === SIGTRAP && after.rip === boot.failRip) {
    const why = describeFailure(program.ops, program.opsAddress, after.rbx, after.rax);
    const i = Number((after.rbx - program.opsAddress) / BigInt(OP_SIZE));
    const comment = program.ops[i]?.comment;
    throw new RestoreError(`${fail}: ${why}${comment ? ` [${comment}]` : ""}`);
  }
  throw new RestoreError(
    `${fail}: unexpected stop (signal ${st.signal}) at 0x${after.rip.toString(16)}`,
  );
}

function prctlIn(tid: number, gadget: bigint, option: number, name: string): number {
  const r = injectSyscall(tid, gadget, SYS.prctl, option, 0, 0, 0, 0);
  if (r < 0n) {
    throw new RestoreError(`thread ${tid}: prctl(${name}) failed: ${errnoName(Number(-r))}`);
  }
  return Number(r);
}

/** Reads every thread's credentials back and throws if any differs from the record. */
function verifyCreds(image: ProcessImage, gadget: bigint): void {
  const pid = image.pid;
  for (const t of image.threads) {
    const securebits = prctlIn(t.tid, gadget, PR.GET_SECUREBITS, "PR_GET_SECUREBITS");
    const keepCaps = prctlIn(t.tid, gadget, PR.GET_KEEPCAPS, "PR_GET_KEEPCAPS") !== 0;
    const have = readThreadCreds(pid, t.tid, securebits, keepCaps);
    const diff = credsDifferences(t.creds!, have);
    if (diff.length) {
      throw new RestoreError(
        `restored credentials of process ${pid} thread ${t.tid} differ from the image: ${
          diff.join("; ")
        }`,
      );
    }
  }
  const dumpable = prctlIn(pid, gadget, PR.GET_DUMPABLE, "PR_GET_DUMPABLE");
  if (dumpable !== image.dumpable) {
    throw new RestoreError(
      `restored process ${pid} is ${
        dumpable ? "" : "not "
      }dumpable (${dumpable}), recorded ${image.dumpable}`,
    );
  }
}
