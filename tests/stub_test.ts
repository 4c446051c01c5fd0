/**
 * Tests of the restore stub: every x86 encoding against objdump, program
 * encode/decode and pretty-printing, and the stub run for real in small
 * static executables (untraced with Deno.Command, traced with ptrace).
 */

import assert from "node:assert/strict";
import { Asm, COND, type Cond, type Reg } from "../engine/restore/x86.ts";
import {
  type BuiltProgram,
  decodeProgram,
  describeFailure,
  formatOp,
  formatProgram,
  type Op,
  OP_COPY,
  OP_END,
  ProgramBuilder,
  readProgramHeader,
  slot,
  sysno,
} from "../engine/program/builder.ts";
import {
  type Bootstrap,
  BootstrapBuilder,
  buildStub,
  messageProgram,
  STUB_SIZE,
} from "../engine/restore/stub.ts";
import { buildExecutable } from "../engine/restore/launcher_elf.ts";
import { SYS } from "../ffi/sysno.ts";
import { posixSpawn } from "../ffi/spawn.ts";
import { rawSyscall } from "../ffi/libc.ts";
import { cont, getRegs, setRegs, TraceeGoneError, waitStop } from "../ffi/ptrace.ts";
import { waitPid, WNOHANG } from "../ffi/wait.ts";
import { readelf, runCommand } from "./helpers/commands.ts";
import { withTempDir } from "./helpers/fs.ts";

const BASE = 0x10000000n;

const assertEquals = (actual: unknown, expected: unknown) =>
  assert.deepStrictEqual(actual, expected);
const assertMatch = (s: string, re: RegExp) => assert.match(s, re);
/** Asserts that `fn` throws an Error whose message contains `text`. */
function assertThrows(fn: () => unknown, text: string): void {
  assert.throws(fn, (e: unknown) => e instanceof Error && e.message.includes(text));
}

// ---------------------------------------------------------------------------
// Helpers

async function objdump(code: Uint8Array, intel = true): Promise<Map<number, string>> {
  const file = await Deno.makeTempFile({ prefix: "cryo-x86-" });
  try {
    await Deno.writeFile(file, code);
    const args = [
      "-D",
      "-b",
      "binary",
      "-m",
      "i386:x86-64",
      ...(intel ? ["-M", "intel"] : []),
      file,
    ];
    const r = await runCommand(["objdump", ...args]);
    assert(r.code === 0, r.stderr);
    const out = new Map<number, string>();
    for (const line of r.stdout.split("\n")) {
      const m = line.match(/^\s*([0-9a-f]+):\t[0-9a-f ]+\t(.*)$/);
      if (m) out.set(parseInt(m[1], 16), m[2].replace(/\s+/g, " ").trim());
    }
    return out;
  } finally {
    await Deno.remove(file);
  }
}

interface RunResult {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
  /** stdout as bytes. */
  raw: Uint8Array;
}

async function writeExecutable(boot: Bootstrap, entry: bigint): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "cryo-stub-" });
  await Deno.writeFile(path, buildExecutable({ base: boot.base, blob: boot.blob, entry }));
  await Deno.chmod(path, 0o755);
  return path;
}

/** Runs an image untraced (Deno.Command is fine: nothing is ptraced here). */
async function run(boot: Bootstrap, entry = boot.entryRestore): Promise<RunResult> {
  const path = await writeExecutable(boot, entry);
  try {
    const r = await new Deno.Command(path, { stdout: "piped", stderr: "piped" }).output();
    const dec = new TextDecoder();
    return {
      code: r.code,
      signal: r.signal,
      stdout: dec.decode(r.stdout),
      stderr: dec.decode(r.stderr),
      raw: r.stdout,
    };
  } finally {
    await Deno.remove(path);
  }
}

/** Builds a one-program bootstrap filled by `fill`. */
function image(fill: (p: ProgramBuilder) => void): Bootstrap {
  const boot = new BootstrapBuilder(BASE);
  const p = boot.program();
  fill(p);
  return boot.finish({ restore: p.build() });
}

function writeStr(p: ProgramBuilder, fd: number, s: string): void {
  const bytes = new TextEncoder().encode(s);
  p.op(SYS.write, [fd, p.data(bytes, 1), bytes.length]);
}

/**
 * Runs the one-program image `fill` builds, untraced, and asserts its
 * stdout and either its exit code or the signal that ended it.
 */
