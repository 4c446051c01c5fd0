/**
 * Many pieces of a process's memory in one process_vm_readv or
 * process_vm_writev call: one local and one remote iovec per piece (up to
 * IOV_MAX each), instead of one call per piece. Used where one small
 * piece per thread is saved, written or read back (engine/dump/injected.ts).
 *
 * @module
 */

import { addressOf, rawSyscall } from "./libc.ts";
import { SYS } from "./sysno.ts";
import { IOV_MAX, processVmReadFully, processVmWriteFully } from "./process_vm.ts";

/** One piece: `buf.length` bytes at `addr` of the process. */
export interface VmPiece {
  addr: bigint;
  buf: Uint8Array;
}

function moveAll(nr: number, pid: number, pieces: readonly VmPiece[]): number {
  const n = pieces.length;
  const local = new BigUint64Array(2 * n);
  const remote = new BigUint64Array(2 * n);
  let total = 0;
  pieces.forEach((p, i) => {
    local[2 * i] = addressOf(p.buf as Uint8Array<ArrayBuffer>);
    local[2 * i + 1] = BigInt(p.buf.length);
    remote[2 * i] = p.addr;
    remote[2 * i + 1] = BigInt(p.buf.length);
    total += p.buf.length;
  });
  const r = rawSyscall(nr, pid, local, n, remote, n, 0);
  return r === BigInt(total) ? total : -1;
}

/**
 * Reads every piece of process `pid` (in as few calls as IOV_MAX allows);
 * a short or failed call is redone piece by piece, which throws on error.
 */
export function processVmReadPieces(pid: number, pieces: readonly VmPiece[]): void {
  for (let i = 0; i < pieces.length; i += IOV_MAX) {
    const part = pieces.slice(i, i + IOV_MAX);
    if (moveAll(SYS.process_vm_readv, pid, part) < 0) {
      for (const p of part) processVmReadFully(pid, p.addr, p.buf);
    }
  }
}

/**
 * Writes every piece into process `pid`, in order (a later piece over an
 * earlier one wins, as with one write after the other); a short or failed
 * call is redone piece by piece, which throws on error.
 */
export function processVmWritePieces(pid: number, pieces: readonly VmPiece[]): void {
  for (let i = 0; i < pieces.length; i += IOV_MAX) {
    const part = pieces.slice(i, i + IOV_MAX);
    if (moveAll(SYS.process_vm_writev, pid, part) < 0) {
      for (const p of part) processVmWriteFully(pid, p.addr, p.buf);
    }
  }
}
