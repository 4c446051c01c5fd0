/**
 * The x86-64 restore stub: a dumb interpreter of restore programs (see
 * program.ts), emitted with x86.ts, and the bootstrap blob that holds it.
 *
 * ## Bootstrap blob layout (one RWX region at `base`, page aligned)
 *
 * ```
 * base          stub code ({@link STUB_SIZE} bytes, constant)
 * slotsAddress  64 × u64 slots, zero at start (64-byte aligned, 512 bytes)
 * after slots   program blobs (header, data, ops), 64-byte aligned, in the
 *               order they were built (see {@link BootstrapBuilder})
 * ```
 *
 * ## The interpreter
 *
 * It uses no stack at all (no push/pop/call; the stack may be unmapped while
 * it runs) and only registers, with absolute addresses (movabs):
 *
 * - rbx: the current op; r12: the slots base;
 * - rax, rdi, rsi, rdx, r10, r8, r9: syscall number and arguments;
 * - r13, r14: scratch (preserved by `syscall`); rcx and r11 are clobbered by
 *   `syscall` and never relied on across it.
 *
 * Entry points:
 * - `entryStandalone`: rbx = the standalone program (what running the image
 *   directly does, e.g. print a message and exit);
 * - `entryRestore`: rbx = the restore program;
 * - `resumeRip`: continue with rbx = any op (a tracer can run more ops after
 *   a stop by setting rip and rbx; r12 is reloaded here);
 * - `loopRip`: the same without reloading r12 (nor `cld`): a tracer sets
 *   r12 to slots of the run's own (several threads running sections at
 *   once, each storing its own results; engine/restore/thread_state.ts).
 *
 * Per op: END stops at DONE; the args are loaded, slot args replaced by
 * `slots[arg & 63]`; COPY runs `rep movsb` (result 0), any other nr runs
 * `syscall`. A result in [-4095,-1] without ALLOW_FAIL stops at FAIL.
 * Otherwise the result is stored to its slot (if any), and with
 * JUMP_IF_ZERO a zero result continues at the op at `aux`; else rbx += 64.
 *
 * Stops are `int3`, each followed by a jump back to itself:
 * - DONE: rbx = the END op; rip seen by a tracer = {@link StubCode.doneRip};
 * - FAIL: rbx = the failing op, rax = -errno; rip = {@link StubCode.failRip}.
 *
 * An untraced process dies of SIGTRAP at either stop.
 *
 * @module
 */

import { Asm, type Reg } from "./x86.ts";
import {
  type BuiltProgram,
  FLAG_ALLOW_FAIL,
  FLAG_JUMP_IF_ZERO,
  NO_SLOT,
  OP_COPY,
  OP_END,
  OP_SIZE,
  ProgramBuilder,
  SLOT_COUNT,
} from "../program/builder.ts";
import { SYS } from "../../ffi/sysno.ts";

/** Addresses the stub code is built for. */
export interface StubLayout {
  /** Address of the first stub instruction. */
  base: bigint;
  /** Address of the 64 u64 slots (writable). */
  slotsAddress: bigint;
  /** Address of op #0 of the restore program. */
  mainProgram: bigint;
  /** Address of op #0 of the standalone program. */
  standaloneProgram: bigint;
}

/** The assembled stub and the addresses that matter to a tracer. */
export interface StubCode {
  /** Machine code, to be placed at `layout.base`. */
  code: Uint8Array;
  /** Entry running the standalone program. */
  entryStandalone: bigint;
  /** Entry running the restore program. */
  entryRestore: bigint;
  /** Entry continuing at the op in rbx. */
  resumeRip: bigint;
  /** Entry continuing at the op in rbx with the slots at r12 (set by the tracer, DF clear). */
  loopRip: bigint;
  /** rip after the DONE int3 (program reached END). */
  doneRip: bigint;
  /** rip after the FAIL int3 (an op failed; rax = -errno, rbx = op). */
  failRip: bigint;
}

const ARG_REGS: Reg[] = ["rdi", "rsi", "rdx", "r10", "r8", "r9"];