async function assertRuns(
  fill: (p: ProgramBuilder) => void,
  expected: { stdout: string; code: number } | { stdout: string; signal: Deno.Signal },
): Promise<void> {
  const r = await run(image(fill));
  assertEquals(r.stdout, expected.stdout);
  if ("code" in expected) assertEquals(r.code, expected.code);
  else assertEquals(r.signal, expected.signal);
}

// ---------------------------------------------------------------------------
// x86 encodings

interface Case {
  emit: (a: Asm) => void;
  /** Expected objdump -M intel text, or a function of the case's offset (branches). */
  expect: string | ((at: number) => string);
}

const h = (n: number) => `0x${n.toString(16)}`;

const cases: Case[] = [
  ...(["rax", "rbx", "rdi", "r9", "r12", "r15"] as Reg[]).map((r) => ({
    emit: (a: Asm) => a.movImm64(r, 0x1122334455667788n),
    expect: `movabs ${r},0x1122334455667788`,
  })),
  { emit: (a) => a.movImm64("rcx", 0n), expect: "movabs rcx,0x0" },
  { emit: (a) => a.movImm64("rdx", -1n), expect: "movabs rdx,0xffffffffffffffff" },
  { emit: (a) => a.movReg("rcx", "rdx"), expect: "mov rcx,rdx" },
  { emit: (a) => a.movReg("r13", "rax"), expect: "mov r13,rax" },
  { emit: (a) => a.movReg("rax", "r9"), expect: "mov rax,r9" },
  { emit: (a) => a.movReg("r10", "r11"), expect: "mov r10,r11" },
  { emit: (a) => a.load64("rdi", { base: "rbx", disp: 8 }), expect: "mov rdi,QWORD PTR [rbx+0x8]" },
  {
    emit: (a) => a.load64("r10", { base: "rbx", disp: 32 }),
    expect: "mov r10,QWORD PTR [rbx+0x20]",
  },
  {
    emit: (a) => a.load64("rbx", { base: "rbx", disp: 56 }),
    expect: "mov rbx,QWORD PTR [rbx+0x38]",
  },
  { emit: (a) => a.load64("rax", { base: "rbx" }), expect: "mov rax,QWORD PTR [rbx]" },
  { emit: (a) => a.load64("rax", { base: "rsp" }), expect: "mov rax,QWORD PTR [rsp]" },
  { emit: (a) => a.load64("rax", { base: "r12" }), expect: "mov rax,QWORD PTR [r12]" },
  { emit: (a) => a.load64("rax", { base: "rbp" }), expect: "mov rax,QWORD PTR [rbp+0x0]" },
  { emit: (a) => a.load64("rax", { base: "r13" }), expect: "mov rax,QWORD PTR [r13+0x0]" },
  { emit: (a) => a.load64("r8", { base: "r14", disp: -8 }), expect: "mov r8,QWORD PTR [r14-0x8]" },
  {
    emit: (a) => a.load64("rax", { base: "rbx", disp: 0x1000 }),
    expect: "mov rax,QWORD PTR [rbx+0x1000]",
  },
  {
    emit: (a) => a.load64("rsi", { base: "r12", disp: -0x12345 }),
    expect: "mov rsi,QWORD PTR [r12-0x12345]",
  },
  ...(["rdi", "rsi", "rdx", "r10", "r8", "r9"] as Reg[]).map((r) => ({
    emit: (a: Asm) => a.load64(r, { base: "r12", index: r, scale: 8 }),
    expect: `mov ${r},QWORD PTR [r12+${r}*8]`,
  })),
  {
    emit: (a) => a.load64("rax", { base: "rax", index: "rcx", scale: 2, disp: 0x10 }),
    expect: "mov rax,QWORD PTR [rax+rcx*2+0x10]",
  },
  {
    emit: (a) => a.load64("r15", { base: "r13", index: "r14", scale: 4 }),
    expect: "mov r15,QWORD PTR [r13+r14*4+0x0]",
  },
  { emit: (a) => a.load32("rax", { base: "rbx" }), expect: "mov eax,DWORD PTR [rbx]" },
  { emit: (a) => a.load32("r8", { base: "r14", disp: 4 }), expect: "mov r8d,DWORD PTR [r14+0x4]" },
  {
    emit: (a) => a.loadByteZx("r13", { base: "rbx", disp: 4 }),
    expect: "movzx r13d,BYTE PTR [rbx+0x4]",
  },
  { emit: (a) => a.loadByteZx("rax", { base: "rsi" }), expect: "movzx eax,BYTE PTR [rsi]" },
  {
    emit: (a) => a.loadByteZx("rdi", { base: "r12", index: "rcx" }),
    expect: "movzx edi,BYTE PTR [r12+rcx*1]",
  },
  {
    emit: (a) => a.store64({ base: "r12", index: "r13", scale: 8 }, "rax"),
    expect: "mov QWORD PTR [r12+r13*8],rax",
  },
  {
    emit: (a) => a.store64({ base: "rsp", disp: 16 }, "r15"),
    expect: "mov QWORD PTR [rsp+0x10],r15",
  },
  { emit: (a) => a.store64({ base: "rdi" }, "rcx"), expect: "mov QWORD PTR [rdi],rcx" },
  { emit: (a) => a.lea("rdi", { base: "rbx", disp: 64 }), expect: "lea rdi,[rbx+0x40]" },
  {
    emit: (a) => a.lea("r11", { base: "r12", index: "rax", scale: 4, disp: -128 }),
    expect: "lea r11,[r12+rax*4-0x80]",
  },
  { emit: (a) => a.addImm("rbx", 64), expect: "add rbx,0x40" },
  { emit: (a) => a.addImm("rax", 0x1000), expect: "add rax,0x1000" },
  { emit: (a) => a.addImm("r15", -1), expect: "add r15,0xffffffffffffffff" },
  { emit: (a) => a.andImm("rdi", 63), expect: "and rdi,0x3f" },
  { emit: (a) => a.andImm("r10", 63), expect: "and r10,0x3f" },
  { emit: (a) => a.andImm("rcx", 0x7fff0000), expect: "and rcx,0x7fff0000" },
  { emit: (a) => a.cmpImm64("rax", -4095), expect: "cmp rax,0xfffffffffffff001" },
  { emit: (a) => a.cmpImm64("r9", 5), expect: "cmp r9,0x5" },
  { emit: (a) => a.cmpImm32("rax", 0xffffffff), expect: "cmp eax,0xffffffff" },
  { emit: (a) => a.cmpImm32("rax", 0xfffffffe), expect: "cmp eax,0xfffffffe" },
  { emit: (a) => a.cmpImm32("r13", 0xff), expect: "cmp r13d,0xff" },
  { emit: (a) => a.cmpImm32("rdx", 0x12345678), expect: "cmp edx,0x12345678" },
  { emit: (a) => a.testImm32("r13", 1), expect: "test r13d,0x1" },
  { emit: (a) => a.testImm32("rax", 0x20), expect: "test eax,0x20" },
  { emit: (a) => a.testReg("rax", "rax"), expect: "test rax,rax" },
  { emit: (a) => a.testReg("r9", "rbx"), expect: "test r9,rbx" },
  { emit: (a) => a.xor32("rax", "rax"), expect: "xor eax,eax" },
  { emit: (a) => a.xor32("r11", "r11"), expect: "xor r11d,r11d" },
  { emit: (a) => a.syscall(), expect: "syscall" },
  { emit: (a) => a.int3(), expect: "int3" },
  { emit: (a) => a.repMovsb(), expect: "rep movs BYTE PTR es:[rdi],BYTE PTR ds:[rsi]" },
  { emit: (a) => a.cld(), expect: "cld" },
  // Branches: backward to the case start, forward past itself.
  { emit: (a) => a.label("t").jmp("t"), expect: (at) => `jmp ${h(at)}` },
  { emit: (a) => a.jmp("f").label("f"), expect: (at) => `jmp ${h(at + 5)}` },
  ...(Object.keys(COND) as Cond[]).map((c) => ({
    emit: (a: Asm) => a.jcc(c, "f").label("f"),
    expect: (at: number) => `j${c} ${h(at + 6)}`,
  })),
];

