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

/** Decodes 216 bytes into registers. */
export function decodeUserRegs(bytes: Uint8Array): UserRegs {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, USER_REGS_SIZE);
  const regs = {} as UserRegs;
  USER_REGS_FIELDS.forEach((f, i) => regs[f] = dv.getBigUint64(i * 8, true));
  return regs;
}

/** Encodes registers into a new 216-byte buffer. */
export function encodeUserRegs(regs: UserRegs): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(USER_REGS_SIZE);
  const dv = new DataView(out.buffer);
  USER_REGS_FIELDS.forEach((f, i) => dv.setBigUint64(i * 8, BigInt.asUintN(64, regs[f]), true));
  return out;
}

/** Interprets an unsigned register value as a signed 64-bit integer (e.g. rax = -errno). */
export function signed(v: bigint): bigint {
  return BigInt.asIntN(64, v);
}

/** Registers as `0x` hex strings (the JSON model form). */
export function regsToHex(regs: UserRegs): Record<RegName, string> {
  const out = {} as Record<RegName, string>;
  for (const f of USER_REGS_FIELDS) out[f] = `0x${regs[f].toString(16)}`;
  return out;
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
