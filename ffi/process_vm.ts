/**
 * process_vm_readv / process_vm_writev: copy memory between cryo and a
 * target process without stopping it or going through ptrace.
 *
 * @module
 */

import { addressOf, rawSyscall, SyscallError } from "./libc.ts";
import { SYS } from "./sysno.ts";

/**
 * The local and the remote iovec of a transfer, reused by every call (the
 * calls are synchronous; a worker has its own copy of this module): a dump of
 * 10,000 one-page runs made 10,000 small buffers and their views otherwise.
 */
const IOV = new BigUint64Array(4);
const LOCAL = IOV.subarray(0, 2);
const REMOTE = IOV.subarray(2, 4);

function transfer(nr: number, name: string, pid: number, addr: bigint, buf: Uint8Array): number {
  IOV[0] = addressOf(buf as Uint8Array<ArrayBuffer>);
  IOV[1] = BigInt(buf.length);
  IOV[2] = addr;
  IOV[3] = BigInt(buf.length);
  const r = rawSyscall(nr, pid, LOCAL, 1, REMOTE, 1, 0);
  if (r < 0n) throw new SyscallError(name, [pid, addr, buf.length], Number(-r));
  return Number(r);
}

/** Reads `buf.length` bytes at `addr` of process `pid`; returns bytes read (may be short). */
export function processVmRead(pid: number, addr: bigint, buf: Uint8Array): number {
  return transfer(SYS.process_vm_readv, "process_vm_readv", pid, addr, buf);
}

/** Writes `buf` at `addr` of process `pid`; returns bytes written (may be short). */
export function processVmWrite(pid: number, addr: bigint, buf: Uint8Array): number {
  return transfer(SYS.process_vm_writev, "process_vm_writev", pid, addr, buf);
}

/** Reads exactly `buf.length` bytes or throws. */
export function processVmReadFully(pid: number, addr: bigint, buf: Uint8Array): void {
  let done = 0;
  while (done < buf.length) {
    const n = processVmRead(pid, addr + BigInt(done), buf.subarray(done));
    if (n <= 0) throw new SyscallError("process_vm_readv", [pid, addr, buf.length], 14);
    done += n;
  }
}

/** Writes all of `buf` or throws. */
export function processVmWriteFully(pid: number, addr: bigint, buf: Uint8Array): void {
  let done = 0;
  while (done < buf.length) {
    const n = processVmWrite(pid, addr + BigInt(done), buf.subarray(done));
    if (n <= 0) throw new SyscallError("process_vm_writev", [pid, addr, buf.length], 14);
    done += n;
  }
}

/** Most iovecs one process_vm_readv call takes (IOV_MAX). */
export const IOV_MAX = 1024;

/**
 * One process_vm_readv of `count` remote pieces (`remote[2i]` address,
 * `remote[2i+1]` length) of process `pid` into `local`, one after the
 * other: bytes read (the kernel stops at the first piece it cannot read),
 * or throws.
 */
export function processVmReadMany(
  pid: number,
  local: Uint8Array,
  remote: BigUint64Array,
  count: number,
): number {
  const iov = new BigUint64Array([
    addressOf(local as Uint8Array<ArrayBuffer>),
    BigInt(local.length),
  ]);
  const r = rawSyscall(SYS.process_vm_readv, pid, iov, 1, remote, count, 0);
  if (r < 0n) throw new SyscallError("process_vm_readv", [pid, count, local.length], Number(-r));
  return Number(r);
}