Deno.test("x86: every encoding disassembles to the expected instruction", async () => {
  const chunks: Uint8Array[] = [];
  const offsets: number[] = [];
  let at = 0;
  for (const c of cases) {
    const a = new Asm();
    c.emit(a);
    const b = a.bytes();
    // Branch cases resolve relative to their own start: rebase by emitting at `at`.
    offsets.push(at);
    chunks.push(b);
    at += b.length;
  }
  const all = new Uint8Array(at);
  chunks.forEach((c, i) => all.set(c, offsets[i]));
  const dis = await objdump(all);
  const failures: string[] = [];
  cases.forEach((c, i) => {
    const want = typeof c.expect === "string" ? c.expect : c.expect(offsets[i]);
    const got = dis.get(offsets[i]);
    if (got !== want) failures.push(`case ${i} @${h(offsets[i])}: want "${want}", got "${got}"`);
    // The next case must start exactly where this one ends (lengths agree with objdump).
    const end = offsets[i] + chunks[i].length;
    if (i + 1 < cases.length && !dis.has(end)) failures.push(`case ${i}: length mismatch`);
  });
  assertEquals(failures, []);
});

Deno.test("x86: a backward jcc lands on its label", async () => {
  const a = new Asm().label("back").syscall().jcc("ne", "back").jmp("back");
  const dis = await objdump(a.bytes());
  assertEquals(dis.get(2), "jne 0x0");
  assertEquals(dis.get(8), "jmp 0x0");
});

