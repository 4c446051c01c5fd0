/**
 * Core notes (the ones Linux writes into core dumps, so readelf and gdb
 * understand a cryo image or an exported core) and cryo's own notes.
 *
 * Byte layouts are those of the x86-64 Linux kernel: `struct elf_prstatus`
 * (336 bytes), `struct elf_prpsinfo` (136 bytes), `user_i387_struct`
 * (512 bytes), the XSAVE area, `siginfo_t` (128 bytes), auxv pairs and the
 * NT_FILE table. docs/IMAGE-FORMAT.md documents every field.
 *
 * @module
 */

import { USER_REGS_FIELDS } from "../../ffi/regs.ts";
import { threadXsave } from "./thread_xsave.ts";
import { type Hex, IMAGE_FORMAT_VERSION, type Mapping, type ProcessImage } from "../model.ts";
import { concatBytes, encodeNote, PAGE_SIZE } from "./elf.ts";
import { ImageFormatError } from "./errors.ts";
import { encodeMappingNote } from "./mapping_note.ts";

/** Owner of the standard core notes. */
export const OWNER_CORE = "CORE";
/** Owner of NT_X86_XSTATE (and other regset notes the kernel names "LINUX"). */
export const OWNER_LINUX = "LINUX";
/** Owner of cryo's own notes. */
export const OWNER_CRYO = "CRYO";

/** struct elf_prstatus: signal info, ids, times and the general registers. */
export const NT_PRSTATUS = 1;
/** user_i387_struct (the FXSAVE area); readelf calls it NT_FPREGSET. */
export const NT_PRFPREG = 2;
/** struct elf_prpsinfo: process state, name and arguments. */
export const NT_PRPSINFO = 3;
/** The auxiliary vector. */
export const NT_AUXV = 6;
/** siginfo_t of the signal that "caused" the dump. */
export const NT_SIGINFO = 0x53494749;
/** Table of file-backed mappings. */
export const NT_FILE = 0x46494c45;
/** The full XSAVE area (owner "LINUX"). */
export const NT_X86_XSTATE = 0x202;

/** CRYO note: the ProcessImage as UTF-8 JSON. */
export const NT_CRYO_PROCESS = 1;
/** CRYO note: the image format version, u32 little-endian. */
export const NT_CRYO_VERSION = 2;
/** CRYO note: the common mapping records as binary columns (engine/image/mapping_note.ts). */
export const NT_CRYO_MAPPINGS = 3;

/** sizeof(struct elf_prstatus) on x86-64. */
export const PRSTATUS_SIZE = 336;
/** sizeof(struct elf_prpsinfo) on x86-64. */
export const PRPSINFO_SIZE = 136;
/** sizeof(user_i387_struct), the FXSAVE legacy area. */
export const FPREGS_SIZE = 512;
/** sizeof(siginfo_t). */
export const SIGINFO_SIZE = 128;
/** Offset of pr_reg in struct elf_prstatus. */
export const PRSTATUS_REG_OFFSET = 112;

/** SIGSTOP on x86-64 Linux. */
export const SIGSTOP = 19;

/**
 * user_regs_struct field names in kernel order; also the order of
 * elf_gregset_t (pr_reg) and the keys of {@link ThreadState.regs}.
 */
export { USER_REGS_FIELDS };

/** Human name of a note type for an owner, as readelf prints it for core files. */
export function noteTypeName(owner: string, type: number): string {
  if (owner === OWNER_CRYO) {
    if (type === NT_CRYO_PROCESS) return "NT_CRYO_PROCESS";
    if (type === NT_CRYO_VERSION) return "NT_CRYO_VERSION";
    if (type === NT_CRYO_MAPPINGS) return "NT_CRYO_MAPPINGS";
  } else if (owner === OWNER_CORE || owner === OWNER_LINUX) {
    switch (type) {
      case NT_PRSTATUS:
        return "NT_PRSTATUS";
      case NT_PRFPREG:
        return "NT_FPREGSET";
      case NT_PRPSINFO:
        return "NT_PRPSINFO";
      case NT_AUXV:
        return "NT_AUXV";
      case NT_SIGINFO:
        return "NT_SIGINFO";
      case NT_FILE:
        return "NT_FILE";
      case NT_X86_XSTATE:
        return "NT_X86_XSTATE";
    }
  }
  return `0x${type.toString(16)}`;
}

