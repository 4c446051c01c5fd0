/**
 * Codec for the x86-64 `struct user_regs_struct` (also the NT_PRSTATUS
 * `elf_gregset_t` order): 27 unsigned 64-bit registers, 216 bytes.
 *
 * @module
 */

/** Register names in kernel order. */
export const USER_REGS_FIELDS = [
  "r15",
  "r14",
  "r13",
  "r12",
  "rbp",
  "rbx",
  "r11",
  "r10",
  "r9",
  "r8",
  "rax",
  "rcx",
  "rdx",
  "rsi",
  "rdi",
  "orig_rax",
  "rip",
  "cs",
  "eflags",
  "rsp",
  "ss",
  "fs_base",
  "gs_base",
  "ds",
  "es",
  "fs",
  "gs",
] as const;

/** One register name. */
export type RegName = typeof USER_REGS_FIELDS[number];

/** The general registers of a thread, each an unsigned 64-bit bigint. */
export type UserRegs = Record<RegName, bigint>;

/** Size of `struct user_regs_struct` in bytes. */
export const USER_REGS_SIZE = USER_REGS_FIELDS.length * 8;

/**
 * Decodes 216 bytes into registers: one object literal of a fixed shape
 * (this runs several times per thread of a dump, mostly in cold code).
 */
export function decodeUserRegs(bytes: Uint8Array): UserRegs {
  const w = (bytes.byteOffset & 7) === 0
    ? new BigUint64Array(bytes.buffer, bytes.byteOffset, USER_REGS_FIELDS.length)
    : new BigUint64Array(bytes.slice(0, USER_REGS_SIZE).buffer);
  return {
    r15: w[0],
    r14: w[1],
    r13: w[2],
    r12: w[3],
    rbp: w[4],
    rbx: w[5],
    r11: w[6],
    r10: w[7],
    r9: w[8],
    r8: w[9],
    rax: w[10],
    rcx: w[11],
    rdx: w[12],
    rsi: w[13],
    rdi: w[14],
    orig_rax: w[15],
    rip: w[16],
    cs: w[17],
    eflags: w[18],
    rsp: w[19],
    ss: w[20],
    fs_base: w[21],
    gs_base: w[22],
    ds: w[23],
    es: w[24],
    fs: w[25],
    gs: w[26],
  };
}

/** Encodes registers into a new 216-byte buffer (each value taken modulo 2^64). */
export function encodeUserRegs(regs: UserRegs): Uint8Array<ArrayBuffer> {
  const w = new BigUint64Array(USER_REGS_FIELDS.length);
  w[0] = regs.r15;
  w[1] = regs.r14;
  w[2] = regs.r13;
  w[3] = regs.r12;
  w[4] = regs.rbp;
  w[5] = regs.rbx;
  w[6] = regs.r11;
  w[7] = regs.r10;
  w[8] = regs.r9;
  w[9] = regs.r8;
  w[10] = regs.rax;
  w[11] = regs.rcx;
  w[12] = regs.rdx;
  w[13] = regs.rsi;
  w[14] = regs.rdi;
  w[15] = regs.orig_rax;
  w[16] = regs.rip;
  w[17] = regs.cs;
  w[18] = regs.eflags;
  w[19] = regs.rsp;
  w[20] = regs.ss;
  w[21] = regs.fs_base;
  w[22] = regs.gs_base;
  w[23] = regs.ds;
  w[24] = regs.es;
  w[25] = regs.fs;
  w[26] = regs.gs;
  return new Uint8Array(w.buffer);
}

/** Interprets an unsigned register value as a signed 64-bit integer (e.g. rax = -errno). */
export function signed(v: bigint): bigint {
  return BigInt.asIntN(64, v);
}

const hex = (v: bigint) => `0x${v.toString(16)}`;

/**
 * Registers as `0x` hex strings (the JSON model form), keys in
 * {@link USER_REGS_FIELDS} order: one object literal of a fixed shape (a
 * dump runs this once per thread in its freeze; keys added one by one cost
 * three times as much there).
 */
export function regsToHex(r: UserRegs): Record<RegName, string> {
  return {
    r15: hex(r.r15),
    r14: hex(r.r14),
    r13: hex(r.r13),
    r12: hex(r.r12),
    rbp: hex(r.rbp),
    rbx: hex(r.rbx),
    r11: hex(r.r11),
    r10: hex(r.r10),
    r9: hex(r.r9),
    r8: hex(r.r8),
    rax: hex(r.rax),
    rcx: hex(r.rcx),
    rdx: hex(r.rdx),
    rsi: hex(r.rsi),
    rdi: hex(r.rdi),
    orig_rax: hex(r.orig_rax),
    rip: hex(r.rip),
    cs: hex(r.cs),
    eflags: hex(r.eflags),
    rsp: hex(r.rsp),
    ss: hex(r.ss),
    fs_base: hex(r.fs_base),
    gs_base: hex(r.gs_base),
    ds: hex(r.ds),
    es: hex(r.es),
    fs: hex(r.fs),
    gs: hex(r.gs),
  };
}

/** Registers from `0x` hex strings. */
export function regsFromHex(hex: Record<string, string>): UserRegs {
  const regs = {} as UserRegs;
  for (const f of USER_REGS_FIELDS) {
    if (hex[f] === undefined) throw new Error(`register ${f} missing`);
    regs[f] = BigInt(hex[f]);
  }
  return regs;
}

/**
 * The registers that make a thread run syscall `nr` with `args` at the
 * `syscall` instruction `rip` (and on stack `rsp` if given), from its
 * registers `base`: no syscall to restart (orig_rax -1), trap flag off.
 */
export function syscallRegs(
  base: UserRegs,
  nr: number,
  args: readonly (number | bigint)[],
  rip: bigint,
  rsp: bigint = base.rsp,
): UserRegs {
  const a = args.map((x) => BigInt.asUintN(64, BigInt(x)));
  while (a.length < 6) a.push(0n);
  return {
    ...base,
    rax: BigInt(nr),
    orig_rax: 0xffffffffffffffffn,
    rip,
    rsp,
    rdi: a[0],
    rsi: a[1],
    rdx: a[2],
    r10: a[3],
    r8: a[4],
    r9: a[5],
    eflags: base.eflags & ~0x100n,
  };
}