Deno.test("x86: misuse is rejected", () => {
  assertThrows(() => new Asm().jmp("nowhere").bytes(), "undefined label");
  assertThrows(() => new Asm().label("x").label("x"), "twice");
  assertThrows(() => new Asm().load64("rax", { base: "rax", index: "rsp" }), "index");
  assertThrows(() => new Asm().addImm("rax", 0x80000000), "32-bit");
  assertThrows(() => new Asm().load64("rax", { base: "rax", disp: 2 ** 31 }), "32-bit");
});

// ---------------------------------------------------------------------------
// The stub code itself

Deno.test("stub: fixed size, no stack use, every byte decodes", async () => {
  const a = buildStub({ base: BASE, slotsAddress: 1n, mainProgram: 2n, standaloneProgram: 3n });
  const b = buildStub({
    base: 0x7f0000000000n,
    slotsAddress: 0x7f0000001000n,
    mainProgram: 0x7f0000002000n,
    standaloneProgram: 0x7f0000003000n,
  });
  assertEquals(a.code.length, STUB_SIZE);
  assertEquals(b.code.length, STUB_SIZE);
  const dis = await objdump(a.code);
  const text = [...dis.values()].join("\n");
  assert(!text.includes("(bad)"), text);
  assert(!/\b(push|pop|call|ret|leave|enter)\b|rsp|esp/.test(text), text);
  assertEquals(dis.get(Number(a.doneRip - BASE) - 1), "int3");
  assertEquals(dis.get(Number(a.failRip - BASE) - 1), "int3");
  assert(a.doneRip !== a.failRip);
  assertMatch(dis.get(Number(a.entryRestore - BASE))!, /^movabs rbx,0x2$/);
  assertMatch(dis.get(Number(a.entryStandalone - BASE))!, /^movabs rbx,0x3$/);
  assertMatch(dis.get(Number(a.resumeRip - BASE))!, /^movabs r12,0x1$/);
});

// ---------------------------------------------------------------------------
// Programs

function sampleProgram(base: bigint): BuiltProgram {
  const p = new ProgramBuilder(base);
  const path = p.cstring("/etc/hostname");
  const buf = p.reserve(256, 16);
  p.op(SYS.openat, [-100, path, 0o2000000, 0], { store: 0, comment: "open the file" });
  p.op(SYS.read, [slot(0), buf, 256], { store: 1 });
  p.op(SYS.write, [1, buf, slot(1)]);
  p.op(SYS.close, [slot(0)], { jumpIfZeroTo: "tail", allowFail: true });
  p.op(SYS.mmap, [0x7f0000000000n, 4096, 3, 0x32, -1, 0]);
  p.copy(slot(3), buf, 16, { store: 5 });
  p.label("tail");
  p.op(SYS.exit_group, [0], { jumpIfZeroTo: 0 });
  p.op(0xabcd, [1, 2, 3, 4, 5, 0xffffffffffffffffn], { store: 63 });
  p.end("done");
  return p.build();
}