/** Converts a model hex string (or number) to an unsigned 64-bit bigint. */
export function hexToBigInt(h: Hex | number | undefined): bigint {
  if (h === undefined || h === "") return 0n;
  const v = typeof h === "number" ? BigInt(h) : BigInt(h);
  return BigInt.asUintN(64, v);
}

/** Formats a bigint as a model hex string ("0x1f"). */
export function bigIntToHex(v: bigint): Hex {
  return `0x${BigInt.asUintN(64, v).toString(16)}`;
}

/** Encodes bytes as standard base64. */
export function bytesToBase64(bytes: Uint8Array): string {
  return bytes.toBase64();
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A time value of struct elf_prstatus (struct timeval). */
export interface TimeVal {
  sec: number;
  usec: number;
}

/** The decoded contents of an NT_PRSTATUS note. */
export interface PrStatus {
  /** pr_info.si_signo. */
  signo: number;
  /** pr_info.si_code. */
  code: number;
  /** pr_info.si_errno. */
  errno: number;
  /** pr_cursig: the current signal. */
  cursig: number;
  /** pr_sigpend: pending signals bitmask (bit n-1 = signal n). */
  sigpend: bigint;
  /** pr_sighold: blocked signals bitmask. */
  sighold: bigint;
  /** pr_pid: the thread id. */
  pid: number;
  ppid: number;
  pgrp: number;
  sid: number;
  utime: TimeVal;
  stime: TimeVal;
  cutime: TimeVal;
  cstime: TimeVal;
  /** pr_reg as user_regs_struct field names -> hex. */
  regs: Record<string, Hex>;
  /** pr_fpvalid: 1 when an FPU state note follows. */
  fpvalid: number;
}

/** Input of {@link encodePrstatus}; times default to zero. */
export interface PrStatusInput {
  cursig: number;
  sigpend: bigint;
  sighold: bigint;
  pid: number;
  ppid: number;
  pgrp: number;
  sid: number;
  regs: Record<string, Hex>;
  fpvalid: boolean;
}

/** Encodes struct elf_prstatus (336 bytes). Missing registers are written as 0. */
export function encodePrstatus(p: PrStatusInput): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(PRSTATUS_SIZE);
  const v = view(b);
  v.setInt32(0, p.cursig, true); // pr_info.si_signo
  v.setInt16(12, p.cursig, true); // pr_cursig
  v.setBigUint64(16, BigInt.asUintN(64, p.sigpend), true);
  v.setBigUint64(24, BigInt.asUintN(64, p.sighold), true);
  v.setInt32(32, p.pid, true);
  v.setInt32(36, p.ppid, true);
  v.setInt32(40, p.pgrp, true);
  v.setInt32(44, p.sid, true);
  USER_REGS_FIELDS.forEach((name, i) => {
    v.setBigUint64(PRSTATUS_REG_OFFSET + 8 * i, hexToBigInt(p.regs[name]), true);
  });
  v.setInt32(328, p.fpvalid ? 1 : 0, true);
  return b;
}

/** Decodes an NT_PRSTATUS descriptor; throws {@link ImageFormatError} when it has the wrong size. */
export function decodePrstatus(desc: Uint8Array): PrStatus {
  if (desc.length !== PRSTATUS_SIZE) {
    throw new ImageFormatError(
      "",
      `NT_PRSTATUS has ${desc.length} bytes, expected ${PRSTATUS_SIZE}`,
    );
  }
  const v = view(desc);
  const tv = (off: number): TimeVal => ({
    sec: Number(v.getBigInt64(off, true)),
    usec: Number(v.getBigInt64(off + 8, true)),
  });
  const regs: Record<string, Hex> = {};
  USER_REGS_FIELDS.forEach((name, i) => {
    regs[name] = bigIntToHex(v.getBigUint64(PRSTATUS_REG_OFFSET + 8 * i, true));
  });
  return {
    signo: v.getInt32(0, true),
    code: v.getInt32(4, true),
    errno: v.getInt32(8, true),
    cursig: v.getInt16(12, true),
    sigpend: v.getBigUint64(16, true),
    sighold: v.getBigUint64(24, true),
    pid: v.getInt32(32, true),
    ppid: v.getInt32(36, true),
    pgrp: v.getInt32(40, true),
    sid: v.getInt32(44, true),
    utime: tv(48),
    stime: tv(64),
    cutime: tv(80),
    cstime: tv(96),
    regs,
    fpvalid: v.getInt32(328, true),
  };
}