/** Assembles the stub for the given addresses. */
export function buildStub(layout: StubLayout): StubCode {
  const a = new Asm();
  a.label("entryStandalone");
  a.movImm64("rbx", layout.standaloneProgram);
  a.jmp("resume");
  a.label("entryRestore");
  a.movImm64("rbx", layout.mainProgram);
  a.label("resume");
  a.movImm64("r12", layout.slotsAddress);
  a.cld();

  a.label("loop");
  a.load32("rax", { base: "rbx" }); // nr
  a.cmpImm32("rax", OP_END);
  a.jcc("e", "done");
  ARG_REGS.forEach((r, i) => a.load64(r, { base: "rbx", disp: 8 + 8 * i }));
  a.loadByteZx("r13", { base: "rbx", disp: 4 }); // argSlotMask
  ARG_REGS.forEach((r, i) => {
    a.testImm32("r13", 1 << i);
    a.jcc("e", `noslot${i}`);
    a.andImm(r, SLOT_COUNT - 1);
    a.load64(r, { base: "r12", index: r, scale: 8 });
    a.label(`noslot${i}`);
  });
  a.cmpImm32("rax", OP_COPY);
  a.jcc("e", "copy");
  a.syscall();

  a.label("result");
  a.cmpImm64("rax", -4095);
  a.jcc("b", "ok"); // unsigned below 0xfffffffffffff001: not an error
  a.loadByteZx("r14", { base: "rbx", disp: 6 }); // flags
  a.testImm32("r14", FLAG_ALLOW_FAIL);
  a.jcc("e", "fail");
  a.label("ok");
  a.loadByteZx("r13", { base: "rbx", disp: 5 }); // storeSlot
  a.cmpImm32("r13", NO_SLOT);
  a.jcc("e", "nostore");
  a.andImm("r13", SLOT_COUNT - 1);
  a.store64({ base: "r12", index: "r13", scale: 8 }, "rax");
  a.label("nostore");
  a.loadByteZx("r14", { base: "rbx", disp: 6 }); // flags
  a.testImm32("r14", FLAG_JUMP_IF_ZERO);
  a.jcc("e", "next");
  a.testReg("rax", "rax");
  a.jcc("ne", "next");
  a.load64("rbx", { base: "rbx", disp: 56 }); // aux: the target op
  a.jmp("loop");
  a.label("next");
  a.addImm("rbx", OP_SIZE);
  a.jmp("loop");

  a.label("copy");
  a.movReg("rcx", "rdx");
  a.repMovsb();
  a.xor32("rax", "rax");
  a.jmp("result");

  a.label("done");
  a.int3();
  a.jmp("done");
  a.label("fail");
  a.int3();
  a.jmp("fail");

  const at = (l: string) => layout.base + BigInt(a.labelOffset(l));
  const code = a.bytes();
  if (code.length !== STUB_SIZE) {
    throw new Error(
      `internal error: the stub is ${code.length} bytes, STUB_SIZE says ${STUB_SIZE}`,
    );
  }
  return {
    code,
    entryStandalone: at("entryStandalone"),
    entryRestore: at("entryRestore"),
    resumeRip: at("resume"),
    loopRip: at("loop"),
    doneRip: at("done") + 1n,
    failRip: at("fail") + 1n,
  };
}

/**
 * Size of the stub code (independent of the addresses: every immediate is
 * fixed size). A literal, not a stub assembled at import (1.5 to 3 ms of
 * every dump's and restore's start, docs/PERFORMANCE.md): {@link buildStub}
 * throws if the code it assembles ever differs from it.
 */
export const STUB_SIZE = 339;

/**
 * The stub's code as {@link buildStub} assembles it with every address 0
 * (hex): the addresses are three `movabs` immediates at {@link STUB_FIXUPS},
 * every jump is relative. {@link stubCode} copies it and writes the
 * addresses in, without running the assembler (a few ms of every dump's
 * and restore's compile, cold); tests/stub_literal_test.ts checks it against
 * {@link buildStub} for many layouts.
 */
const STUB_HEX =
  "48bb0000000000000000e90a00000048bb000000000000000049bc0000000000000000fc8b0383f8ff0f8418" +
  "010000488b7b08488b7310488b53184c8b53204c8b43284c8b4b30440fb66b0441f7c5010000000f84080000" +
  "004883e73f498b3cfc41f7c5020000000f84080000004883e63f498b34f441f7c5040000000f840800000048" +
  "83e23f498b14d441f7c5080000000f84080000004983e23f4f8b14d441f7c5100000000f84080000004983e0" +
  "3f4f8b04c441f7c5200000000f84080000004983e13f4f8b0ccc83f8fe0f84680000000f054881f801f0ffff" +
  "0f8212000000440fb6730641f7c6010000000f8459000000440fb66b054181fdff0000000f84080000004983" +
  "e53f4b8904ec440fb6730641f7c6020000000f84120000004885c00f8509000000488b5b38e9f2feffff4883" +
  "c340e9e9feffff4889d1f3a431c0e98effffffcce9faffffffcce9faffffff";

/** Offsets in the stub's code: of the three immediates, and of the entry points and stops. */
const STUB_FIXUPS = {
  standaloneImm: 2,
  mainImm: 17,
  slotsImm: 27,
  entryStandalone: 0,
  entryRestore: 15,
  resume: 25,
  loop: 36,
  doneRip: 328,
  failRip: 334,
} as const;

/** The decoded {@link STUB_HEX} (made once). */
let stubTemplate: Uint8Array | undefined;

