/**
 * The bulk of a CRC-32 (zlib's polynomial) folded with PCLMULQDQ, by 68
 * instructions of x86-64 code that cryo writes into a page of its own and
 * calls through FFI: ~10x the speed of a table in JavaScript, without
 * `node:zlib` (which loads Deno's Node compatibility layer, ~50 ms of
 * every command's start-up).
 *
 * The code folds 64 bytes per step in four lanes (carry-less multiplies by
 * x^(512±32) mod P), then the lanes into one and any 16-byte blocks left
 * (x^(128±32) mod P), the constants of Intel's "Fast CRC Computation for
 * Generic Polynomials Using PCLMULQDQ". On a CPU with VPCLMULQDQ and AVX2
 * a buffer of 256 bytes or more is first folded 128 bytes per step in four
 * 32-byte lanes (x^(1024±32)), the lanes then into one (x^(256±32)) and its
 * two halves into one 16-byte block, which the 16-byte steps above go on
 * from: ~2.5x the speed (docs/PERFORMANCE.md, "Small restores, seventh
 * pass"): another remainder of the same bytes, congruent to the 16-byte
 * code's, so the same CRC. What it leaves is a 16-byte
 * remainder congruent to everything folded, which engine/image/crc32.ts
 * finishes with a table (the remainder's 16 bytes, then the last <16
 * bytes of the buffer). No Barrett reduction here: the table does it.
 *
 * @module
 */

import { codePage } from "./code_page.ts";
import { foldCodeLiteral } from "./crc32_fold_code.ts";

/** The folding function: (buf, len: a multiple of 16, >= 64, ~crc, out: 16 bytes, constants). */
export type FoldFn = (
  buf: Uint8Array,
  len: number,
  init: number,
  out: Uint8Array,
) => void;

/**
 * Fold constants, four 128-bit registers of little-endian 64-bit halves:
 * lanes 64 bytes apart (low x^(4*128+32), high x^(4*128-32), reflected and
 * shifted by one), then 16 bytes apart (x^(128+32), x^(128-32)); for the
 * wide code, 128 bytes apart (x^(1024±32)) and 32 bytes apart (x^(256±32)).
 * 64 bytes: the background fold's output slots start right after them.
 */
const CONSTANTS = new BigUint64Array([
  0x154442bd4n,
  0x1c6e41596n,
  0x1751997d0n,
  0x0ccaa009en,
  0x1e88ef372n,
  0x14a7fe880n,
  0x0f1da05aan,
  0x15a546366n,
]);