/** The decoded contents of an NT_PRPSINFO note. */
export interface PrPsInfo {
  /** pr_state: 3 = stopped. */
  state: number;
  /** pr_sname: state letter ("T"). */
  sname: string;
  zomb: number;
  nice: number;
  flag: bigint;
  uid: number;
  gid: number;
  pid: number;
  ppid: number;
  pgrp: number;
  sid: number;
  /** pr_fname: comm (at most 15 bytes). */
  fname: string;
  /** pr_psargs: command line joined by spaces (at most 79 bytes). */
  psargs: string;
}

const utf8 = new TextEncoder();

function putCString(b: Uint8Array, off: number, size: number, s: string): void {
  b.set(utf8.encode(s).subarray(0, size - 1), off);
}

function getCString(b: Uint8Array, off: number, size: number): string {
  const field = b.subarray(off, off + size);
  const end = field.indexOf(0);
  return new TextDecoder().decode(end < 0 ? field : field.subarray(0, end));
}

/** Encodes struct elf_prpsinfo (136 bytes); strings are truncated to their fields. */
export function encodePrpsinfo(
  p: Omit<PrPsInfo, "flag" | "zomb" | "nice">,
): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(PRPSINFO_SIZE);
  const v = view(b);
  b[0] = p.state;
  b[1] = p.sname.charCodeAt(0) || 0;
  v.setUint32(16, p.uid, true);
  v.setUint32(20, p.gid, true);
  v.setInt32(24, p.pid, true);
  v.setInt32(28, p.ppid, true);
  v.setInt32(32, p.pgrp, true);
  v.setInt32(36, p.sid, true);
  putCString(b, 40, 16, p.fname);
  putCString(b, 56, 80, p.psargs);
  return b;
}

/** The NT_PRPSINFO descriptor of a stopped process `proc` (a core file's, as gdb reads it). */
export function prpsinfoOf(proc: ProcessImage): Uint8Array<ArrayBuffer> {
  return encodePrpsinfo({
    state: 3,
    sname: "T",
    uid: proc.creds.uid[0],
    gid: proc.creds.gid[0],
    pid: proc.pid,
    ppid: proc.ppid,
    pgrp: proc.pgid,
    sid: proc.sid,
    fname: proc.comm,
    psargs: proc.cmdline.join(" "),
  });
}

/** Decodes an NT_PRPSINFO descriptor. */
export function decodePrpsinfo(desc: Uint8Array): PrPsInfo {
  if (desc.length !== PRPSINFO_SIZE) {
    throw new ImageFormatError(
      "",
      `NT_PRPSINFO has ${desc.length} bytes, expected ${PRPSINFO_SIZE}`,
    );
  }
  const v = view(desc);
  return {
    state: desc[0],
    sname: String.fromCharCode(desc[1]),
    zomb: desc[2],
    nice: v.getInt8(3),
    flag: v.getBigUint64(8, true),
    uid: v.getUint32(16, true),
    gid: v.getUint32(20, true),
    pid: v.getInt32(24, true),
    ppid: v.getInt32(28, true),
    pgrp: v.getInt32(32, true),
    sid: v.getInt32(36, true),
    fname: getCString(desc, 40, 16),
    psargs: getCString(desc, 56, 80),
  };
}

/** Encodes a siginfo_t (128 bytes) with si_signo, si_errno and si_code set. */
export function encodeSiginfo(signo: number, code = 0, errno = 0): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(SIGINFO_SIZE);
  const v = view(b);
  v.setInt32(0, signo, true);
  v.setInt32(4, errno, true);
  v.setInt32(8, code, true);
  return b;
}

/** Encodes auxv pairs as u64 (type, value), ending with AT_NULL. */
export function encodeAuxv(auxv: readonly [number, Hex][]): Uint8Array<ArrayBuffer> {
  const pairs = auxv.filter(([type]) => type !== 0);
  const b = new Uint8Array(16 * (pairs.length + 1));
  const v = view(b);
  pairs.forEach(([type, value], i) => {
    v.setBigUint64(16 * i, BigInt(type), true);
    v.setBigUint64(16 * i + 8, hexToBigInt(value), true);
  });
  return b;
}

