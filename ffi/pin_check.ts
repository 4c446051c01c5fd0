/**
 * A syscall table's test of pagemap entries (ffi/syscall_table.ts
 * {@link SyscallTable.callOrSkipNext}): whether every page of a piece is
 * present and mapped by the process alone (pagemap bits 63 and 56), so that
 * the table itself chooses, per piece, between `process_vm_readv` (one copy,
 * but it pins: a page shared copy-on-write with a fork would be unshared in
 * the target) and a `pread` of /proc/<pid>/mem (never pins), from the
 * entries a `pread` of /proc/<pid>/pagemap just put in a buffer. No look-up
 * on cryo's thread, no JavaScript per piece.
 *
 * `check(fd, entries, n, want)` (SysV arguments): -9 when `fd` is negative
 * (a table's guard patched to -1, engine/dump/native_lane.ts), 1 when
 * "every one of the `n` entries has both bits" is `want` (1 or 0), else -2.
 * Any negative result skips the table's next entry. Entries never read (a
 * zeroed buffer, a short read) have neither bit: not exclusive.
 *
 * @module
 */

import { codePage } from "./code_page.ts";

/**
 * The code, 72 bytes:
 * ```
 * 0:  48 85 ff               test rdi,rdi
 * 3:  78 3b                  js   64            (fd patched: -9)
 * 5:  49 b8 00..00 81        movabs r8,0x8100000000000000
 * 15: 48 85 d2               test rdx,rdx       (loop)
 * 18: 74 14                  je   40            (all had both bits)
 * 20: 4c 8b 0e               mov  r9,[rsi]
 * 23: 4d 21 c1               and  r9,r8
 * 26: 4d 39 c1               cmp  r9,r8
 * 29: 75 16                  jne  53            (one had not)
 * 31: 48 83 c6 08            add  rsi,8
 * 35: 48 ff ca               dec  rdx
 * 38: eb e7                  jmp  15
 * 40: 48 85 c9               test rcx,rcx       (all: want 1 -> 1)
 * 43: 75 0d                  jne  58
 * 45: 48 c7 c0 fe ff ff ff   mov  rax,-2
 * 52: c3                     ret
 * 53: 48 85 c9               test rcx,rcx       (not all: want 0 -> 1)
 * 56: 75 f3                  jne  45
 * 58: b8 01 00 00 00         mov  eax,1
 * 63: c3                     ret
 * 64: 48 c7 c0 f7 ff ff ff   mov  rax,-9
 * 71: c3                     ret
 * ```
 */
// deno-fmt-ignore
export const PIN_CHECK_CODE: Uint8Array = new Uint8Array([
  0x48, 0x85, 0xff,
  0x78, 0x3b,
  0x49, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x81,
  0x48, 0x85, 0xd2,
  0x74, 0x14,
  0x4c, 0x8b, 0x0e,
  0x4d, 0x21, 0xc1,
  0x4d, 0x39, 0xc1,
  0x75, 0x16,
  0x48, 0x83, 0xc6, 0x08,
  0x48, 0xff, 0xca,
  0xeb, 0xe7,
  0x48, 0x85, 0xc9,
  0x75, 0x0d,
  0x48, 0xc7, 0xc0, 0xfe, 0xff, 0xff, 0xff,
  0xc3,
  0x48, 0x85, 0xc9,
  0x75, 0xf3,
  0xb8, 0x01, 0x00, 0x00, 0x00,
  0xc3,
  0x48, 0xc7, 0xc0, 0xf7, 0xff, 0xff, 0xff,
  0xc3,
]);

let fn: bigint | null | undefined;

/**
 * The address of the check (one page of code, read+exec, kept for the
 * process's lifetime), or null where it cannot run (not x86-64, no
 * executable page).
 */
export function pinCheckFn(): bigint | null {
  if (fn === undefined) fn = codePage(PIN_CHECK_CODE);
  return fn;
}