/** A tiny x86-64 encoder for the few instructions the fold needs (xmm0..7, fixed GPRs). */
class Code {
  readonly bytes: number[] = [];
  emit(...b: number[]): void {
    this.bytes.push(...b);
  }
  /** movdqu xmm, [rdi + disp8] */
  loadRdi(x: number, disp: number): void {
    if (disp === 0) this.emit(0xf3, 0x0f, 0x6f, (x << 3) | 7);
    else this.emit(0xf3, 0x0f, 0x6f, 0x40 | (x << 3) | 7, disp);
  }
  /** movdqu xmm, [r8 + disp8] */
  loadR8(x: number, disp: number): void {
    if (disp === 0) this.emit(0xf3, 0x41, 0x0f, 0x6f, (x << 3) | 0);
    else this.emit(0xf3, 0x41, 0x0f, 0x6f, 0x40 | (x << 3) | 0, disp);
  }
  /** pxor dst, src */
  pxor(dst: number, src: number): void {
    this.emit(0x66, 0x0f, 0xef, 0xc0 | (dst << 3) | src);
  }
  /** movdqa dst, src */
  movdqa(dst: number, src: number): void {
    this.emit(0x66, 0x0f, 0x6f, 0xc0 | (dst << 3) | src);
  }
  /** pclmulqdq dst, src, imm */
  pclmul(dst: number, src: number, imm: number): void {
    this.emit(0x66, 0x0f, 0x3a, 0x44, 0xc0 | (dst << 3) | src, imm);
  }
  /** x = x.lo * k.lo ^ x.hi * k.hi (k in xmm4; xmm5 scratch) */
  fold(x: number): void {
    this.movdqa(5, x);
    this.pclmul(x, 4, 0x00);
    this.pclmul(5, 4, 0x11);
    this.pxor(x, 5);
  }
  /** 48 83 /n imm8 on rsi/rdi */
  op64(ext: number, reg: number, imm: number): void {
    this.emit(0x48, 0x83, 0xc0 | (ext << 3) | reg, imm);
  }
  /** 48 81 /n imm32 on rsi/rdi (an immediate of 128 and more) */
  op64imm32(ext: number, reg: number, imm: number): void {
    this.emit(0x48, 0x81, 0xc0 | (ext << 3) | reg, imm & 0xff, (imm >> 8) & 0xff, 0, 0);
  }
  /** vmovdqu ymm, [rdi + disp8] (VEX.256.F3.0F 6F) */
  vloadRdi(y: number, disp: number): void {
    this.emit(0xc5, 0xfe, 0x6f, 0x40 | (y << 3) | 7, disp);
  }
  /** vbroadcasti128 ymm, [r8 + disp8] (VEX.256.66.0F38.W0 5A) */
  vbroadcastR8(y: number, disp: number): void {
    this.emit(0xc4, 0xc2, 0x7d, 0x5a, 0x40 | (y << 3), disp);
  }
  /** vpclmulqdq dst, a, b, imm (VEX.256.66.0F3A 44) */
  vpclmul(dst: number, a: number, b: number, imm: number): void {
    this.emit(0xc4, 0xe3, ((~a & 0xf) << 3) | 0x05, 0x44, 0xc0 | (dst << 3) | b, imm);
  }
  /** vpxor dst, a, b (VEX.256.66.0F EF) */
  vpxor(dst: number, a: number, b: number): void {
    this.emit(0xc5, 0x80 | ((~a & 0xf) << 3) | 0x05, 0xef, 0xc0 | (dst << 3) | b);
  }
  /** vpxor dst, a, [rdi + disp8] */
  vpxorRdi(dst: number, a: number, disp: number): void {
    this.emit(0xc5, 0x80 | ((~a & 0xf) << 3) | 0x05, 0xef, 0x40 | (dst << 3) | 7, disp);
  }
  /** dst ^= y.lo * k.lo ^ y.hi * k.hi in each 128-bit half (k in ymm4; ymm5, ymm6 scratch) */
  vfoldInto(dst: number, y: number): void {
    this.vpclmul(5, y, 4, 0x11);
    this.vpclmul(6, y, 4, 0x00);
    this.vpxor(dst, dst, 5);
    this.vpxor(dst, dst, 6);
  }
  /** A rel32 jump (0x0f 0x82: jb; 0xe9: jmp) to be patched; returns the patch offset. */
  jump(opcode: number[]): number {
    this.emit(...opcode, 0, 0, 0, 0);
    return this.bytes.length - 4;
  }
  /** Points the jump patched at `at` to the current position (or `target`). */
  patch(at: number, target = this.bytes.length): void {
    const rel = target - (at + 4);
    for (let i = 0; i < 4; i++) this.bytes[at + i] = (rel >> (8 * i)) & 0xff;
  }
}

const RSI = 6, RDI = 7;
const ADD = 0, SUB = 5, CMP = 7;
const JB = [0x0f, 0x82], JMP = [0xe9];

/**
 * The code: rdi = buf, rsi = len (multiple of 16, >= 64), edx = initial
 * CRC register (zlib's CRC inverted), rcx = 16-byte output, r8 = constants.
 * Mapped from its literals (ffi/crc32_fold_code.ts, written from this by
 * scripts/fold_code.ts): generating it is ~1 ms of cold code.
 * With `doneFlag`, the code also stores 1 in the 32-bit word right after
 * the output once the output is written (a fold run on another thread,
 * {@link crc32FoldInBackground}); before that, when r9 is not 0, it
 * unmaps the r9 bytes at the buffer's start (`munmap(buf, r9)`: the
 * window it folded, off cryo's main thread).
 */