/** Decodes NT_AUXV into [type, value] pairs, without the AT_NULL terminator. */
export function decodeAuxv(desc: Uint8Array): [number, Hex][] {
  const v = view(desc);
  const out: [number, Hex][] = [];
  for (let off = 0; off + 16 <= desc.length; off += 16) {
    const type = Number(v.getBigUint64(off, true));
    if (type === 0) break;
    out.push([type, bigIntToHex(v.getBigUint64(off + 8, true))]);
  }
  return out;
}

/** One entry of NT_FILE. */
export interface FileNoteEntry {
  start: bigint;
  end: bigint;
  /** File offset in pages (of {@link FileNote.pageSize}). */
  pageOffset: bigint;
  name: string;
}

/** The decoded NT_FILE table. */
export interface FileNote {
  pageSize: number;
  entries: FileNoteEntry[];
}

/** Encodes NT_FILE: count, page size, (start, end, pgoff) triplets, NUL-terminated names. */
export function encodeFileNote(
  entries: readonly FileNoteEntry[],
  pageSize = PAGE_SIZE,
): Uint8Array<ArrayBuffer> {
  const names = entries.map((e) => utf8.encode(e.name + "\0"));
  const head = new Uint8Array(16 + 24 * entries.length);
  const v = view(head);
  v.setBigUint64(0, BigInt(entries.length), true);
  v.setBigUint64(8, BigInt(pageSize), true);
  entries.forEach((e, i) => {
    v.setBigUint64(16 + 24 * i, e.start, true);
    v.setBigUint64(24 + 24 * i, e.end, true);
    v.setBigUint64(32 + 24 * i, e.pageOffset, true);
  });
  return concatBytes([head, ...names]);
}

/** Decodes NT_FILE; throws {@link ImageFormatError} when counts and sizes disagree. */
export function decodeFileNote(desc: Uint8Array): FileNote {
  if (desc.length < 16) throw new ImageFormatError("", "NT_FILE shorter than its header");
  const v = view(desc);
  const count = Number(v.getBigUint64(0, true));
  const pageSize = Number(v.getBigUint64(8, true));
  if (16 + 24 * count > desc.length) {
    throw new ImageFormatError("", `NT_FILE claims ${count} entries but has ${desc.length} bytes`);
  }
  const names = new TextDecoder().decode(desc.subarray(16 + 24 * count)).split("\0");
  const entries: FileNoteEntry[] = [];
  for (let i = 0; i < count; i++) {
    entries.push({
      start: v.getBigUint64(16 + 24 * i, true),
      end: v.getBigUint64(24 + 24 * i, true),
      pageOffset: v.getBigUint64(32 + 24 * i, true),
      name: names[i] ?? "",
    });
  }
  return { pageSize, entries };
}

/** True for mappings that NT_FILE lists (those backed by a named file). */
export function isFileMapping(m: Mapping): boolean {
  return (m.kind === "file-private" || m.kind === "file-shared") && m.name.startsWith("/");
}

/** The NT_FILE entries of a process: its file-backed mappings in address order. */
export function fileNoteEntries(proc: ProcessImage): FileNoteEntry[] {
  return proc.mappings.filter(isFileMapping).map((m) => ({
    start: hexToBigInt(m.start),
    end: hexToBigInt(m.end),
    pageOffset: hexToBigInt(m.offset) / BigInt(PAGE_SIZE),
    name: m.name,
  }));
}

/**
 * User XSAVE components gdb knows: [index, size, offset in the standard
 * (Intel) layout, offset in the layout of AMD CPUs, which have no MPX
 * components and put everything after AVX 256 bytes lower]. Also what a
 * restore moves between the two layouts (engine/restore/xsave_fit.ts).
 */
export const XSAVE_COMPONENTS: readonly (readonly [number, number, number, number | null])[] = [
  [2, 256, 576, 576], // AVX (YMM_Hi128)
  [3, 64, 960, null], // MPX BNDREGS
  [4, 64, 1024, null], // MPX BNDCSR
  [5, 64, 1088, 832], // AVX-512 opmask
  [6, 512, 1152, 896], // AVX-512 ZMM_Hi256
  [7, 1024, 1664, 1408], // AVX-512 Hi16_ZMM
  [9, 8, 2688, 2432], // PKRU
];

/** Offset of the XCR0 copy in the XSAVE area's software-reserved bytes. */
export const XSAVE_XCR0_OFFSET = 464;

