/**
 * Machine code of cryo's own (x86-64) on a page of its own: mapped
 * read+write, filled, then made read+exec, and kept for the process's
 * lifetime. Used by the syscall tables' runner (ffi/syscall_table.ts), the
 * tables' pin check (ffi/pin_check.ts), the SIGCHLD wake handler
 * (ffi/sigchld_wake.ts) and the CRC fold with its data pages
 * (ffi/crc32_fold.ts).
 *
 * @module
 */

import { syscall } from "./libc.ts";
import { SYS } from "./sysno.ts";

const PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4;
const MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20;
const PAGE = 4096;

/**
 * The address of a new read+exec page holding `code` (at most a page),
 * followed by `dataPages` read+write pages, or null where it cannot be made
 * (not x86-64, the kernel refuses a step).
 */
export function codePage(code: Uint8Array, dataPages = 0): bigint | null {
  if (Deno.build.arch !== "x86_64" || code.length > PAGE) return null;
  const bytes = (1 + dataPages) * PAGE;
  let addr: bigint;
  try {
    addr = syscall(SYS.mmap, 0, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  } catch {
    return null;
  }
  try {
    const ptr = Deno.UnsafePointer.create(addr)!;
    new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(ptr, PAGE)).set(code);
    syscall(SYS.mprotect, addr, PAGE, PROT_READ | PROT_EXEC);
    return addr;
  } catch {
    try {
      syscall(SYS.munmap, addr, bytes);
    } catch { /* the page stays: nothing runs on it */ }
    return null;
  }
}