export function foldCode(doneFlag = false, wide = hasWideFold()): Uint8Array {
  const c = new Code();
  if (doneFlag) c.emit(0x49, 0x89, 0xfa); // mov r10, rdi (the buffer, for the munmap)
  // The wide part (from 256 bytes): its 16-byte block goes on at the 16-byte steps below.
  const toNarrow = wide ? c.jump(cmpLen256(c)) : -1;
  const toSteps = wide ? emitWide(c) : -1;
  if (wide) c.patch(toNarrow);
  for (let x = 0; x < 4; x++) c.loadRdi(x, 16 * x);
  c.emit(0x66, 0x0f, 0x6e, 0xe2); // movd xmm4, edx
  c.pxor(0, 4);
  c.op64(ADD, RDI, 64);
  c.op64(SUB, RSI, 64);
  c.loadR8(4, 0);
  const loop4 = c.bytes.length;
  c.op64(CMP, RSI, 64);
  const exit4 = c.jump(JB);
  for (let x = 0; x < 4; x++) {
    c.fold(x);
    c.loadRdi(5, 16 * x);
    c.pxor(x, 5);
  }
  c.op64(ADD, RDI, 64);
  c.op64(SUB, RSI, 64);
  c.patch(c.jump(JMP), loop4);
  c.patch(exit4);
  c.loadR8(4, 16);
  for (let x = 1; x < 4; x++) {
    c.fold(0);
    c.pxor(0, x);
  }
  const loop1 = c.bytes.length;
  if (wide) c.patch(toSteps, loop1);
  c.op64(CMP, RSI, 16);
  const exit1 = c.jump(JB);
  c.fold(0);
  c.loadRdi(5, 0);
  c.pxor(0, 5);
  c.op64(ADD, RDI, 16);
  c.op64(SUB, RSI, 16);
  c.patch(c.jump(JMP), loop1);
  c.patch(exit1);
  c.emit(0xf3, 0x0f, 0x7f, 0x01); // movdqu [rcx], xmm0
  if (doneFlag) {
    c.emit(0x4d, 0x85, 0xc9); // test r9, r9
    const keep = c.jump([0x0f, 0x84]); // jz: nothing to unmap
    c.emit(0x49, 0x89, 0xc8); // mov r8, rcx (syscall clobbers rcx and r11)
    c.emit(0x4c, 0x89, 0xd7); // mov rdi, r10
    c.emit(0x4c, 0x89, 0xce); // mov rsi, r9
    c.emit(0xb8, 0x0b, 0x00, 0x00, 0x00); // mov eax, 11 (munmap)
    c.emit(0x0f, 0x05); // syscall
    c.emit(0x4c, 0x89, 0xc1); // mov rcx, r8
    c.patch(keep);
    c.emit(0xc7, 0x41, 0x10, 0x01, 0x00, 0x00, 0x00); // mov dword [rcx+16], 1
  }
  c.emit(0xc3); // ret
  return new Uint8Array(c.bytes);
}

/** Emits `cmp rsi, 256` and returns the opcode of the jump below it (jb: to the narrow code). */
function cmpLen256(c: Code): number[] {
  c.op64imm32(CMP, RSI, 256);
  return JB;
}

/**
 * The wide fold (len >= 256): 128 bytes per step in ymm0..3, the lanes
 * folded into ymm3, its halves into xmm0, xmm4 = the 16-byte constants;
 * returns the offset of its final jump, to patch to the 16-byte steps
 * (which take rdi, rsi, xmm0 and xmm4 as it leaves them).
 */
function emitWide(c: Code): number {
  for (let y = 0; y < 4; y++) c.vloadRdi(y, 32 * y);
  c.emit(0xc5, 0xf9, 0x6e, 0xe2); // vmovd xmm4, edx (the upper bits zeroed)
  c.vpxor(0, 0, 4);
  c.op64imm32(ADD, RDI, 128);
  c.op64imm32(SUB, RSI, 128);
  c.vbroadcastR8(4, 32);
  const loop = c.bytes.length;
  c.op64imm32(CMP, RSI, 128);
  const exit = c.jump(JB);
  for (let y = 0; y < 4; y++) {
    c.vpclmul(5, y, 4, 0x11);
    c.vpclmul(y, y, 4, 0x00);
    c.vpxor(y, y, 5);
    c.vpxorRdi(y, y, 32 * y);
  }
  c.op64imm32(ADD, RDI, 128);
  c.op64imm32(SUB, RSI, 128);
  c.patch(c.jump(JMP), loop);
  c.patch(exit);
  c.vbroadcastR8(4, 48);
  for (let y = 1; y < 4; y++) c.vfoldInto(y, y - 1);
  c.emit(0xc4, 0xe3, 0x7d, 0x39, 0xc0 | (3 << 3) | 1, 1); // vextracti128 xmm1, ymm3, 1
  c.emit(0xc5, 0xf9, 0x6f, 0xc3); // vmovdqa xmm0, xmm3
  c.emit(0xc5, 0xf8, 0x77); // vzeroupper (the SSE code and the caller follow)
  c.loadR8(4, 16);
  c.fold(0);
  c.pxor(0, 1);
  return c.jump(JMP);
}

