/**
 * A holder of cryo's memory past its exit: a child process that shares
 * cryo's address space (`clone(CLONE_VM)`, its own fd table, every signal
 * blocked) and waits, doing nothing, until cryo's main thread exits, when
 * the kernel kills it (`PR_SET_PDEATHSIG` SIGKILL). cryo's exit then only
 * drops its reference to its memory; the teardown of its page tables and
 * pages (~3 ms for the ~65 MB a restore leaves mapped, most of the time
 * from `restore --detach`'s line to its parent's `wait4`) runs in the
 * holder's exit, after cryo's parent has seen cryo exit
 * (docs/PERFORMANCE.md, "Small restores, eleventh pass"). The CPU of that
 * teardown is the holder's: whoever reaps it (cryo's nearest subreaper, or
 * init) counts it.
 *
 * The holder touches no memory (no stack, no data): it closes every fd
 * it was given a copy of (`close_range`: no pipe of cryo's stays open past
 * cryo's exit; a kernel without it ends the holder at once), asks for
 * SIGKILL at its parent thread's death, checks that cryo has not already
 * exited (`getppid`), and loops in `pause()`. It exists only from the call
 * to cryo's exit: make it last, right before exiting.
 *
 * @module
 */

import { syscall } from "./libc.ts";
import { SYS } from "./sysno.ts";

/**
 * The code (171 bytes), `long hold(void *stack, long pid, sigset *all,
 * sigset *old)`: blocks every signal (the child inherits the mask, so no
 * handler of cryo's ever runs on it), `clone(CLONE_VM | SIGCHLD, stack)`,
 * puts the caller's mask back and returns clone's result. The child:
 * ```
 * 00: 53 41 54 41 55     push rbx; push r12; push r13
 * 05: 48 89 fb           mov rbx, rdi           (stack)
 * 08: 49 89 f4           mov r12, rsi           (cryo's pid)
 * 0b: 49 89 cd           mov r13, rcx           (&old)
 * 0e: 48 89 d6 48 89 ca  mov rsi, rdx; mov rdx, rcx
 * 14: bf 02 00 00 00     mov edi, 2             (SIG_SETMASK)
 * 19: 41 ba 08 00 00 00  mov r10d, 8
 * 1f: b8 0e 00 00 00     mov eax, 14            (rt_sigprocmask)
 * 24: 0f 05              syscall
 * 26: bf 11 01 00 00     mov edi, 0x111         (CLONE_VM | SIGCHLD)
 * 2b: 48 89 de           mov rsi, rbx
 * 2e: 31 d2 45 31 d2 45 31 c0  xor edx, edx; xor r10d, r10d; xor r8d, r8d
 * 36: b8 38 00 00 00 0f 05     clone
 * 3d: 48 85 c0 74 23     test rax, rax; je child
 * 42: 48 89 c3           mov rbx, rax
 * 45: ...                rt_sigprocmask(SIG_SETMASK, r13, NULL, 8)
 * 5c: 48 89 d8           mov rax, rbx
 * 5f: 41 5d 41 5c 5b c3  pop r13; pop r12; pop rbx; ret
 * 65: child: close_range(0, ~0, 0); jne out
 * 7a: prctl(PR_SET_PDEATHSIG, SIGKILL)
 * 8b: getppid(); cmp rax, r12; jne out
 * 97: wait: pause(); jmp wait
 * a0: out: exit(0)
 * ```
 */
const HOLDER_CODE = Uint8Array.fromHex(
  "53415441554889fb4989f44989cd4889d64889cabf0200000041ba08000000b80e0000000f05bf110100004889de" +
    "31d24531d24531c0b8380000000f054885c074234889c3bf020000004c89ee31d241ba08000000b80e00000" +
    "00f054889d8415d415c5bc3b8b401000031ffbeffffffff31d20f054885c07526b89d000000bf01000000be09" +
    "0000000f05b86e0000000f054c39e07509b8220000000f05ebf7b83c00000031ff0f05ebf5",
);

const PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4;
const MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20;
const PAGE = 4096;

const HOLD_DEF = { parameters: ["u64", "i64", "u64", "u64"], result: "i64" } as const;

/**
 * Starts the holder (see the module doc); returns its pid, or 0 where it
 * cannot be made (not x86-64, no executable page, clone refused): cryo's
 * exit then tears its memory down itself, as before. Call it right before
 * cryo exits, from its main thread: the holder dies with that thread.
 */
export function holdMemoryPastExit(): number {
  if (Deno.build.arch !== "x86_64") return 0;
  let code: bigint;
  try {
    code = syscall(
      SYS.mmap,
      0,
      2 * PAGE,
      PROT_READ | PROT_WRITE,
      MAP_PRIVATE | MAP_ANONYMOUS,
      -1,
      0,
    );
  } catch {
    return 0;
  }
  try {
    // Page 0: the code (then read+exec); page 1: the masks, and the holder's stack (unused).
    const base = Deno.UnsafePointer.create(code)!;
    new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(base, PAGE)).set(HOLDER_CODE);
    const data = code + BigInt(PAGE);
    const masks = new BigUint64Array(
      Deno.UnsafePointerView.getArrayBuffer(Deno.UnsafePointer.create(data)!, 16),
    );
    masks[0] = 0xffffffffffffffffn; // every signal (SIGKILL and SIGSTOP stay deliverable)
    syscall(SYS.mprotect, code, PAGE, PROT_READ | PROT_EXEC);
    const hold = new Deno.UnsafeFnPointer(base as Deno.PointerObject<typeof HOLD_DEF>, HOLD_DEF);
    const pid = Number(hold.call(data + BigInt(PAGE), BigInt(Deno.pid), data, data + 8n));
    return pid > 0 ? pid : 0;
  } catch {
    return 0;
  }
}
