/**
 * Seccomp state of a stopped tracee through ptrace: its filters
 * (PTRACE_SECCOMP_GET_FILTER, classic BPF, 8 bytes an instruction), their
 * flags (PTRACE_SECCOMP_GET_METADATA), and PTRACE_O_SUSPEND_SECCOMP, which
 * keeps a traced thread's seccomp from acting while cryo injects syscalls.
 *
 * @module
 */

import { rawSyscall, SyscallError } from "./libc.ts";
import { SYS } from "./sysno.ts";
import { seccompMetadata } from "./structs.ts";

const PTRACE_SETOPTIONS = 0x4200;
const PTRACE_SECCOMP_GET_FILTER = 0x420c;
const PTRACE_SECCOMP_GET_METADATA = 0x420d;
/** PTRACE_O_SUSPEND_SECCOMP: seccomp does not act on the tracee while it is traced. */
export const PTRACE_O_SUSPEND_SECCOMP = 1 << 21;
/** Size of one classic BPF instruction (struct sock_filter). */
export const SOCK_FILTER_BYTES = 8;

function ptrace(what: string, req: number, tid: number, addr: bigint | number, data: unknown) {
  // deno-lint-ignore no-explicit-any
  const r = rawSyscall(SYS.ptrace, req, tid, addr, data as any);
  if (r < 0n) throw new SyscallError(`ptrace(${what})`, [tid, addr], Number(-r));
  return r;
}

/** Sets the PTRACE_O_* options of stopped tracee `tid` (replacing the previous ones). */
export function setTraceOptions(tid: number, options: number): void {
  ptrace("PTRACE_SETOPTIONS", PTRACE_SETOPTIONS, tid, 0, options);
}

/**
 * The `index`-th filter of `tid` (0 = the first installed, the oldest) as raw
 * sock_filter bytes, or undefined past the last one (ENOENT).
 */
export function seccompFilter(tid: number, index: number): Uint8Array | undefined {
  const n = rawSyscall(SYS.ptrace, PTRACE_SECCOMP_GET_FILTER, tid, index, 0);
  if (n === -2n) return undefined; // ENOENT: no such filter
  if (n < 0n) {
    throw new SyscallError("ptrace(PTRACE_SECCOMP_GET_FILTER)", [tid, index], Number(-n));
  }
  const buf = new Uint8Array(Number(n) * SOCK_FILTER_BYTES);
  ptrace("PTRACE_SECCOMP_GET_FILTER", PTRACE_SECCOMP_GET_FILTER, tid, index, buf);
  return buf;
}

/** The SECCOMP_FILTER_FLAG_* flags the `index`-th filter of `tid` was installed with. */
export function seccompFilterFlags(tid: number, index: number): bigint {
  const buf = seccompMetadata.encode({ filterOff: BigInt(index), flags: 0n });
  ptrace("PTRACE_SECCOMP_GET_METADATA", PTRACE_SECCOMP_GET_METADATA, tid, buf.length, buf);
  return seccompMetadata.decode(buf).flags;
}