let pclmul: boolean | undefined;
let widePclmul: boolean | undefined;

/**
 * True when this CPU has VPCLMULQDQ and AVX2 and the kernel saves the ymm
 * registers (AVX in /proc/cpuinfo's flags, which lists it only then).
 */
export function hasWideFold(): boolean {
  widePclmul ??= hasPclmul() && ["vpclmulqdq", "avx2", "avx"].every((f) => cpuFlags().has(f));
  return widePclmul;
}

let flagSet: Set<string> | undefined;

/** The flags of /proc/cpuinfo's first CPU (empty when unreadable or not x86-64). */
function cpuFlags(): Set<string> {
  if (flagSet) return flagSet;
  flagSet = new Set();
  if (Deno.build.arch !== "x86_64") return flagSet;
  try {
    const text = Deno.readTextFileSync("/proc/cpuinfo");
    const flags = text.split("\n").find((l) => l.startsWith("flags"));
    if (flags) flagSet = new Set(flags.split(/\s+/));
  } catch { /* none */ }
  return flagSet;
}

/** True when this CPU has PCLMULQDQ (x86-64 only; read from /proc/cpuinfo once). */
function hasPclmul(): boolean {
  pclmul ??= readPclmul();
  return pclmul;
}

function readPclmul(): boolean {
  return cpuFlags().has("pclmulqdq");
}

const PAGE = 4096;

/** A page of code made read+exec, and the read-write data pages mapped right after it. */
interface CodePages {
  code: Deno.PointerObject;
  /** Address of the first data page. */
  data: bigint;
  /** The data pages. */
  dataView: Uint8Array;
}

/**
 * Maps one page for `code` and `dataPages` pages after it, writes the code
 * and makes its page read+exec (never writable and executable at once):
 * kept for the process's lifetime. Null when the kernel refuses any step.
 */
function mapCodePages(code: Uint8Array, dataPages: number): CodePages | null {
  const addr = codePage(code, dataPages);
  if (addr === null) return null;
  const data = addr + BigInt(PAGE);
  const dataView = dataPages === 0 ? new Uint8Array(0) : new Uint8Array(
    Deno.UnsafePointerView.getArrayBuffer(Deno.UnsafePointer.create(data)!, dataPages * PAGE),
  );
  return { code: Deno.UnsafePointer.create(addr)!, data, dataView };
}

/** The C signature of the code: void fold(buf, len, init, out, constants). */
const FOLD_DEF = {
  parameters: ["buffer", "u64", "u32", "buffer", "buffer"],
  result: "void",
} as const;

const folds = new Map<boolean, FoldFn | null>();

/**
 * The folding function, or null when this machine cannot run it (no
 * PCLMULQDQ, not x86-64, or no page can be made executable): the caller
 * then computes the CRC in JavaScript. Prepared on the first call (one
 * page mapped for the process's lifetime, written, then made read+exec).
 * `wide`: the code with the VPCLMULQDQ steps (default where the CPU has
 * them; false for the 16-byte code alone, which tests compare with it).
 */
export function crc32Fold(wide = hasWideFold()): FoldFn | null {
  const known = folds.get(wide);
  if (known !== undefined) return known;
  folds.set(wide, null);
  if (!hasPclmul() || (wide && !hasWideFold())) return null;
  const pages = mapCodePages(foldCodeLiteral(false, wide), 0);
  if (!pages) return null;
  const fn = new Deno.UnsafeFnPointer(
    pages.code as Deno.PointerObject<typeof FOLD_DEF>,
    FOLD_DEF,
  );
  const constants = new Uint8Array(CONSTANTS.buffer);
  const fold: FoldFn = (buf, len, init, out) => fn.call(buf, BigInt(len), init, out, constants);
  folds.set(wide, fold);
  return fold;
}

