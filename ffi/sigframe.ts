/**
 * The x86-64 `struct rt_sigframe` that `rt_sigreturn` reads: a return
 * address (unused by the kernel), then a `ucontext` (flags, link, the
 * sigaltstack, the `sigcontext` with every general register and a pointer
 * to the XSAVE area, the signal mask), and the XSAVE area itself, 64-byte
 * aligned, with the software bytes (`_fpx_sw_bytes`, FP_XSTATE_MAGIC1) the
 * kernel checks and FP_XSTATE_MAGIC2 right after it. A thread that runs
 * `rt_sigreturn` with its stack pointer just past the return address gets
 * every register, its mask, sigaltstack and FPU/vector state from it.
 *
 * Only the layout lives here (ffi/safe_inject.ts uses it).
 *
 * @module
 */

import type { UserRegs } from "./regs.ts";

/** Offset of the ucontext (after the return address). */
const UC = 8;
/** Offset of uc_stack (stack_t: sp, flags, size) in the frame. */
export const FRAME_UC_STACK = UC + 16;
/** Offset of uc_mcontext (struct sigcontext) in the frame. */
const MCONTEXT = UC + 40;
/** Offset of uc_sigmask in the frame. */
const SIGMASK = MCONTEXT + 256;
/** Offset of the XSAVE area (64-byte aligned when the frame is). */
const FPSTATE = 320;
/** uc_flags: UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS. */
const UC_FLAGS = 1n | 2n | 4n;
/** `_fpx_sw_bytes.magic1` ("FPXS"). */
const FP_XSTATE_MAGIC1 = 0x46505853;
/** The word after the XSAVE area ("FPXE"). */
const FP_XSTATE_MAGIC2 = 0x46505845;
/** Offset of sw_reserved in the legacy FXSAVE area. */
const SW_RESERVED = 464;

/** Bytes a frame takes for an XSAVE area of `xstateSize` bytes. */
export function sigframeSize(xstateSize: number): number {
  return FPSTATE + xstateSize + 4;
}

/** What goes into a frame. */
export interface SigframeContent {
  /** Registers the thread gets back (orig_rax is ignored: rt_sigreturn sets -1). */
  regs: UserRegs;
  /** The signal mask it gets back. */
  mask: bigint;
  /** Its sigaltstack (sp, flags, size); rt_sigreturn sets it again. */
  altstack?: { sp: bigint; flags: number; size: bigint };
  /** Its XSAVE area as PTRACE_GETREGSET NT_X86_XSTATE gives it (XCR0 at byte 464). */
  xstate: Uint8Array;
  /** Address of an XSAVE area already in the target to point at instead (then `xstate` is not written). */
  sharedFpstate?: bigint;
  /** The return address word (the address of an rt_sigreturn sequence). */
  restorer: bigint;
}

/**
 * Encodes a frame for address `at` (64-byte aligned): write the returned
 * bytes there; a thread whose rsp is `at` and that runs `ret` into the
 * restorer (or whose rsp is `at + 8` when it runs rt_sigreturn) is restored from it.
 * With `sharedFpstate` only the part before the XSAVE area is returned.
 */
export function encodeSigframe(at: bigint, c: SigframeContent): Uint8Array {
  if ((at & 63n) !== 0n) {
    throw new Error(`signal frame at 0x${at.toString(16)} is not 64-byte aligned`);
  }
  const xsize = c.xstate.length;
  const size = c.sharedFpstate === undefined ? sigframeSize(xsize) : FPSTATE;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  const u64 = (off: number, v: bigint) => dv.setBigUint64(off, BigInt.asUintN(64, v), true);
  u64(0, c.restorer);
  u64(UC, UC_FLAGS);
  if (c.altstack) {
    u64(FRAME_UC_STACK, c.altstack.sp);
    dv.setInt32(FRAME_UC_STACK + 8, c.altstack.flags, true);
    u64(FRAME_UC_STACK + 16, c.altstack.size);
  }
  const r = c.regs;
  const order = [
    r.r8,
    r.r9,
    r.r10,
    r.r11,
    r.r12,
    r.r13,
    r.r14,
    r.r15,
    r.rdi,
    r.rsi,
    r.rbp,
    r.rbx,
    r.rdx,
    r.rax,
    r.rcx,
    r.rsp,
    r.rip,
    r.eflags,
  ];
  order.forEach((v, i) => u64(MCONTEXT + i * 8, v));
  dv.setUint16(MCONTEXT + 144, Number(r.cs), true);
  dv.setUint16(MCONTEXT + 146, Number(r.gs), true);
  dv.setUint16(MCONTEXT + 148, Number(r.fs), true);
  dv.setUint16(MCONTEXT + 150, Number(r.ss), true);
  const fpstate = c.sharedFpstate ?? at + BigInt(FPSTATE);
  u64(MCONTEXT + 184, fpstate);
  u64(SIGMASK, c.mask);
  if (c.sharedFpstate !== undefined) return out;
  out.set(c.xstate, FPSTATE);
  const x = new DataView(out.buffer, FPSTATE);
  const xcr0 = x.getBigUint64(SW_RESERVED, true);
  x.setUint32(SW_RESERVED, FP_XSTATE_MAGIC1, true);
  x.setUint32(SW_RESERVED + 4, xsize + 4, true); // extended_size
  x.setBigUint64(SW_RESERVED + 8, xcr0, true); // xfeatures
  x.setUint32(SW_RESERVED + 16, xsize, true); // xstate_size
  for (let o = SW_RESERVED + 20; o < 512; o++) out[FPSTATE + o] = 0;
  x.setUint32(xsize, FP_XSTATE_MAGIC2, true);
  return out;
}

/** Address of the XSAVE area of a frame at `at`. */
export function sigframeFpstate(at: bigint): bigint {
  return at + BigInt(FPSTATE);
}