/**
 * Returns the XSAVE area in the Intel standard layout that gdb (up to 13)
 * assumes. AMD CPUs place the AVX-512 and PKRU components 256 bytes lower
 * (no MPX), so the kernel's area is shorter (2440 instead of 2696 bytes
 * with PKRU) and gdb rejects it as "too small". Such an area is moved
 * component by component to the Intel offsets; an area already in that
 * layout, or with components this function does not know (AMX ...), is
 * returned unchanged.
 */
export function xsaveInStandardLayout(xsave: Uint8Array): Uint8Array {
  if (xsave.length < 576) return xsave;
  const xcr0 = view(xsave).getBigUint64(XSAVE_XCR0_OFFSET, true);
  const comps = XSAVE_COMPONENTS.filter(([i]) => (xcr0 & (1n << BigInt(i))) !== 0n);
  const known = comps.reduce((m, [i]) => m | (1n << BigInt(i)), 3n);
  if ((xcr0 & ~known) !== 0n) return xsave;
  const standardSize = Math.max(576, ...comps.map(([, size, off]) => off + size));
  if (xsave.length >= standardSize) return xsave;
  if (comps.some(([, , , amd]) => amd === null)) return xsave;
  const amdSize = Math.max(576, ...comps.map(([, size, , amd]) => amd! + size));
  if (xsave.length !== amdSize) return xsave;
  const out = new Uint8Array(standardSize);
  out.set(xsave.subarray(0, 576));
  for (const [, size, to, from] of comps) out.set(xsave.subarray(from!, from! + size), to);
  return out;
}

/** Options of {@link coreNoteSpecs}. */
export interface CoreNoteOptions {
  /** Write NT_X86_XSTATE in the standard layout gdb expects ({@link xsaveInStandardLayout}). */
  standardXsave?: boolean;
}

/** A note before encoding. */
export interface NoteSpec {
  owner: string;
  type: number;
  desc: Uint8Array;
}

function pendingMask(signos: readonly { signo: number }[]): bigint {
  let mask = 0n;
  for (const s of signos) if (s.signo >= 1 && s.signo <= 64) mask |= 1n << BigInt(s.signo - 1);
  return mask;
}

/**
 * The standard core notes of a process, in the order Linux writes them:
 * the first thread's NT_PRSTATUS, then NT_PRPSINFO, NT_SIGINFO, NT_AUXV,
 * NT_FILE, then that thread's NT_PRFPREG and NT_X86_XSTATE; then for every
 * other thread NT_PRSTATUS, NT_PRFPREG, NT_X86_XSTATE. The main thread
 * (tid == pid) comes first so gdb makes it the current thread.
 */
export function coreNoteSpecs(proc: ProcessImage, opts: CoreNoteOptions = {}): NoteSpec[] {
  const threads = [...proc.threads].sort((a, b) =>
    (a.tid === proc.pid ? 0 : 1) - (b.tid === proc.pid ? 0 : 1)
  );
  const notes: NoteSpec[] = [];
  threads.forEach((t, i) => {
    const xsave = threadXsave(t);
    notes.push({
      owner: OWNER_CORE,
      type: NT_PRSTATUS,
      desc: encodePrstatus({
        cursig: SIGSTOP,
        sigpend: pendingMask(t.pending ?? []),
        sighold: hexToBigInt(t.sigmask),
        pid: t.tid,
        ppid: proc.ppid,
        pgrp: proc.pgid,
        sid: proc.sid,
        regs: t.regs,
        fpvalid: xsave.length >= FPREGS_SIZE,
      }),
    });
    if (i === 0) {
      notes.push({
        owner: OWNER_CORE,
        type: NT_PRPSINFO,
        desc: prpsinfoOf(proc),
      });
      notes.push({ owner: OWNER_CORE, type: NT_SIGINFO, desc: encodeSiginfo(SIGSTOP) });
      notes.push({ owner: OWNER_CORE, type: NT_AUXV, desc: encodeAuxv(proc.auxv) });
      notes.push({ owner: OWNER_CORE, type: NT_FILE, desc: encodeFileNote(fileNoteEntries(proc)) });
    }
    if (xsave.length >= FPREGS_SIZE) {
      notes.push({ owner: OWNER_CORE, type: NT_PRFPREG, desc: xsave.slice(0, FPREGS_SIZE) });
      notes.push({
        owner: OWNER_LINUX,
        type: NT_X86_XSTATE,
        desc: opts.standardXsave ? xsaveInStandardLayout(xsave) : xsave,
      });
    }
  });
  return notes;
}