/** One fold running on a thread of Deno's blocking pool ({@link crc32FoldInBackground}). */
export interface BackgroundFold {
  /** True once the fold has written its remainder (polled: no event loop needed). */
  done(): boolean;
  /** The 16-byte remainder (as {@link FoldFn}'s output); only once {@link done}. */
  remainder(): Uint8Array;
}

/**
 * Starts folding `len` bytes at address `addr` (a multiple of 16, >= 64;
 * memory that stays mapped until the fold is done) from CRC register
 * `init`, on another thread; at most {@link BACKGROUND_SLOTS} at once.
 * With `unmapLength`, the fold's thread unmaps that many bytes from `addr`
 * once it has folded them (before {@link BackgroundFold.done}): the
 * caller must not touch them after this call.
 */
export type BackgroundFoldFn = (
  addr: bigint,
  len: number,
  init: number,
  unmapLength?: number,
) => BackgroundFold;

/** How many background folds may run at once (one output slot each). */
export const BACKGROUND_SLOTS = 8;

/** The C signature of the flagged code, called without blocking (a Promise, ignored). */
const FOLD_BG_DEF = {
  parameters: ["pointer", "u64", "u32", "pointer", "pointer", "u64"],
  result: "void",
  nonblocking: true,
} as const;

let background: BackgroundFoldFn | null | undefined;

/**
 * The background fold, or null when this machine cannot run it (as
 * {@link crc32Fold}). Prepared on the first call: a page of code (the fold
 * that raises a done flag) and a page for the constants and the output
 * slots, both kept for the process's lifetime. A slot is reused only after
 * the fold that had it is done: the caller polls {@link BackgroundFold.done}
 * before it starts more than {@link BACKGROUND_SLOTS} folds.
 */
export function crc32FoldInBackground(): BackgroundFoldFn | null {
  if (background !== undefined) return background;
  background = null;
  if (!hasPclmul()) return null;
  const pages = mapCodePages(foldCodeLiteral(true, hasWideFold()), 1);
  if (!pages) return null;
  const { data, dataView } = pages;
  dataView.set(new Uint8Array(CONSTANTS.buffer));
  const constants = Deno.UnsafePointer.create(data);
  const fn = new Deno.UnsafeFnPointer(
    pages.code as Deno.PointerObject<typeof FOLD_BG_DEF>,
    FOLD_BG_DEF,
  );
  let next = 0;
  background = (buf, len, init, unmapLength = 0) => {
    const slot = 64 + 32 * (next++ % BACKGROUND_SLOTS);
    const out = dataView.subarray(slot, slot + 32);
    const flag = new Int32Array(dataView.buffer, slot + 16, 1);
    out.fill(0);
    fn.call(
      Deno.UnsafePointer.create(buf),
      BigInt(len),
      init,
      Deno.UnsafePointer.create(data + BigInt(slot)),
      constants,
      BigInt(unmapLength),
    );
    return {
      done: () => Atomics.load(flag, 0) === 1,
      remainder: () => out.slice(0, 16),
    };
  };
  return background;
}

/** A fold callable from native code ({@link foldEntry}): its address and its constants' address. */
export interface FoldEntry {
  /** Address of the code of {@link FoldFn}'s signature (buf, len, init, out, constants). */
  fn: bigint;
  /** Address of the constants to pass as its fifth argument. */
  constants: bigint;
}

let entry: FoldEntry | null | undefined;

/**
 * The fold's code and constants in a page of their own, for native callers
 * (ffi/syscall_table.ts runs it between syscalls on another thread), or
 * null when this machine cannot run it (as {@link crc32Fold}). Mapped on the
 * first call, kept for the process's lifetime.
 */
export function foldEntry(): FoldEntry | null {
  if (entry !== undefined) return entry;
  entry = null;
  if (!hasPclmul()) return null;
  const pages = mapCodePages(foldCodeLiteral(false, hasWideFold()), 1);
  if (!pages) return null;
  pages.dataView.set(new Uint8Array(CONSTANTS.buffer));
  entry = { fn: Deno.UnsafePointer.value(pages.code), constants: pages.data };
  return entry;
}
