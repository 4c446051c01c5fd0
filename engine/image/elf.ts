/**
 * ELF64 little-endian building blocks: constants, encoders and decoders for
 * the file header, program headers, section headers, notes and string
 * tables. Nothing here knows about cryo; see writer.ts / reader.ts / core.ts.
 *
 * Offsets and sizes inside a file are `number` (files stay below 2^53
 * bytes); virtual addresses are `bigint`.
 *
 * @module
 */

import { ImageFormatError } from "./errors.ts";

/** Size of a page; images and cores align data to it. */
export const PAGE_SIZE = 4096;

/** e_ident[EI_CLASS] for 64-bit objects. */
export const ELFCLASS64 = 2;
/** e_ident[EI_DATA] for little-endian objects. */
export const ELFDATA2LSB = 1;
/** The only ELF version. */
export const EV_CURRENT = 1;
/** e_ident[EI_OSABI] "UNIX System V", what Linux binaries and cores use. */
export const ELFOSABI_SYSV = 0;

/** Executable file (what the kernel execs; cryo images). */
export const ET_EXEC = 2;
/** Core file (what `export-core` writes). */
export const ET_CORE = 4;
/** AMD x86-64. */
export const EM_X86_64 = 62;

/** Loadable segment. */
export const PT_LOAD = 1;
/** Notes segment. */
export const PT_NOTE = 4;
/** Stack executability marker. */
export const PT_GNU_STACK = 0x6474e551;

/** Segment permission: execute. */
export const PF_X = 1;
/** Segment permission: write. */
export const PF_W = 2;
/** Segment permission: read. */
export const PF_R = 4;

/** Section type: inactive. */
export const SHT_NULL = 0;
/** Section type: program-defined contents. */
export const SHT_PROGBITS = 1;
/** Section type: string table. */
export const SHT_STRTAB = 3;
/** Section type: notes. */
export const SHT_NOTE = 7;

/** Section flag: writable. */
export const SHF_WRITE = 1;
/** Section flag: occupies memory at run time. */
export const SHF_ALLOC = 2;
/** Section flag: executable. */
export const SHF_EXECINSTR = 4;

/** e_phnum value meaning "the real count is in section 0's sh_info". */
export const PN_XNUM = 0xffff;

/** sizeof(Elf64_Ehdr). */
export const EHDR_SIZE = 64;
/** sizeof(Elf64_Phdr). */
export const PHDR_SIZE = 56;
/** sizeof(Elf64_Shdr). */
export const SHDR_SIZE = 64;

/** Rounds `n` up to a multiple of `align` (a power of two or any positive integer). */
export function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

/** The fields of Elf64_Ehdr that vary (e_ident is always ELF64/LSB/SYSV). */
export interface ElfHeader {
  type: number;
  machine: number;
  entry: bigint;
  phoff: number;
  shoff: number;
  flags: number;
  phnum: number;
  shnum: number;
  shstrndx: number;
}

/** One Elf64_Phdr. */
export interface ProgramHeader {
  type: number;
  flags: number;
  offset: number;
  vaddr: bigint;
  paddr: bigint;
  filesz: number;
  memsz: number;
  align: number;
}

/** One Elf64_Shdr (name is the offset into .shstrtab). */
export interface SectionHeader {
  name: number;
  type: number;
  flags: number;
  addr: bigint;
  offset: number;
  size: number;
  link: number;
  info: number;
  addralign: number;
  entsize: number;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Encodes an ELF64 little-endian file header (64 bytes). */
export function encodeEhdr(h: ElfHeader): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(EHDR_SIZE);
  const v = view(b);
  b.set([0x7f, 0x45, 0x4c, 0x46, ELFCLASS64, ELFDATA2LSB, EV_CURRENT, ELFOSABI_SYSV], 0);
  v.setUint16(16, h.type, true);
  v.setUint16(18, h.machine, true);
  v.setUint32(20, EV_CURRENT, true);
  v.setBigUint64(24, h.entry, true);
  v.setBigUint64(32, BigInt(h.phoff), true);
  v.setBigUint64(40, BigInt(h.shoff), true);
  v.setUint32(48, h.flags, true);
  v.setUint16(52, EHDR_SIZE, true);
  v.setUint16(54, PHDR_SIZE, true);
  v.setUint16(56, h.phnum, true);
  v.setUint16(58, h.shnum ? SHDR_SIZE : 0, true);
  v.setUint16(60, h.shnum, true);
  v.setUint16(62, h.shstrndx, true);
  return b;
}

