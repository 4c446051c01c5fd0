/**
 * SIGTRAP state at restore. The restore program ends on an `int3` (the
 * engine's DONE stop), which the kernel reports as a forced SIGTRAP: with
 * SIGTRAP blocked, as it is during the program, that resets the SIGTRAP
 * action to SIG_DFL, and a pending SIGTRAP would be taken as the trap
 * itself. So the program leaves SIGTRAP alone (engine/restore/compile.ts)
 * and the engine sets its action and queues the pending SIGTRAPs of the
 * main thread and of the process afterwards, by injection into the main
 * thread (the other threads' pending signals are queued by injection
 * anyway). Injected syscalls block SIGTRAP and force no signal, so nothing
 * takes them again.
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
 * injection into its main thread at the `syscall` instruction `site`,
 * using 512 bytes of writable `scratch` memory in the process.
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
  const main = image.threads.find((t) => t.tid === pid);
  for (const s of main?.pending.filter((x) => x.signo === SIGTRAP) ?? []) {
    processVmWriteFully(pid, info, decodeBase64(s.raw));
    check(
      `rt_tgsigqueueinfo(${pid}, SIGTRAP)`,
      injectSyscall(pid, site, SYS.rt_tgsigqueueinfo, pid, pid, SIGTRAP, info),
    );
  }
  for (const s of image.sharedPending.filter((x) => x.signo === SIGTRAP)) {
    processVmWriteFully(pid, info, decodeBase64(s.raw));
    check(
      `rt_sigqueueinfo(${pid}, SIGTRAP)`,
      injectSyscall(pid, site, SYS.rt_sigqueueinfo, pid, SIGTRAP, info),
    );
  }
}