Deno.test("program: encode/decode round trip", () => {
  const base = 0x55550000n;
  const built = sampleProgram(base);
  const decoded = decodeProgram(built.bytes, base);
  const strip = (ops: Op[]) => ops.map(({ comment: _, ...rest }) => rest);
  assertEquals(decoded, strip(built.ops));
  assertEquals(decoded.length, 9);
  assertEquals(decoded[3].jumpIfZeroTo, 6);
  assertEquals(decoded[4].args[4], 0xffffffffffffffffn);
  assertEquals(decoded[5].nr, OP_COPY);
  assertEquals(decoded[8].nr, OP_END);
  // The built ops as given (they are decoded from the encoding, with the comments kept aside).
  assertEquals(built.ops[0], {
    nr: SYS.openat,
    args: [0xffffffffffffff9cn, built.dataAddress, 0o2000000n, 0n, 0n, 0n],
    store: 0,
    comment: "open the file",
  });
  assertEquals(built.ops[1], {
    nr: SYS.read,
    args: [0n, built.dataAddress + 16n, 256n, 0n, 0n, 0n],
    argSlots: [0],
    store: 1,
  });
  assertEquals(built.ops[3], {
    nr: SYS.close,
    args: [0n, 0n, 0n, 0n, 0n, 0n],
    argSlots: [0],
    allowFail: true,
    jumpIfZeroTo: 6,
  });
  assertEquals(built.ops[5].argSlots, [0]);
  assertEquals(built.ops[7].args[5], 0xffffffffffffffffn);
  assertEquals(built.ops[8], { nr: OP_END, args: [0n, 0n, 0n, 0n, 0n, 0n], comment: "done" });
  const hdr = readProgramHeader(built.bytes);
  assertEquals(hdr.opCount, 9);
  assertEquals(hdr.opsAddress, built.opsAddress);
  assertEquals(Number(built.opsAddress % 64n), 0);
  assertEquals(built.end, base + BigInt(built.bytes.length));
  // Raw encoding of op #1: read(slot0, buf, slot store 1).
  const v = new DataView(built.bytes.buffer);
  const at1 = Number(built.opsAddress - base) + 64;
  assertEquals(v.getUint32(at1, true), SYS.read);
  assertEquals(v.getUint8(at1 + 4), 0b1);
  assertEquals(v.getUint8(at1 + 5), 1);
  assertEquals(v.getUint8(at1 + 6), 0);
  const at3 = Number(built.opsAddress - base) + 3 * 64;
  assertEquals(v.getUint8(at3 + 5), 0xff);
  assertEquals(v.getUint8(at3 + 6), 3);
  assertEquals(v.getBigUint64(at3 + 56, true), built.opsAddress + 6n * 64n);
});

Deno.test("program: decoding checks base, magic and jump targets", () => {
  const built = sampleProgram(0x55550000n);
  assertThrows(() => decodeProgram(built.bytes, 0x55560000n), "built for");
  const bad = built.bytes.slice();
  bad[0] = 0;
  assertThrows(() => decodeProgram(bad, 0x55550000n), "magic");
  const badJump = built.bytes.slice();
  const at3 = Number(built.opsAddress - built.base) + 3 * 64;
  new DataView(badJump.buffer).setBigUint64(at3 + 56, built.opsAddress + 7n, true);
  assertThrows(() => decodeProgram(badJump, 0x55550000n), "not an op");
});

Deno.test("program: builder misuse is rejected", () => {
  const p = new ProgramBuilder(0x10000n);
  assertThrows(() => slot(64), "out of range");
  assertThrows(() => p.op(SYS.close, [1], { store: 64 }), "out of range");
  assertThrows(() => p.op(SYS.close, [1, 2, 3, 4, 5, 6, 7]), "more than 6");
  assertThrows(() => p.op(SYS.close, [2n ** 64n]), "64 bits");
  p.op(SYS.close, [1], { jumpIfZeroTo: "missing" });
  assertThrows(() => p.build(), "undefined label");
  assertThrows(() => new ProgramBuilder(0x10008n), "aligned");
});