/** The raw e_ident and sizes of a decoded header, for validation. */
export interface DecodedElfHeader extends ElfHeader {
  ident: Uint8Array;
  version: number;
  ehsize: number;
  phentsize: number;
  shentsize: number;
}

/** Decodes an ELF64 little-endian file header; throws {@link ImageFormatError} on bad magic/class/endianness. */
export function decodeEhdr(bytes: Uint8Array, path = ""): DecodedElfHeader {
  if (bytes.length < EHDR_SIZE) {
    throw new ImageFormatError(path, `file too short for an ELF header (${bytes.length} bytes)`);
  }
  if (bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c || bytes[3] !== 0x46) {
    throw new ImageFormatError(path, "not an ELF file (bad magic)");
  }
  if (bytes[4] !== ELFCLASS64) {
    throw new ImageFormatError(path, `not ELF64 (EI_CLASS=${bytes[4]})`);
  }
  if (bytes[5] !== ELFDATA2LSB) {
    throw new ImageFormatError(path, `not little-endian (EI_DATA=${bytes[5]})`);
  }
  const v = view(bytes);
  return {
    ident: bytes.slice(0, 16),
    type: v.getUint16(16, true),
    machine: v.getUint16(18, true),
    version: v.getUint32(20, true),
    entry: v.getBigUint64(24, true),
    phoff: safeNumber(v.getBigUint64(32, true), "e_phoff", path),
    shoff: safeNumber(v.getBigUint64(40, true), "e_shoff", path),
    flags: v.getUint32(48, true),
    ehsize: v.getUint16(52, true),
    phentsize: v.getUint16(54, true),
    phnum: v.getUint16(56, true),
    shentsize: v.getUint16(58, true),
    shnum: v.getUint16(60, true),
    shstrndx: v.getUint16(62, true),
  };
}

function safeNumber(x: bigint, what: string, path: string): number {
  if (x > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ImageFormatError(path, `${what} out of range (0x${x.toString(16)})`);
  }
  return Number(x);
}

/** Encodes one program header (56 bytes). */
export function encodePhdr(p: ProgramHeader): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(PHDR_SIZE);
  const v = view(b);
  v.setUint32(0, p.type, true);
  v.setUint32(4, p.flags, true);
  v.setBigUint64(8, BigInt(p.offset), true);
  v.setBigUint64(16, p.vaddr, true);
  v.setBigUint64(24, p.paddr, true);
  v.setBigUint64(32, BigInt(p.filesz), true);
  v.setBigUint64(40, BigInt(p.memsz), true);
  v.setBigUint64(48, BigInt(p.align), true);
  return b;
}

/** Decodes one program header from 56 bytes. */
export function decodePhdr(bytes: Uint8Array, path = ""): ProgramHeader {
  const v = view(bytes);
  return {
    type: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    offset: safeNumber(v.getBigUint64(8, true), "p_offset", path),
    vaddr: v.getBigUint64(16, true),
    paddr: v.getBigUint64(24, true),
    filesz: safeNumber(v.getBigUint64(32, true), "p_filesz", path),
    memsz: safeNumber(v.getBigUint64(40, true), "p_memsz", path),
    align: safeNumber(v.getBigUint64(48, true), "p_align", path),
  };
}

/** Encodes one section header (64 bytes). */
export function encodeShdr(s: SectionHeader): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(SHDR_SIZE);
  const v = view(b);
  v.setUint32(0, s.name, true);
  v.setUint32(4, s.type, true);
  v.setBigUint64(8, BigInt(s.flags), true);
  v.setBigUint64(16, s.addr, true);
  v.setBigUint64(24, BigInt(s.offset), true);
  v.setBigUint64(32, BigInt(s.size), true);
  v.setUint32(40, s.link, true);
  v.setUint32(44, s.info, true);
  v.setBigUint64(48, BigInt(s.addralign), true);
  v.setBigUint64(56, BigInt(s.entsize), true);
  return b;
}

