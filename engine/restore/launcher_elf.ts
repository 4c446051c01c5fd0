/**
 * A minimal static ELF64 executable around one blob: `ET_EXEC`, `EM_X86_64`,
 * no interpreter, no sections, two program headers:
 *
 * - `PT_LOAD` RWX at `base` with the blob at file offset 0x1000
 *   (`p_memsz` may exceed the blob: the rest is zero-filled);
 * - `PT_GNU_STACK` RW (non-executable stack).
 *
 * Used for the standalone stub test and for the restore launcher (a blob
 * from {@link ./stub.ts BootstrapBuilder} whose entry is `entryRestore`).
 *
 * ```
 * 0x0000  ELF header (64)
 * 0x0040  program headers (2 × 56)
 * 0x1000  blob (mapped at base)
 * ```
 *
 * @module
 */

/** Page size assumed for alignment. */
export const PAGE_SIZE = 0x1000;
/** File offset of the blob. */
export const BLOB_FILE_OFFSET = 0x1000;

const ELF_HEADER_SIZE = 64;
const PHDR_SIZE = 56;
const PT_LOAD = 1;
const PT_GNU_STACK = 0x6474e551;
const PF_X = 1;
const PF_W = 2;
const PF_R = 4;
const ET_EXEC = 2;
const EM_X86_64 = 62;

/** Input of {@link buildExecutable}. */
export interface ExecutableSpec {
  /** Load address of the blob; page aligned, at or above 64 KiB. */
  base: bigint;
  /** Bytes mapped at `base`. */
  blob: Uint8Array;
  /** Entry point address (inside the blob). */
  entry: bigint;
  /** Size of the mapping (default: blob size); extra bytes are zero. */
  memSize?: number;
}

/** Builds the executable's bytes. */
export function buildExecutable(spec: ExecutableSpec): Uint8Array {
  const { base, blob, entry } = spec;
  const memSize = spec.memSize ?? blob.length;
  if (base % BigInt(PAGE_SIZE) !== 0n) {
    throw new Error(`base 0x${base.toString(16)} not page aligned`);
  }
  if (base < 0x10000n) throw new Error("base below mmap_min_addr (64 KiB)");
  if (base + BigInt(memSize) > 0x7fffffffe000n) throw new Error("segment beyond user space");
  if (memSize < blob.length) throw new Error("memSize smaller than the blob");
  if (entry < base || entry >= base + BigInt(blob.length)) {
    throw new Error(`entry 0x${entry.toString(16)} outside the blob`);
  }
  const out = new Uint8Array(BLOB_FILE_OFFSET + blob.length);
  const v = new DataView(out.buffer);
  // e_ident
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, /* 64-bit */ 1, /* LE */ 1, /* version */ 0 /* SYSV */]);
  v.setUint16(16, ET_EXEC, true);
  v.setUint16(18, EM_X86_64, true);
  v.setUint32(20, 1, true); // e_version
  v.setBigUint64(24, entry, true);
  v.setBigUint64(32, BigInt(ELF_HEADER_SIZE), true); // e_phoff
  v.setBigUint64(40, 0n, true); // e_shoff
  v.setUint32(48, 0, true); // e_flags
  v.setUint16(52, ELF_HEADER_SIZE, true);
  v.setUint16(54, PHDR_SIZE, true);
  v.setUint16(56, 2, true); // e_phnum
  v.setUint16(58, 64, true); // e_shentsize
  v.setUint16(60, 0, true); // e_shnum
  v.setUint16(62, 0, true); // e_shstrndx

  let ph = ELF_HEADER_SIZE;
  v.setUint32(ph, PT_LOAD, true);
  v.setUint32(ph + 4, PF_R | PF_W | PF_X, true);
  v.setBigUint64(ph + 8, BigInt(BLOB_FILE_OFFSET), true);
  v.setBigUint64(ph + 16, base, true); // p_vaddr
  v.setBigUint64(ph + 24, base, true); // p_paddr
  v.setBigUint64(ph + 32, BigInt(blob.length), true);
  v.setBigUint64(ph + 40, BigInt(memSize), true);
  v.setBigUint64(ph + 48, BigInt(PAGE_SIZE), true);

  ph += PHDR_SIZE;
  v.setUint32(ph, PT_GNU_STACK, true);
  v.setUint32(ph + 4, PF_R | PF_W, true);
  v.setBigUint64(ph + 48, 16n, true);

  out.set(blob, BLOB_FILE_OFFSET);
  return out;
}