/** The stub for `layout`: the bytes and addresses {@link buildStub} gives, from the template. */
export function stubCode(layout: StubLayout): StubCode {
  if (!stubTemplate) {
    const t = new Uint8Array(STUB_HEX.length / 2);
    for (let i = 0; i < t.length; i++) t[i] = parseInt(STUB_HEX.slice(2 * i, 2 * i + 2), 16);
    if (t.length !== STUB_SIZE) throw new Error("internal error: the stub template's size");
    stubTemplate = t;
  }
  const code = stubTemplate.slice();
  const view = new DataView(code.buffer);
  const f = STUB_FIXUPS;
  view.setBigUint64(f.standaloneImm, BigInt.asUintN(64, layout.standaloneProgram), true);
  view.setBigUint64(f.mainImm, BigInt.asUintN(64, layout.mainProgram), true);
  view.setBigUint64(f.slotsImm, BigInt.asUintN(64, layout.slotsAddress), true);
  const at = (offset: number) => layout.base + BigInt(offset);
  return {
    code,
    entryStandalone: at(f.entryStandalone),
    entryRestore: at(f.entryRestore),
    resumeRip: at(f.resume),
    loopRip: at(f.loop),
    doneRip: at(f.doneRip),
    failRip: at(f.failRip),
  };
}

function alignUp(v: bigint, a: bigint): bigint {
  return (v + a - 1n) / a * a;
}

/** A complete bootstrap blob: stub, slots and programs, for one base address. */
export interface Bootstrap extends StubCode {
  /** Address of the blob (= the stub code). */
  base: bigint;
  /** The bytes to map at `base` (readable, writable, executable). */
  blob: Uint8Array;
  /** Address of the slots. */
  slotsAddress: bigint;
  /** The program run by `entryRestore`. */
  restore: BuiltProgram;
  /** The program run by `entryStandalone`. */
  standalone: BuiltProgram;
  /** Every program in the blob, in address order. */
  programs: BuiltProgram[];
}

/**
 * Lays out a bootstrap blob at `base`: call {@link program} for each program
 * (the previous one must be built before the next starts, since each begins
 * where the last ended), then {@link finish}.
 *
 * ```ts
 * const boot = new BootstrapBuilder(0x10000000n);
 * const p = boot.program();
 * p.op(SYS.write, [1, p.cstring("hi\n"), 3]);
 * p.op(SYS.exit_group, [0]);
 * p.end();
 * const image = boot.finish({ restore: p.build() });
 * ```
 */
export class BootstrapBuilder {
  /** Address of the blob; page aligned. */
  readonly base: bigint;
  /** Address of the slots. */
  readonly slotsAddress: bigint;
  readonly #programs: BuiltProgram[] = [];
  #cursor: bigint;
  #open = false;
  /** Programs are size-only ({@link ProgramBuilder}'s constructor). */
  readonly #sizeOnly: boolean;

  /** `sizeOnly`: every program is size-only (the blob is zeros of its exact length). */
  constructor(base: bigint, sizeOnly = false) {
    this.#sizeOnly = sizeOnly;
    if (base % 4096n !== 0n) {
      throw new Error(`bootstrap base 0x${base.toString(16)} not page aligned`);
    }
    this.base = base;
    this.slotsAddress = alignUp(base + BigInt(STUB_SIZE), 64n);
    this.#cursor = this.slotsAddress + BigInt(SLOT_COUNT * 8);
  }

  /** Starts a program at the next free address. */
  program(): ProgramBuilder {
    if (this.#open) throw new Error("build the previous program before starting another");
    this.#open = true;
    return new ProgramBuilder(alignUp(this.#cursor, 64n), (built) => {
      this.#programs.push(built);
      this.#cursor = built.end;
      this.#open = false;
    }, this.#sizeOnly);
  }

  /**
   * Builds the stub and the blob. `standalone` defaults to `restore`. Both
   * must be programs built from this builder.
   */
  finish(opts: { restore: BuiltProgram; standalone?: BuiltProgram }): Bootstrap {
    if (this.#open) throw new Error("a program was started but not built");
    const standalone = opts.standalone ?? opts.restore;
    for (const p of [opts.restore, standalone]) {
      if (!this.#programs.includes(p)) throw new Error("program not built by this bootstrap");
    }
    const stub = stubCode({
      base: this.base,
      slotsAddress: this.slotsAddress,
      mainProgram: opts.restore.opsAddress,
      standaloneProgram: standalone.opsAddress,
    });
    const blob = new Uint8Array(Number(this.#cursor - this.base));
    blob.set(stub.code, 0);
    for (const p of this.#programs) blob.set(p.bytes, Number(p.base - this.base));
    return {
      ...stub,
      base: this.base,
      blob,
      slotsAddress: this.slotsAddress,
      restore: opts.restore,
      standalone,
      programs: [...this.#programs],
    };
  }
}

/**
 * Fills `p` with a program that writes `message` to `fd` and exits with
 * `exitCode` (a typical standalone program), then builds it.
 */
export function messageProgram(
  p: ProgramBuilder,
  message: string,
  exitCode = 1,
  fd = 2,
): BuiltProgram {
  const bytes = new TextEncoder().encode(message);
  p.op(SYS.write, [fd, p.data(bytes, 1), bytes.length], { allowFail: true });
  p.op(SYS.exit_group, [exitCode]);
  p.end();
  return p.build();
}