/** Decodes one section header from 64 bytes. */
export function decodeShdr(bytes: Uint8Array, path = ""): SectionHeader {
  const v = view(bytes);
  return {
    name: v.getUint32(0, true),
    type: v.getUint32(4, true),
    flags: safeNumber(v.getBigUint64(8, true), "sh_flags", path),
    addr: v.getBigUint64(16, true),
    offset: safeNumber(v.getBigUint64(24, true), "sh_offset", path),
    size: safeNumber(v.getBigUint64(32, true), "sh_size", path),
    link: v.getUint32(40, true),
    info: v.getUint32(44, true),
    addralign: safeNumber(v.getBigUint64(48, true), "sh_addralign", path),
    entsize: safeNumber(v.getBigUint64(56, true), "sh_entsize", path),
  };
}

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Encodes one ELF note: namesz, descsz, type, then the NUL-terminated owner
 * name and the descriptor, each padded to 4 bytes (the Linux core layout).
 */
export function encodeNote(owner: string, type: number, desc: Uint8Array): Uint8Array<ArrayBuffer> {
  const name = utf8.encode(owner);
  const namesz = name.length + 1;
  const out = new Uint8Array(12 + alignUp(namesz, 4) + alignUp(desc.length, 4));
  const v = view(out);
  v.setUint32(0, namesz, true);
  v.setUint32(4, desc.length, true);
  v.setUint32(8, type, true);
  out.set(name, 12);
  out.set(desc, 12 + alignUp(namesz, 4));
  return out;
}

/** One note as found in a notes area. */
export interface RawNote {
  /** Owner name without its NUL ("CORE", "LINUX", "CRYO"). */
  owner: string;
  type: number;
  /** The descriptor bytes. */
  desc: Uint8Array;
  /** Offset of the note header within the decoded area. */
  offset: number;
  /** Offset of the descriptor within the decoded area. */
  descOffset: number;
}

/**
 * Decodes a sequence of 4-byte-aligned notes. Throws {@link ImageFormatError}
 * when a note runs past the end of the area or has a malformed name.
 */
export function decodeNotes(area: Uint8Array, path = ""): RawNote[] {
  const v = view(area);
  const notes: RawNote[] = [];
  let off = 0;
  while (off < area.length) {
    if (area.length - off < 12) {
      throw new ImageFormatError(path, `truncated note header at notes+${off}`);
    }
    const namesz = v.getUint32(off, true);
    const descsz = v.getUint32(off + 4, true);
    const type = v.getUint32(off + 8, true);
    const nameStart = off + 12;
    const descStart = nameStart + alignUp(namesz, 4);
    const end = descStart + alignUp(descsz, 4);
    if (end > area.length) {
      throw new ImageFormatError(
        path,
        `note at notes+${off} (namesz=${namesz}, descsz=${descsz}) runs past the notes area`,
      );
    }
    let owner = "";
    if (namesz > 0) {
      if (area[nameStart + namesz - 1] !== 0) {
        throw new ImageFormatError(path, `note at notes+${off} has an unterminated owner name`);
      }
      try {
        owner = utf8Decoder.decode(area.subarray(nameStart, nameStart + namesz - 1));
      } catch {
        throw new ImageFormatError(path, `note at notes+${off} has a non-UTF-8 owner name`);
      }
    }
    notes.push({
      owner,
      type,
      desc: area.subarray(descStart, descStart + descsz),
      offset: off,
      descOffset: descStart,
    });
    off = end;
  }
  return notes;
}

/** Builds a string table (".shstrtab" style): index 0 is the empty string. */
export class StringTable {
  #parts: Uint8Array[] = [new Uint8Array(1)];
  #size = 1;
  #index = new Map<string, number>([["", 0]]);

  /** Adds `s` (once) and returns its offset. */
  add(s: string): number {
    const known = this.#index.get(s);
    if (known !== undefined) return known;
    const at = this.#size;
    const bytes = utf8.encode(s + "\0");
    this.#parts.push(bytes);
    this.#size += bytes.length;
    this.#index.set(s, at);
    return at;
  }

  /** The table bytes. */
  bytes(): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(this.#size);
    let off = 0;
    for (const p of this.#parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }
}

/** Reads the NUL-terminated string at `offset` of a string table (undefined if out of range or unterminated). */
export function stringAt(table: Uint8Array, offset: number): string | undefined {
  if (offset >= table.length) return undefined;
  const end = table.indexOf(0, offset);
  if (end < 0) return undefined;
  return new TextDecoder().decode(table.subarray(offset, end));
}

/** Concatenates byte arrays. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