Deno.test("program: formatOp prints like strace", () => {
  const op = (nr: number, args: (number | bigint)[], extra: Partial<Op> = {}): Op => ({
    nr,
    args: [...args, 0, 0, 0, 0, 0, 0].slice(0, 6).map((a) => BigInt.asUintN(64, BigInt(a))),
    ...extra,
  });
  assertEquals(
    formatOp(op(SYS.mmap, [0x7f0000000000n, 4096, 3, 0x32, -1, 0])),
    "mmap(0x7f0000000000, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_FIXED|MAP_ANONYMOUS, -1, 0)",
  );
  assertEquals(
    formatOp(op(SYS.pread64, [0, 0x7f0000000000n, 8192, 0x3000], { argSlots: [0] })),
    "pread64(slot[0], 0x7f0000000000, 8192, 0x3000)",
  );
  assertEquals(
    formatOp(op(SYS.close, [12345], { store: 3, allowFail: true, comment: "stray" })),
    "close(12345) -> slot[3] [may fail]  # stray",
  );
  assertEquals(formatOp(op(SYS.mprotect, [0x1000, 8192, 0])), "mprotect(0x1000, 8192, PROT_NONE)");
  assertEquals(
    formatOp(op(SYS.arch_prctl, [0x1002, 0x7f00deadb000n])),
    "arch_prctl(ARCH_SET_FS, 0x7f00deadb000)",
  );
  assertEquals(
    formatOp(op(SYS.rt_sigaction, [10, 0x2000, 0, 8])),
    "rt_sigaction(SIGUSR1, 0x2000, NULL, 8)",
  );
  assertEquals(formatOp(op(SYS.umask, [0o22])), "umask(022)");
  assertEquals(formatOp(op(sysno("dup3"), [5, 1, 0x80000])), "dup3(5, 1, O_RDONLY|O_CLOEXEC)");
  assertEquals(
    formatOp(op(SYS.prlimit64, [0, 7, 0x3000, 0])),
    "prlimit64(0, RLIMIT_NOFILE, 0x3000, NULL)",
  );
  assertEquals(
    formatOp(op(SYS.clone3, [0x4000, 88], { jumpIfZeroTo: 7 })),
    "clone3(0x4000, 88) [if 0 goto #7]",
  );
  assertEquals(
    formatOp(op(OP_COPY, [0x5000, 0, 64], { argSlots: [1] })),
    "memcpy(0x5000, slot[0], 64)",
  );
  assertEquals(formatOp(op(OP_END, [])), "END");
  assertEquals(formatOp(op(999, [1, 2])), "syscall_999(0x1, 0x2, 0, 0, 0, 0)");
});

Deno.test("program: formatProgram resolves strings from the data area", () => {
  const built = sampleProgram(0x55550000n);
  const lines = formatProgram(built.bytes, 0x55550000n);
  assertEquals(lines[0], '#0 openat(AT_FDCWD, "/etc/hostname", O_RDONLY|O_CLOEXEC, 0) -> slot[0]');
  assertEquals(lines[3], "#3 close(slot[0]) [may fail] [if 0 goto #6]");
  assertEquals(
    lines[7],
    "#7 syscall_43981(0x1, 0x2, 0x3, 0x4, 0x5, 0xffffffffffffffff) -> slot[63]",
  );
  assertEquals(lines[8], "#8 END");
  assertEquals(
    describeFailure(built.ops, built.opsAddress, built.opsAddress + 64n, -9n),
    "op #1 (read) failed: EBADF",
  );
});

// ---------------------------------------------------------------------------
// The stub, run for real

Deno.test("stub e2e: hello and exit code", async () => {
  await assertRuns((p) => {
    writeStr(p, 1, "hello from stub\n");
    p.op(SYS.exit_group, [7]);
    p.end();
  }, { stdout: "hello from stub\n", code: 7 });
});

