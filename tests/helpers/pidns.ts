/**
 * Cleanup of private pid namespaces made by tests (`cryo launch`, restores
 * into a new namespace).
 *
 * @module
 */

import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { waitPid } from "../../ffi/wait.ts";

/**
 * Kills a namespace by the host pid of its init (every process of it dies
 * with it) and reaps that init when it is this process's child.
 */
export function killNamespace(pid: number): void {
  rawSyscall(SYS.kill, pid, 9);
  try {
    waitPid(pid, 0);
  } catch { /* not our child, or already reaped */ }
}
