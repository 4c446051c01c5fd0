/**
 * A tiny x86-64 assembler: exactly the instructions the restore stub needs,
 * each emitted as bytes, plus labels and rel32 branch fixups.
 *
 * No C compiler or assembler is used at install or run time; every encoding
 * here is checked against `objdump -M intel` in tests/stub_test.ts.
 *
 * Conventions:
 * - registers are named by their 64-bit names (`"rax"` .. `"r15"`); 32-bit
 *   forms (`mov eax, ...`) are selected by the method, not by the name;
 * - memory operands are {@link Mem}: `[base + index*scale + disp]`;
 * - every branch is `jmp rel32` / `jcc rel32` (fixed size), so code size never
 *   depends on label distances and the stub has a constant size.
 *
 * @module
 */

/** A general-purpose 64-bit register. */
export type Reg =
  | "rax"
  | "rcx"
  | "rdx"
  | "rbx"
  | "rsp"
  | "rbp"
  | "rsi"
  | "rdi"
  | "r8"
  | "r9"
  | "r10"
  | "r11"
  | "r12"
  | "r13"
  | "r14"
  | "r15";

/** Hardware register numbers, in encoding order. */
export const REGS: readonly Reg[] = [
  "rax",
  "rcx",
  "rdx",
  "rbx",
  "rsp",
  "rbp",
  "rsi",
  "rdi",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
];

/** Encoding number (0..15) of a register. */
export function regNum(r: Reg): number {
  const n = REGS.indexOf(r);
  if (n < 0) throw new Error(`unknown register ${r}`);
  return n;
}

/** A memory operand `[base + index*scale + disp]`. */
export interface Mem {
  /** Base register. */
  base: Reg;
  /** Optional index register (not rsp). */
  index?: Reg;
  /** Index scale (default 1). */
  scale?: 1 | 2 | 4 | 8;
  /** Signed 32-bit displacement (default 0). */
  disp?: number;
}

/** Condition codes for {@link Asm.jcc}, by their usual mnemonic suffix. */
export const COND = {
  o: 0x0,
  no: 0x1,
  b: 0x2,
  ae: 0x3,
  e: 0x4,
  ne: 0x5,
  be: 0x6,
  a: 0x7,
  s: 0x8,
  ns: 0x9,
  l: 0xc,
  ge: 0xd,
  le: 0xe,
  g: 0xf,
} as const;

/** A condition name accepted by {@link Asm.jcc}. */
export type Cond = keyof typeof COND;

function isInt8(v: number): boolean {
  return v >= -128 && v <= 127;
}

function checkInt32(v: number, what: string): void {
  if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) {
    throw new Error(`${what} ${v} does not fit in a signed 32-bit immediate`);
  }
}

function le32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

function le64(v: bigint): number[] {
  const u = BigInt.asUintN(64, v);
  const out: number[] = [];
  for (let i = 0n; i < 8n; i++) out.push(Number((u >> (8n * i)) & 0xffn));
  return out;
}

/**
 * REX prefix for the given W bit and extension bits, or nothing when none is
 * needed (unless `force`, used for byte registers spl..dil).
 */
function rex(w: boolean, r: number, x: number, b: number, force = false): number[] {
  const v = 0x40 | (w ? 8 : 0) | ((r >> 3) << 2) | ((x >> 3) << 1) | (b >> 3);
  return v !== 0x40 || force ? [v] : [];
}

/** ModRM (+ SIB + displacement) for a register field `reg` and a memory operand. */
function modrmMem(reg: number, m: Mem): { rexX: number; rexB: number; bytes: number[] } {
  const base = regNum(m.base);
  const disp = m.disp ?? 0;
  checkInt32(disp, "displacement");
  const index = m.index === undefined ? undefined : regNum(m.index);
  if (index === 4) throw new Error("rsp cannot be an index register");
  const scale = m.scale ?? 1;
  const ss = { 1: 0, 2: 1, 4: 2, 8: 3 }[scale];
  // rbp/r13 as base have no mod=00 form: they always need a displacement.
  let mod: number;
  if (disp === 0 && (base & 7) !== 5) mod = 0;
  else if (isInt8(disp)) mod = 1;
  else mod = 2;
  const dispBytes = mod === 0 ? [] : mod === 1 ? [disp & 0xff] : le32(disp);
  const needSib = index !== undefined || (base & 7) === 4;
  if (!needSib) {
    return {
      rexX: 0,
      rexB: base,
      bytes: [(mod << 6) | ((reg & 7) << 3) | (base & 7), ...dispBytes],
    };
  }
  const idx = index ?? 4; // 4 = no index
  return {
    rexX: index ?? 0,
    rexB: base,
    bytes: [
      (mod << 6) | ((reg & 7) << 3) | 4,
      (ss << 6) | ((idx & 7) << 3) | (base & 7),
      ...dispBytes,
    ],
  };
}

/** One instruction with a memory operand: [REX] opcode ModRM [SIB] [disp] [imm]. */
function memInsn(w: boolean, opcode: number[], reg: number, m: Mem, imm: number[] = []): number[] {
  const mm = modrmMem(reg, m);
  return [...rex(w, reg, mm.rexX, mm.rexB), ...opcode, ...mm.bytes, ...imm];
}

/** One instruction with a register operand in ModRM.rm (mod=11). */
function regInsn(w: boolean, opcode: number[], reg: number, rm: number, imm: number[] = []) {
  return [...rex(w, reg, 0, rm), ...opcode, 0xc0 | ((reg & 7) << 3) | (rm & 7), ...imm];
}

