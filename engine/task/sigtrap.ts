/**
 * SIGTRAP state at restore. The restore program and its per-thread
 * sections (credentials) end on an `int3` (the engine's DONE stops), which
 * the kernel reports as a forced SIGTRAP: with SIGTRAP blocked, as it is
 * during the program, that resets the SIGTRAP action to SIG_DFL, and a
 * pending SIGTRAP would be taken as the trap itself. So the program leaves
 * SIGTRAP alone (engine/restore/compile.ts) and the engine, after the last
 * section, sets its action and queues every pending SIGTRAP (of each
 * thread, by injection into that thread; of the process, by injection into
 * the main thread: only a task itself may queue a SIGTRAP with a sender's
 * si_code). Injections that queue SIGTRAP or set its action run without a
 * single step (ffi/inject.ts), so nothing takes them again.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { injectSyscall } from "../../ffi/inject.ts";
import { processVmWriteFully } from "../../ffi/process_vm.ts";
import { kernelSigaction } from "../../ffi/structs.ts";
import { errnoName } from "../../ffi/errno.ts";
import type { ProcessImage } from "../model.ts";
import { decodeBase64 } from "../base64.ts";
import { RestoreError } from "../errors.ts";

/** The signal the restore program does not touch. */
export const SIGTRAP = 5;

function check(what: string, r: bigint): void {
  if (r < 0n) throw new RestoreError(`${what} failed: ${errnoName(Number(-r))}`);
}

/**
 * Sets the SIGTRAP action of `image` and queues its pending SIGTRAPs, by
 * injection at the `syscall` instruction `site`, using 512 bytes of
 * writable `scratch` memory in the process.
 */
export function restoreSigtrap(image: ProcessImage, site: bigint, scratch: bigint): void {
  const pid = image.pid;
  const a = image.sigactions[SIGTRAP - 1];
  if (a && (BigInt(a.handler) !== 0n || BigInt(a.flags) !== 0n || BigInt(a.mask) !== 0n)) {
    processVmWriteFully(
      pid,
      scratch,
      kernelSigaction.encode({
        handler: BigInt(a.handler),
        flags: BigInt(a.flags),
        restorer: BigInt(a.restorer),
        mask: BigInt(a.mask),
      }),
    );
    check(
      `rt_sigaction(SIGTRAP) in ${pid}`,
      injectSyscall(pid, site, SYS.rt_sigaction, SIGTRAP, scratch, 0, 8),
    );
  }
  const info = scratch + 256n;
  for (const t of image.threads) {
    for (const s of t.pending.filter((x) => x.signo === SIGTRAP)) {
      processVmWriteFully(pid, info, decodeBase64(s.raw));
      check(
        `rt_tgsigqueueinfo(${t.tid}, SIGTRAP)`,
        injectSyscall(t.tid, site, SYS.rt_tgsigqueueinfo, pid, t.tid, SIGTRAP, info),
      );
    }
  }
  for (const s of image.sharedPending.filter((x) => x.signo === SIGTRAP)) {
    processVmWriteFully(pid, info, decodeBase64(s.raw));
    check(
      `rt_sigqueueinfo(${pid}, SIGTRAP)`,
      injectSyscall(pid, site, SYS.rt_sigqueueinfo, pid, SIGTRAP, info),
    );
  }
}
