/**
 * The bytes of a fork snapshot's clone (engine/dump/fork_snapshot.ts): the
 * flags of the `clone` a stopped thread is made to run, and the signal frame
 * the child returns into if it is ever let go.
 *
 * The clone runs at the target's `syscall; ret` (ffi/safe_inject.ts) with
 * the child's stack pointer at a frame of its own: should the child ever
 * run (its tracer died before it could be told to die with it), its `ret`
 * goes to the target's `rt_sigreturn` restorer, and that frame's registers
 * run `exit(0)` at the same `syscall` with every signal blocked. The child
 * never runs a line of the target's code.
 *
 * @module
 */

import { encodeSigframe } from "./sigframe.ts";
import type { UserRegs } from "./regs.ts";
import { SYS } from "./sysno.ts";

/** CLONE_FILES: the child shares the fd table (holds no copy of a pipe's write end or a socket). */
const CLONE_FILES = 0x400;
/** CLONE_PTRACE: a traced caller's child is traced by the same tracer, stopped before it runs. */
const CLONE_PTRACE = 0x2000;

/**
 * The flags of the snapshot's `clone`: exit signal 0 (its end sends its
 * parent nothing, and only a `__WALL`/`__WCLONE` wait sees it), the fd table
 * shared, traced from birth. Not CLONE_FS: a shared fs_struct would make a
 * set-user-ID exec of the target unsafe (no privilege gained) while the
 * child lives; a copy holds only references to the cwd and root the target
 * holds anyway.
 */
export const SNAPSHOT_CLONE_FLAGS = CLONE_FILES | CLONE_PTRACE;

/** Bytes of the frame of {@link snapshotExitFrame} (no XSAVE area: its pointer is NULL). */
export const SNAPSHOT_FRAME_BYTES = 320;

/**
 * The frame for address `at` (64-byte aligned) that a snapshot child whose
 * stack pointer is `at` returns into through `restorer`: `regs` (the
 * thread's own: segments and flags) with rip at `syscall` (the `syscall;
 * ret` site), rax = exit, rdi = 0, every signal blocked, no FPU state (the
 * kernel clears it for a NULL pointer).
 */
export function snapshotExitFrame(
  at: bigint,
  regs: UserRegs,
  site: bigint,
  restorer: bigint,
): Uint8Array {
  return encodeSigframe(at, {
    regs: {
      ...regs,
      rip: site,
      rax: BigInt(SYS.exit),
      rdi: 0n,
      rsp: at,
      eflags: regs.eflags & ~0x100n,
    },
    mask: 0xffffffffffffffffn,
    xstate: new Uint8Array(0),
    sharedFpstate: 0n,
    restorer,
  });
}