/** Group-1 ALU op (`add`/`and`/`cmp` ... reg, imm) picking the imm8 form when it fits. */
function group1(w: boolean, ext: number, r: Reg, imm: number): number[] {
  checkInt32(imm, "immediate");
  const rm = regNum(r);
  if (isInt8(imm)) return regInsn(w, [0x83], ext, rm, [imm & 0xff]);
  return regInsn(w, [0x81], ext, rm, le32(imm));
}

interface Fixup {
  /** Offset of the rel32 field. */
  at: number;
  /** Label the branch targets. */
  label: string;
}

/**
 * An x86-64 code buffer. Each method appends one instruction; `label()`
 * names the current offset; `bytes()` resolves the rel32 fixups.
 */
export class Asm {
  #code: number[] = [];
  #labels = new Map<string, number>();
  #fixups: Fixup[] = [];

  /** Current offset (size of the code emitted so far). */
  get offset(): number {
    return this.#code.length;
  }

  #emit(b: number[]): this {
    this.#code.push(...b);
    return this;
  }

  /** Defines `name` at the current offset. */
  label(name: string): this {
    if (this.#labels.has(name)) throw new Error(`label ${name} defined twice`);
    this.#labels.set(name, this.#code.length);
    return this;
  }

  /** Offset of a defined label. */
  labelOffset(name: string): number {
    const v = this.#labels.get(name);
    if (v === undefined) throw new Error(`undefined label ${name}`);
    return v;
  }

  /** The code with every branch resolved. Throws on an undefined label. */
  bytes(): Uint8Array {
    const out = Uint8Array.from(this.#code);
    const view = new DataView(out.buffer);
    for (const f of this.#fixups) {
      const rel = this.labelOffset(f.label) - (f.at + 4);
      view.setInt32(f.at, rel, true);
    }
    return out;
  }

  /** `movabs r64, imm64` (always the 10-byte form, so sizes never vary). */
  movImm64(dst: Reg, imm: bigint): this {
    const d = regNum(dst);
    return this.#emit([...rex(true, 0, 0, d), 0xb8 + (d & 7), ...le64(imm)]);
  }

  /** `mov r64, r64`. */
  movReg(dst: Reg, src: Reg): this {
    return this.#emit(regInsn(true, [0x89], regNum(src), regNum(dst)));
  }

  /** `mov r64, QWORD PTR [mem]`. */
  load64(dst: Reg, m: Mem): this {
    return this.#emit(memInsn(true, [0x8b], regNum(dst), m));
  }

  /** `mov r32, DWORD PTR [mem]` (zero-extends into the 64-bit register). */
  load32(dst: Reg, m: Mem): this {
    return this.#emit(memInsn(false, [0x8b], regNum(dst), m));
  }

  /** `movzx r32, BYTE PTR [mem]` (zero-extends into the 64-bit register). */
  loadByteZx(dst: Reg, m: Mem): this {
    return this.#emit(memInsn(false, [0x0f, 0xb6], regNum(dst), m));
  }

  /** `mov QWORD PTR [mem], r64`. */
  store64(m: Mem, src: Reg): this {
    return this.#emit(memInsn(true, [0x89], regNum(src), m));
  }

  /** `lea r64, [mem]`. */
  lea(dst: Reg, m: Mem): this {
    return this.#emit(memInsn(true, [0x8d], regNum(dst), m));
  }

  /** `add r64, imm32` (sign-extended). */
  addImm(dst: Reg, imm: number): this {
    return this.#emit(group1(true, 0, dst, imm));
  }

  /** `and r64, imm32` (sign-extended). */
  andImm(dst: Reg, imm: number): this {
    return this.#emit(group1(true, 4, dst, imm));
  }

  /** `cmp r64, imm32` (the immediate is sign-extended to 64 bits). */
  cmpImm64(r: Reg, imm: number): this {
    return this.#emit(group1(true, 7, r, imm));
  }

  /** `cmp r32, imm32`; `imm` may be given unsigned (0xffffffff) or signed (-1). */
  cmpImm32(r: Reg, imm: number): this {
    return this.#emit(group1(false, 7, r, imm > 0x7fffffff ? imm - 0x100000000 : imm));
  }

  /** `test r32, imm32`. */
  testImm32(r: Reg, imm: number): this {
    checkInt32(imm, "immediate");
    return this.#emit(regInsn(false, [0xf7], 0, regNum(r), le32(imm)));
  }

  /** `test r64, r64`. */
  testReg(a: Reg, b: Reg): this {
    return this.#emit(regInsn(true, [0x85], regNum(b), regNum(a)));
  }

  /** `xor r32, r32` (clears the whole 64-bit register when a === b). */
  xor32(dst: Reg, src: Reg): this {
    return this.#emit(regInsn(false, [0x31], regNum(src), regNum(dst)));
  }

  /** `jmp rel32` to a label (defined before or after). */
  jmp(label: string): this {
    this.#emit([0xe9]);
    this.#fixups.push({ at: this.#code.length, label });
    return this.#emit([0, 0, 0, 0]);
  }

  /** `jcc rel32` to a label. */
  jcc(cond: Cond, label: string): this {
    this.#emit([0x0f, 0x80 + COND[cond]]);
    this.#fixups.push({ at: this.#code.length, label });
    return this.#emit([0, 0, 0, 0]);
  }

  /** `syscall` (clobbers rcx and r11). */
  syscall(): this {
    return this.#emit([0x0f, 0x05]);
  }

  /** `int3` (SIGTRAP; a tracer sees rip = address of the int3 + 1). */
  int3(): this {
    return this.#emit([0xcc]);
  }

  /** `rep movsb` (copy rcx bytes from [rsi] to [rdi]). */
  repMovsb(): this {
    return this.#emit([0xf3, 0xa4]);
  }

  /** `cld` (clear the direction flag, so string ops move forward). */
  cld(): this {
    return this.#emit([0xfc]);
  }
}
