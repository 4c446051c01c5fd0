/**
 * clone_args for the restore programs' clone3 calls that ask the kernel
 * for a given pid or tid (`set_tid`): the children, zombies, group and
 * session placeholders, inherited-memory children, the launcher's root
 * and the unix listeners' credential helpers.
 *
 * @module
 */

import { type CloneArgs, cloneArgs } from "../../ffi/structs.ts";
import type { ProgramBuilder } from "./builder.ts";

/** clone_args asking for `tid` (set_tid), in the program's data; returns their address. */
export function cloneWithTid(p: ProgramBuilder, tid: number, fields: Partial<CloneArgs>): bigint {
  return p.data(cloneArgs.encode({
    flags: 0n,
    pidfd: 0n,
    childTid: 0n,
    parentTid: 0n,
    exitSignal: 0n,
    stack: 0n,
    stackSize: 0n,
    tls: 0n,
    cgroup: 0n,
    ...fields,
    setTid: p.u64s([tid]),
    setTidSize: 1n,
  }));
}