/** Whether the writer puts the common mapping records in an NT_CRYO_MAPPINGS note. */
let mappingNote = true;

/**
 * Turns the NT_CRYO_MAPPINGS note on (the default) or off: off, every
 * mapping record stays in the process JSON, as images were written before
 * the note (tests write such images to check they still read).
 */
export function setMappingNote(on: boolean): void {
  mappingNote = on;
}

/**
 * The JSON text of NT_CRYO_PROCESS and the NT_CRYO_MAPPINGS descriptor
 * (undefined when the note is turned off): the process with its
 * `mappings` replaced by what {@link encodeMappingNote} leaves in JSON.
 */
function processJson(proc: ProcessImage): { json: string; mappings?: Uint8Array<ArrayBuffer> } {
  if (!mappingNote) return { json: JSON.stringify(proc) };
  const encoded = encodeMappingNote(proc.mappings);
  return { json: JSON.stringify({ ...proc, mappings: encoded.json }), mappings: encoded.desc };
}

/**
 * cryo's own notes: NT_CRYO_VERSION (u32), NT_CRYO_PROCESS (ProcessImage
 * JSON), then NT_CRYO_MAPPINGS (the common mapping records as columns).
 */
export function cryoNoteSpecs(proc: ProcessImage): NoteSpec[] {
  const { json, mappings } = processJson(proc);
  const specs = [
    cryoVersionSpec(),
    { owner: OWNER_CRYO, type: NT_CRYO_PROCESS, desc: utf8.encode(json) },
  ];
  if (mappings) specs.push({ owner: OWNER_CRYO, type: NT_CRYO_MAPPINGS, desc: mappings });
  return specs;
}

/** The NT_CRYO_VERSION note. */
function cryoVersionSpec(): NoteSpec {
  const version = new Uint8Array(4);
  view(version).setUint32(0, IMAGE_FORMAT_VERSION, true);
  return { owner: OWNER_CRYO, type: NT_CRYO_VERSION, desc: version };
}

/**
 * `encodeNotes(cryoNoteSpecs(proc))`, byte for byte, with the process JSON
 * encoded straight into the notes: no UTF-8 copy, note copy and
 * concatenation of it one after the other. Used by the image writer.
 */
export function encodeCryoNotes(proc: ProcessImage): Uint8Array<ArrayBuffer> {
  const versionSpec = cryoVersionSpec();
  const versionNote = encodeNote(versionSpec.owner, versionSpec.type, versionSpec.desc);
  const { json, mappings } = processJson(proc);
  const mappingsNote = mappings
    ? encodeNote(OWNER_CRYO, NT_CRYO_MAPPINGS, mappings)
    : new Uint8Array(0);
  const owner = utf8.encode(OWNER_CRYO);
  const nameArea = (owner.length + 1 + 3) & ~3;
  const descAt = versionNote.length + 12 + nameArea;
  // UTF-8 is at least as long as the string (one byte per unit only when all is ASCII): an
  // encoding that fits in as many bytes as the string has units is the whole of it.
  const jsonEnd = descAt + ((json.length + 3) & ~3);
  const out = new Uint8Array(jsonEnd + mappingsNote.length);
  const { read, written } = utf8.encodeInto(json, out.subarray(descAt, descAt + json.length));
  if (read !== json.length || written !== json.length) {
    const specs: NoteSpec[] = [versionSpec, {
      owner: OWNER_CRYO,
      type: NT_CRYO_PROCESS,
      desc: utf8.encode(json),
    }];
    if (mappings) specs.push({ owner: OWNER_CRYO, type: NT_CRYO_MAPPINGS, desc: mappings });
    return encodeNotes(specs);
  }
  out.set(versionNote, 0);
  const v = view(out);
  v.setUint32(versionNote.length, owner.length + 1, true);
  v.setUint32(versionNote.length + 4, written, true);
  v.setUint32(versionNote.length + 8, NT_CRYO_PROCESS, true);
  out.set(owner, versionNote.length + 12);
  out.set(mappingsNote, jsonEnd);
  return out;
}

/** Encodes note specs back to back (each 4-byte aligned). */
export function encodeNotes(specs: readonly NoteSpec[]): Uint8Array<ArrayBuffer> {
  return concatBytes(specs.map((n) => encodeNote(n.owner, n.type, n.desc)));
}