Deno.test("stub e2e: ELF headers read cleanly", async () => {
  const boot = image((p) => p.end());
  const path = await writeExecutable(boot, boot.entryRestore);
  try {
    const out = await readelf(["-h", "-l"], path); // exits 0, nothing on stderr
    assertMatch(out, /Type:\s+EXEC/);
    assertMatch(out, /Machine:\s+Advanced Micro Devices X86-64/);
    assertMatch(out, new RegExp(`Entry point address:\\s+0x${boot.entryRestore.toString(16)}`));
    assertMatch(out, /LOAD\s+0x001000 0x0*10000000 0x0*10000000 \S+ \S+ RWE 0x1000/);
    assertMatch(out, /GNU_STACK(\s+\S+){5} RW\s/);
    assert(!/warning/i.test(out));
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("stub e2e: a failing op stops at FAIL (SIGTRAP when untraced)", async () => {
  await assertRuns((p) => {
    writeStr(p, 1, "before\n");
    p.op(SYS.close, [12345]);
    writeStr(p, 1, "after\n");
    p.op(SYS.exit_group, [0]);
    p.end();
  }, { stdout: "before\n", signal: "SIGTRAP" });
});

Deno.test("stub e2e: END stops at DONE (SIGTRAP when untraced)", async () => {
  await assertRuns((p) => {
    writeStr(p, 1, "x");
    p.end();
  }, { stdout: "x", signal: "SIGTRAP" });
});

Deno.test("stub e2e: slots carry results into later args", () =>
  withTempDir("cryo-stub-", async (dir) => {
    const file = `${dir}/content`;
    const content = "slot test content, read then written\n";
    await Deno.writeTextFile(file, content);
    await assertRuns((p) => {
      const buf = p.reserve(256);
      p.op(SYS.open, [p.cstring(file), 0, 0], { store: 0 });
      p.op(SYS.read, [slot(0), buf, 256], { store: 1 });
      p.op(SYS.write, [1, buf, slot(1)], { store: 2 });
      p.op(SYS.close, [slot(0)]);
      p.op(SYS.exit_group, [slot(2)]);
      p.end();
    }, { stdout: content, code: content.length });
  }));

Deno.test("stub e2e: COPY with literal and slot addresses", async () => {
  await assertRuns((p) => {
    const src = p.data(new TextEncoder().encode("copied bytes\n"), 1);
    const dst = p.reserve(16);
    p.copy(dst, src, 13);
    p.op(SYS.write, [1, dst, 13]);
    // An anonymous mapping whose address is only known at run time.
    p.op(SYS.mmap, [0, 4096, 3, 0x22, -1, 0], { store: 7 });
    p.copy(slot(7), src, 7, { store: 8 });
    p.op(SYS.write, [1, slot(7), 7]);
    p.op(SYS.exit_group, [slot(8)]); // COPY's result is 0
    p.end();
  }, { stdout: "copied bytes\ncopied ", code: 0 });
});

Deno.test("stub e2e: ALLOW_FAIL goes on and stores -errno", async () => {
  const boot = new BootstrapBuilder(BASE);
  const p = boot.program();
  p.op(SYS.close, [12345], { allowFail: true, store: 3 });
  p.op(SYS.write, [1, boot.slotsAddress + 3n * 8n, 8]);
  p.op(SYS.exit_group, [0]);
  p.end();
  const r = await run(boot.finish({ restore: p.build() }));
  const bytes = r.raw;
  assertEquals(r.code, 0);
  assertEquals(bytes.length, 8);
  assertEquals(new DataView(bytes.buffer).getBigInt64(0, true), -9n);
});

Deno.test("stub e2e: JUMP_IF_ZERO jumps on 0 only", async () => {
  await assertRuns((p) => {
    p.op(SYS.getpid, [], { jumpIfZeroTo: "wrong" }); // non-zero: falls through
    p.op(SYS.open, [p.cstring("/dev/null"), 0, 0], { store: 0 });
    p.op(SYS.close, [slot(0)], { jumpIfZeroTo: "jumped" }); // 0: jumps
    writeStr(p, 1, "not jumped\n");
    p.op(SYS.exit_group, [1]);
    p.label("wrong");
    writeStr(p, 1, "wrong\n");
    p.op(SYS.exit_group, [2]);
    p.label("jumped");
    writeStr(p, 1, "jumped\n");
    p.op(SYS.exit_group, [0]);
    p.end();
  }, { stdout: "jumped\n", code: 0 });
});

Deno.test("stub e2e: clone3 child takes the JUMP_IF_ZERO branch and execs", async () => {
  await assertRuns((p) => {
    // struct clone_args (CLONE_ARGS_SIZE_VER0 = 64): flags=0, exit_signal=SIGCHLD.
    const args = p.u64s([0, 0, 0, 0, 17, 0, 0, 0]);
    const echo = p.cstring("/bin/echo");
    const argv = p.u64s([p.cstring("echo"), p.cstring("child exec'd"), 0]);
    p.op(SYS.clone3, [args, 64], { store: 0, jumpIfZeroTo: "child" });
    p.op(SYS.wait4, [slot(0), 0, 0, 0]);
    writeStr(p, 1, "parent done\n");
    p.op(SYS.exit_group, [0]);
    p.end();
    p.label("child");
    p.op(SYS.execve, [echo, argv, 0]);
    p.end();
  }, { stdout: "child exec'd\nparent done\n", code: 0 });
});

Deno.test("stub e2e: the standalone entry runs its own program", async () => {
  const boot = new BootstrapBuilder(BASE);
  const standalone = messageProgram(boot.program(), "this is a cryo image\n", 1);
  const main = boot.program();
  main.op(SYS.exit_group, [7]);
  main.end();
  const img = boot.finish({ restore: main.build(), standalone });
  const s = await run(img, img.entryStandalone);
  assertEquals(s.stderr, "this is a cryo image\n");
  assertEquals(s.code, 1);
  const m = await run(img, img.entryRestore);
  assertEquals(m.code, 7);
});

Deno.test("bootstrap: layout and misuse", () => {
  const boot = new BootstrapBuilder(BASE);
  assertEquals(boot.slotsAddress % 64n, 0n);
  assert(boot.slotsAddress >= BASE + BigInt(STUB_SIZE));
  const a = boot.program();
  assertThrows(() => boot.program(), "previous");
  a.end();
  const builtA = a.build();
  assertEquals(builtA.base, boot.slotsAddress + 512n);
  const b = boot.program();
  b.end();
  const builtB = b.build();
  assertEquals(builtB.base % 64n, 0n);
  assert(builtB.base >= builtA.end);
  const img = boot.finish({ restore: builtB, standalone: builtA });
  assertEquals(img.blob.length, Number(builtB.end - BASE));
  assertEquals(
    img.blob.subarray(Number(builtA.base - BASE), Number(builtA.end - BASE)),
    builtA.bytes,
  );
  assertThrows(() => boot.finish({ restore: sampleProgram(0x10000n) }), "not built");
  assertThrows(() => new BootstrapBuilder(BASE + 8n), "page aligned");
  assertThrows(
    () => buildExecutable({ base: BASE, blob: img.blob, entry: BASE - 1n }),
    "outside",
  );
});

// ---------------------------------------------------------------------------
// Traced: what the engine sees

Deno.test("stub traced: DONE and FAIL stops, registers, resume, no stack", async () => {
  const boot = new BootstrapBuilder(BASE);
  const main = boot.program();
  main.op(SYS.ptrace, [0, /* PTRACE_TRACEME */ 0, 0, 0]);
  main.op(SYS.getpid, [], { store: 0 });
  main.op(SYS.kill, [slot(0), 19 /* SIGSTOP */]);
  const out = main.reserve(8);
  main.copy(out, boot.slotsAddress, 8); // slot 0 (our pid) -> out
  main.end();
  const mainBuilt = main.build();
  const failing = boot.program();
  failing.op(SYS.getpid, []);
  failing.op(SYS.close, [12345]);
  failing.end();
  const failBuilt = failing.build();
  const img = boot.finish({ restore: mainBuilt });
  const path = await writeExecutable(img, img.entryRestore);
  const pid = posixSpawn(path, [path]);
  let reaped = false;
  try {
    const st = waitStop(pid);
    assertEquals(st.signal, 19);
    // Run the rest with no stack at all: any stack access would fault.
    const regs0 = getRegs(pid);
    setRegs(pid, { ...regs0, rsp: 0n, rbp: 0n });
    cont(pid, 0);
    assertEquals(waitStop(pid).signal, 5);
    const done = getRegs(pid);
    assertEquals(done.rip, img.doneRip);
    assertEquals(done.rbx, mainBuilt.opsAddress + 4n * 64n);
    // Resume at another program: it fails at its op #1.
    setRegs(pid, { ...done, rip: img.resumeRip, rbx: failBuilt.opsAddress });
    cont(pid, 0);
    assertEquals(waitStop(pid).signal, 5);
    const fail = getRegs(pid);
    assertEquals(fail.rip, img.failRip);
    assertEquals(fail.rbx, failBuilt.opsAddress + 64n);
    assertEquals(BigInt.asIntN(64, fail.rax), -9n);
    assertEquals(
      describeFailure(failBuilt.ops, failBuilt.opsAddress, fail.rbx, fail.rax),
      "op #1 (close) failed: EBADF",
    );
    assertEquals(fail.rsp, 0n);
    rawSyscall(SYS.kill, pid, 9);
    const end = waitPid(pid);
    reaped = true;
    assertEquals(end.kind, "signaled");
  } catch (e) {
    if (e instanceof TraceeGoneError) reaped = true; // waitStop reaped it
    throw e;
  } finally {
    if (!reaped) {
      rawSyscall(SYS.kill, pid, 9);
      for (let i = 0; i < 100 && waitPid(pid, WNOHANG).kind === "none"; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    await Deno.remove(path);
  }
});
