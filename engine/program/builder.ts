/**
 * Restore programs: the encoding of the op list the restore stub executes,
 * a builder with a data area, a decoder and an strace-like pretty-printer.
 *
 * ## Op encoding (64 bytes, little endian)
 *
 * | offset | type   | field                                                        |
 * |--------|--------|--------------------------------------------------------------|
 * | +0     | u32    | `nr`: syscall number, or {@link OP_END} / {@link OP_COPY}     |
 * | +4     | u8     | `argSlotMask`: bit i set => arg i is a slot index            |
 * | +5     | u8     | `storeSlot`: {@link NO_SLOT}, or slot receiving the result   |
 * | +6     | u8     | `flags`: {@link FLAG_ALLOW_FAIL}, {@link FLAG_JUMP_IF_ZERO}  |
 * | +7     | u8     | reserved (0)                                                 |
 * | +8     | 6×u64  | args (rdi, rsi, rdx, r10, r8, r9)                            |
 * | +56    | u64    | `aux`: absolute address of the jump target op (JUMP_IF_ZERO) |
 *
 * - END stops the stub at its DONE `int3` with rbx = the END op.
 * - COPY is a memcpy done by the stub itself (`rep movsb`):
 *   arg0 = dst, arg1 = src, arg2 = length; its result is 0.
 * - A slot arg passes `slots[arg & 63]` instead of the literal value.
 * - A result in [-4095, -1] is a failure: without ALLOW_FAIL the stub stops
 *   at FAIL with rax = -errno and rbx = the op. With ALLOW_FAIL it goes on,
 *   storing the negative errno if the op has a store slot.
 * - JUMP_IF_ZERO: if the result is 0 the stub continues at the op at `aux`
 *   (after clone3/fork, the child takes that branch).
 *
 * ## Program blob layout (at its base address, 64-byte aligned)
 *
 * ```
 * base + 0    header (64 bytes): magic "CRYOPRG1", u32 version, u32 opCount,
 *             u64 base, u64 dataAddress, u64 dataSize, u64 opsAddress,
 *             u64 totalSize, u64 reserved
 * base + 64   data area: strings and structs (execve argv, clone_args, ...)
 * opsAddress  the ops, 64 bytes each (64-byte aligned, after the data)
 * ```
 *
 * The data area comes first so that `data()` can hand out absolute addresses
 * while ops are still being added; the header makes a program in an image
 * self-describing (`show --plan` decodes it with {@link decodeProgram}).
 *
 * @module
 */

import { SYS, syscallName as sysnoName } from "../../ffi/sysno.ts";
import { errnoName } from "../../ffi/errno.ts";

/** Size of one encoded op. */
export const OP_SIZE = 64;
/** Size of the program header. */
export const PROGRAM_HEADER_SIZE = 64;
/** `nr` of the END op: stop at the stub's DONE label. */
export const OP_END = 0xffffffff;
/** `nr` of the COPY op: memcpy(arg0, arg1, arg2) inside the stub. */
export const OP_COPY = 0xfffffffe;
/** `storeSlot` value meaning "do not store the result". */
export const NO_SLOT = 0xff;
/** Number of slots (u64 each) the stub addresses; slot indices are taken mod 64. */
export const SLOT_COUNT = 64;
/** Flag: a failing result does not stop the program. */
export const FLAG_ALLOW_FAIL = 1;
/** Flag: if the result is 0, continue at the op whose address is `aux`. */
export const FLAG_JUMP_IF_ZERO = 2;
/** Magic at the start of a program blob. */
export const PROGRAM_MAGIC = "CRYOPRG1";
/** Version of the op encoding written in the header. */
export const PROGRAM_VERSION = 1;

/** Syscall numbers the plan printer knows that ffi/sysno.ts does not (yet) list. */
export const EXTRA_SYSNO = { dup3: 292 } as const;

/** A syscall number by name: ffi/sysno.ts plus {@link EXTRA_SYSNO}. */
export function sysno(name: keyof typeof SYS | keyof typeof EXTRA_SYSNO): number {
  return (SYS as Record<string, number>)[name] ?? (EXTRA_SYSNO as Record<string, number>)[name];
}

/** Name of a syscall number, including the pseudo ops END and COPY. */
export function opName(nr: number): string {
  if (nr === OP_END) return "END";
  if (nr === OP_COPY) return "COPY";
  for (const [name, n] of Object.entries(EXTRA_SYSNO)) if (n === nr) return name;
  return sysnoName(nr);
}

/** One op of a restore program, as built or decoded. */
export interface Op {
  /** Syscall number, {@link OP_END} or {@link OP_COPY}. */
  nr: number;
  /** The six arguments as unsigned 64-bit values (a slot arg holds the slot index). */
  args: bigint[];
  /** Indices (0..5) of the args that are slot references. */
  argSlots?: number[];
  /** Slot receiving the result. */
  store?: number;
  /** A result in [-4095,-1] does not stop the program. */
  allowFail?: boolean;
  /**
   * Where to continue when the result is 0: a label name or op index when
   * building; always an op index once built or decoded.
   */
  jumpIfZeroTo?: string | number;
  /** Free text for plan printing (not encoded). */
  comment?: string;
}

/** A slot reference used as an argument: passes `slots[slot]`. */
export interface SlotRef {
  /** Slot index, 0..63. */
  slot: number;
}

/** Makes a slot reference argument for {@link ProgramBuilder.op}. */
export function slot(index: number): SlotRef {
  checkSlot(index);
  return { slot: index };
}

/** An argument accepted by the builder: a literal (negative values wrap to u64) or a slot. */
export type ArgInput = number | bigint | SlotRef;

/** Options of one op, for {@link ProgramBuilder.op}. */
export interface OpOptions {
  /** Store the result into this slot. */
  store?: number;
  /** Do not stop when the op fails. */
  allowFail?: boolean;
  /** Continue at this label / op index when the result is 0. */
  jumpIfZeroTo?: string | number;
  /** Text for plan printing. */
  comment?: string;
}

/** A program laid out at its base address. */
export interface BuiltProgram {
  /** Address of the header (the blob's first byte). */
  base: bigint;
  /** The blob: header, data area, ops. */
  bytes: Uint8Array;
  /** Address of op #0 (what the stub starts at). */
  opsAddress: bigint;
  /** Address of the data area. */
  dataAddress: bigint;
  /** Number of ops. */
  opCount: number;
  /** First address after the blob. */
  end: bigint;
  /** The ops with jump targets resolved to op indices. */
  ops: Op[];
}

function checkSlot(i: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= SLOT_COUNT) {
    throw new Error(`slot index ${i} out of range 0..${SLOT_COUNT - 1}`);
  }
}

const I64_MIN = -(1n << 63n);
const U64_LIMIT = 1n << 64n;
const TWO32 = 2 ** 32;

function toU64(v: number | bigint): bigint {
  // Programs of processes with many mappings have tens of thousands of ops:
  // the common cases (small non-negative values) allocate one bigint at most.
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v)) throw new Error(`argument ${v} is not a safe integer`);
    return v >= 0 ? BigInt(v) : BigInt.asUintN(64, BigInt(v));
  }
  if (v >= 0n && v < U64_LIMIT) return v;
  if (v < I64_MIN || v >= U64_LIMIT) throw new Error(`argument ${v} does not fit in 64 bits`);
  return BigInt.asUintN(64, v);
}

/**
 * Writes `v` as a little-endian u64 at `at` (the value {@link toU64} gives,
 * with its checks), without a bigint for a non-negative number.
 */
function setU64(view: DataView, at: number, v: number | bigint): void {
  if (typeof v === "number" && v >= 0 && Number.isSafeInteger(v)) {
    view.setUint32(at, v % TWO32, true);
    view.setUint32(at + 4, Math.floor(v / TWO32), true);
  } else view.setBigUint64(at, toU64(v), true);
}

function alignUp(v: bigint, a: bigint): bigint {
  return (v + a - 1n) / a * a;
}

/** A byte buffer that grows by doubling. */
class Bytes {
  buf = new Uint8Array(256);
  view = new DataView(this.buf.buffer);
  length = 0;

  /** Makes room for `n` more bytes, all zero; returns the offset they start at. */
  grow(n: number): number {
    const at = this.length;
    if (at + n > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < at + n) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(0, at));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    this.length = at + n;
    return at;
  }
}

/** The options of an op given none (shared: never written to). */
const NO_OPTS: OpOptions = Object.freeze({});

/**
 * Builds a restore program at a fixed base address.
 *
 * `data()` / `cstring()` return absolute addresses immediately (the data area
 * sits right after the header); ops are appended with `op()`, `copy()` and
 * `end()`; `label()` names the next op so an earlier op can jump to it.
 * Ops are encoded as they are added (a process of 10,000 mappings has
 * tens of thousands) and nothing else is kept of them but their comments
 * and jumps; the {@link Op} objects of `build().ops` are decoded from the
 * encoding only when asked for (failure messages, plan printing).
 */
export class ProgramBuilder {
  /** Address of the program header; must be 64-byte aligned. */
  readonly base: bigint;
  /** Ops added so far. */
  #count = 0;
  /** The comment of each op that has one, by index. */
  readonly #comments = new Map<number, string>();
  /** The jump of each op that has one, by index: a label or an op index. */
  readonly #jumpTo = new Map<number, string | number>();
  /** The ops encoded so far, jump targets not yet filled in. */
  readonly #encoded = new Bytes();
  /** Indices of the ops with a jump. */
  readonly #jumps: number[] = [];
  readonly #labels = new Map<string, number>();
  readonly #data = new Bytes();
  #built: BuiltProgram | undefined;
  #onBuild: ((p: BuiltProgram) => void) | undefined;
  /** Size only: see the constructor. */
  readonly #sizeOnly: boolean;

  /**
   * `onBuild` is called once by `build()` (used by the bootstrap builder).
   * `sizeOnly` (the dump's restorability check, engine/restore/restorable.ts):
   * every call checks and throws exactly as it would otherwise and every
   * address and size is the same, but no op or data byte is written and no
   * comment kept; the built program's bytes are zeros of the right length.
   */
  constructor(base: bigint, onBuild?: (p: BuiltProgram) => void, sizeOnly = false) {
    if (base % 64n !== 0n) throw new Error(`program base 0x${base.toString(16)} not 64-aligned`);
    this.base = base;
    this.#onBuild = onBuild;
    this.#sizeOnly = sizeOnly;
  }

  /** Address of the data area. */
  get dataAddress(): bigint {
    return this.base + BigInt(PROGRAM_HEADER_SIZE);
  }

  /** Number of ops added so far (= index of the next op). */
  get opCount(): number {
    return this.#count;
  }

  #check(): void {
    if (this.#built) throw new Error("program already built");
  }

  /** Appends raw bytes to the data area (aligned to `align`); returns their address. */
  data(bytes: Uint8Array, align = 8): bigint {
    this.#check();
    if (align <= 0 || (align & (align - 1)) !== 0) throw new Error(`bad alignment ${align}`);
    const pad = (align - this.#data.length % align) % align;
    if (this.#sizeOnly) {
      const at = this.#data.length + pad;
      this.#data.length = at + bytes.length;
      return this.dataAddress + BigInt(at);
    }
    const at = this.#data.grow(pad + bytes.length) + pad; // new bytes are zero
    this.#data.buf.set(bytes, at);
    return this.dataAddress + BigInt(at);
  }

  /** Reserves `size` zero bytes in the data area (e.g. a read buffer); returns the address. */
  reserve(size: number, align = 8): bigint {
    return this.data(new Uint8Array(size), align);
  }

  /** Stores a NUL-terminated UTF-8 string; returns its address. */
  cstring(s: string): bigint {
    const enc = new TextEncoder().encode(s);
    const buf = new Uint8Array(enc.length + 1);
    buf.set(enc);
    return this.data(buf, 1);
  }

  /** Stores little-endian u64 values (e.g. an argv pointer array); returns the address. */
  u64s(values: readonly (number | bigint)[]): bigint {
    const buf = new Uint8Array(values.length * 8);
    const view = new DataView(buf.buffer);
    values.forEach((v, i) => setU64(view, i * 8, v));
    return this.data(buf, 8);
  }

  /** Names the next op (for `jumpIfZeroTo`). */
  label(name: string): this {
    this.#check();
    if (this.#labels.has(name)) throw new Error(`program label ${name} defined twice`);
    this.#labels.set(name, this.#count);
    return this;
  }

  /** Appends a syscall op; returns its index. */
  op(nr: number, args: readonly ArgInput[], opts: OpOptions = NO_OPTS): number {
    this.#check();
    if (args.length > 6) throw new Error(`${opName(nr)}: more than 6 arguments`);
    if (opts.store !== undefined) checkSlot(opts.store);
    if (this.#sizeOnly) return this.#countOp(args, opts);
    const at = this.#encoded.grow(OP_SIZE);
    const view = this.#encoded.view;
    let mask = 0;
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (typeof a === "object") {
        checkSlot(a.slot);
        mask |= 1 << i;
        view.setUint32(at + 8 + i * 8, a.slot, true);
        view.setUint32(at + 12 + i * 8, 0, true);
      } else setU64(view, at + 8 + i * 8, a);
    }
    // The op's bytes are new, so zero (Bytes.grow): the missing args, the reserved
    // byte and `aux` (filled in by build() for a jump) stay as they are.
    view.setUint32(at, nr >>> 0, true);
    view.setUint8(at + 4, mask);
    view.setUint8(at + 5, opts.store ?? NO_SLOT);
    if (opts.allowFail) view.setUint8(at + 6, FLAG_ALLOW_FAIL);
    const index = this.#count++;
    if (opts.jumpIfZeroTo !== undefined) {
      this.#jumps.push(index);
      this.#jumpTo.set(index, opts.jumpIfZeroTo);
    }
    if (opts.comment !== undefined) this.#comments.set(index, opts.comment);
    return index;
  }

  /** {@link op} of a size-only builder: the same checks (setU64's and checkSlot's), no bytes. */
  #countOp(args: readonly ArgInput[], opts: OpOptions): number {
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (typeof a === "object") checkSlot(a.slot);
      else if (!(typeof a === "number" && a >= 0 && Number.isSafeInteger(a))) toU64(a);
    }
    const index = this.#count++;
    if (opts.jumpIfZeroTo !== undefined) {
      this.#jumps.push(index);
      this.#jumpTo.set(index, opts.jumpIfZeroTo);
    }
    return index;
  }

  /**
   * Appends `count` ops of syscall `nr`, each with `arity` literal arguments
   * taken in order from `args` (op k's from `args[k * arity]`), no options:
   * the encoding {@link op} gives the same ops, written without an argument
   * array per op (5,000 `mprotect`s of a run of mappings, anon_runs.ts).
   * Every value must be a non-negative safe integer.
   */
  opsOfNumbers(nr: number, arity: number, args: ArrayLike<number>, count: number): void {
    this.#check();
    if (arity > 6) throw new Error(`${opName(nr)}: more than 6 arguments`);
    if (count <= 0) return;
    if (this.#sizeOnly) {
      // (By findIndex, not a loop of 15,000 rounds: see below.)
      const n = count * arity;
      const values: ArrayLike<number> & { findIndex(f: (v: number) => boolean): number } =
        ArrayBuffer.isView(args)
          ? (args as unknown as Float64Array).subarray(0, n)
          : Array.prototype.slice.call(args, 0, n);
      const bad = values.findIndex((v) => !(v >= 0 && Number.isSafeInteger(v)));
      if (bad >= 0 || values.length < n) {
        // (The first bad value, or past the end of `args`, undefined, as args[a] reads it.)
        const v = bad >= 0 ? values[bad] : undefined;
        throw new Error(`${opName(nr)}: argument ${v} is not a non-negative safe integer`);
      }
      this.#count += count;
      return;
    }
    const at = this.#encoded.grow(count * OP_SIZE);
    const words = new Uint32Array(this.#encoded.buf.buffer, at, count * (OP_SIZE / 4));
    const bytes = this.#encoded.buf;
    // Op k by findIndex over k (a loop of 5,000 rounds here would be compiled for on-stack
    // replacement on V8's worker threads, for a loop that runs once: engine/find_from.ts).
    let bad: number | undefined;
    const badOp = new Uint8Array(count).findIndex((_, k) => {
      const w = k * (OP_SIZE / 4), b = at + k * OP_SIZE;
      words[w] = nr >>> 0;
      bytes[b + 5] = NO_SLOT;
      for (let i = 0, a = k * arity; i < arity; i++, a++) {
        const v = args[a];
        if (!(v >= 0 && Number.isSafeInteger(v))) {
          bad = v;
          return true;
        }
        words[w + 2 + 2 * i] = v >>> 0;
        words[w + 3 + 2 * i] = Math.floor(v / TWO32);
      }
      return false;
    });
    if (badOp >= 0) {
      // The ops written so far are dropped (and zeroed: grow() hands out zero bytes).
      bytes.fill(0, at, at + count * OP_SIZE);
      this.#encoded.length = at;
      throw new Error(`${opName(nr)}: argument ${bad} is not a non-negative safe integer`);
    }
    this.#count += count;
  }

  /** Appends a COPY op: memcpy(dst, src, len) inside the stub; returns its index. */
  copy(dst: ArgInput, src: ArgInput, len: ArgInput, opts: OpOptions = NO_OPTS): number {
    return this.op(OP_COPY, [dst, src, len], opts);
  }

  /** Appends an END op; returns its index. */
  end(comment?: string): number {
    return this.op(OP_END, [], comment === undefined ? NO_OPTS : { comment });
  }

  /** Lays the program out and encodes it. Can be called once. */
  build(): BuiltProgram {
    this.#check();
    const count = this.#count;
    const targets = new Map<number, number>();
    for (const i of this.#jumps) {
      const to = this.#jumpTo.get(i)!;
      const t = typeof to === "number" ? to : this.#labels.get(to);
      if (t === undefined) throw new Error(`op #${i}: undefined label ${to}`);
      if (!Number.isInteger(t) || t < 0 || t >= count) {
        throw new Error(`op #${i}: jump target #${t} out of range`);
      }
      targets.set(i, t);
    }
    const dataSize = this.#data.length;
    const opsAddress = alignUp(this.dataAddress + BigInt(dataSize), 64n);
    const opsOffset = Number(opsAddress - this.base);
    const total = opsOffset + count * OP_SIZE;
    const bytes = new Uint8Array(total);
    const view = new DataView(bytes.buffer);
    /** The built program of these bytes, its ops decoded by `decode` when asked. */
    const done = (decode: () => Op[]): BuiltProgram => {
      const built: BuiltProgram = {
        base: this.base,
        bytes,
        opsAddress,
        dataAddress: this.dataAddress,
        opCount: count,
        end: this.base + BigInt(total),
        get ops(): Op[] {
          return decode();
        },
      };
      this.#built = built;
      this.#onBuild?.(built);
      return built;
    };
    if (this.#sizeOnly) {
      return done(() => {
        throw new Error("a size-only program has no ops to decode");
      });
    }
    bytes.set(new TextEncoder().encode(PROGRAM_MAGIC), 0);
    view.setUint32(8, PROGRAM_VERSION, true);
    view.setUint32(12, count, true);
    view.setBigUint64(16, this.base, true);
    view.setBigUint64(24, this.dataAddress, true);
    view.setBigUint64(32, BigInt(dataSize), true);
    view.setBigUint64(40, opsAddress, true);
    view.setBigUint64(48, BigInt(total), true);
    bytes.set(this.#data.buf.subarray(0, dataSize), PROGRAM_HEADER_SIZE);
    bytes.set(this.#encoded.buf.subarray(0, count * OP_SIZE), opsOffset);
    for (const [i, t] of targets) {
      const at = opsOffset + i * OP_SIZE;
      view.setUint8(at + 6, view.getUint8(at + 6) | FLAG_JUMP_IF_ZERO);
      view.setBigUint64(at + 56, opsAddress + BigInt(t) * BigInt(OP_SIZE), true);
    }
    const encoded = new DataView(this.#encoded.buf.buffer, 0, count * OP_SIZE);
    const comments = this.#comments;
    let ops: Op[] | undefined;
    return done(() =>
      ops ??= Array.from({ length: count }, (_, i) => {
        const op = opFields(encoded, i * OP_SIZE);
        const t = targets.get(i);
        if (t !== undefined) op.jumpIfZeroTo = t;
        const comment = comments.get(i);
        if (comment !== undefined) op.comment = comment;
        return op;
      })
    );
  }
}

/** The header of a program blob. */
export interface ProgramHeader {
  /** Encoding version. */
  version: number;
  /** Number of ops. */
  opCount: number;
  /** Base address the program was built for. */
  base: bigint;
  /** Address of the data area. */
  dataAddress: bigint;
  /** Size of the data area in bytes. */
  dataSize: number;
  /** Address of op #0. */
  opsAddress: bigint;
  /** Size of the whole blob. */
  totalSize: number;
}

/** Reads and checks the header of a program blob (`bytes` starts at the header). */
export function readProgramHeader(bytes: Uint8Array): ProgramHeader {
  if (bytes.length < PROGRAM_HEADER_SIZE) throw new Error("program blob too short");
  const magic = new TextDecoder().decode(bytes.subarray(0, 8));
  if (magic !== PROGRAM_MAGIC) throw new Error(`not a cryo restore program (magic ${magic})`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h: ProgramHeader = {
    version: view.getUint32(8, true),
    opCount: view.getUint32(12, true),
    base: view.getBigUint64(16, true),
    dataAddress: view.getBigUint64(24, true),
    dataSize: Number(view.getBigUint64(32, true)),
    opsAddress: view.getBigUint64(40, true),
    totalSize: Number(view.getBigUint64(48, true)),
  };
  if (h.version !== PROGRAM_VERSION) throw new Error(`unsupported program version ${h.version}`);
  if (h.totalSize > bytes.length) throw new Error("program blob truncated");
  return h;
}

/**
 * Decodes the ops of a program blob built at `baseAddress` (`bytes` starts
 * at its header). Jump targets come back as op indices; comments are not
 * encoded and so are absent.
 */
export function decodeProgram(bytes: Uint8Array, baseAddress: bigint): Op[] {
  const h = readProgramHeader(bytes);
  if (h.base !== baseAddress) {
    throw new Error(
      `program built for 0x${h.base.toString(16)}, read at 0x${baseAddress.toString(16)}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const opsOffset = Number(h.opsAddress - h.base);
  const ops: Op[] = [];
  for (let i = 0; i < h.opCount; i++) {
    ops.push(decodeOpAt(view, opsOffset + i * OP_SIZE, h.opsAddress, h.opCount, i));
  }
  return ops;
}

/** The fields of the op encoded at `at`, but its jump. */
function opFields(view: DataView, at: number): Op {
  const nr = view.getUint32(at, true);
  const mask = view.getUint8(at + 4);
  const store = view.getUint8(at + 5);
  const flags = view.getUint8(at + 6);
  const args: bigint[] = [];
  for (let k = 0; k < 6; k++) args.push(view.getBigUint64(at + 8 + k * 8, true));
  const op: Op = { nr, args };
  const argSlots = [0, 1, 2, 3, 4, 5].filter((k) => mask & (1 << k));
  if (argSlots.length) op.argSlots = argSlots;
  if (store !== NO_SLOT) op.store = store;
  if (flags & FLAG_ALLOW_FAIL) op.allowFail = true;
  return op;
}

function decodeOpAt(view: DataView, at: number, opsAddress: bigint, count: number, i: number): Op {
  const op = opFields(view, at);
  const flags = view.getUint8(at + 6);
  const aux = view.getBigUint64(at + 56, true);
  if (flags & FLAG_JUMP_IF_ZERO) {
    const rel = aux - opsAddress;
    if (rel < 0n || rel % BigInt(OP_SIZE) !== 0n || rel / BigInt(OP_SIZE) >= BigInt(count)) {
      throw new Error(`op #${i}: jump target 0x${aux.toString(16)} is not an op`);
    }
    op.jumpIfZeroTo = Number(rel / BigInt(OP_SIZE));
  }
  return op;
}

/** Index of the op at `address` in a program whose ops start at `opsAddress`, or -1. */
export function opIndexAt(address: bigint, opsAddress: bigint, opCount: number): number {
  const rel = address - opsAddress;
  if (rel < 0n || rel % BigInt(OP_SIZE) !== 0n) return -1;
  const i = Number(rel / BigInt(OP_SIZE));
  return i < opCount ? i : -1;
}

/**
 * A reader of NUL-terminated strings in a program's memory (header at
 * `baseAddress`), for printing path arguments; undefined outside the blob.
 */
export function programStringReader(
  bytes: Uint8Array,
  baseAddress: bigint,
): (addr: bigint) => string | undefined {
  return (addr) => {
    const off = addr - baseAddress;
    if (off < 0n || off >= BigInt(bytes.length)) return undefined;
    const start = Number(off);
    let end = start;
    while (end < bytes.length && bytes[end] !== 0) end++;
    if (end >= bytes.length) return undefined;
    return new TextDecoder().decode(bytes.subarray(start, end));
  };
}

// ---------------------------------------------------------------------------
// Pretty-printing

type ArgKind =
  | "fd"
  | "dirfd"
  | "ptr"
  | "str"
  | "size"
  | "off"
  | "int"
  | "oct"
  | "hex"
  | "prot"
  | "mapflags"
  | "openflags"
  | "mremapflags"
  | "advice"
  | "prctl"
  | "archprctl"
  | "whence"
  | "sig"
  | "sighow"
  | "fcntl"
  | "itimer"
  | "rlimit";

const SIGNATURES: Record<string, ArgKind[]> = {
  read: ["fd", "ptr", "size"],
  write: ["fd", "ptr", "size"],
  open: ["str", "openflags", "oct"],
  openat: ["dirfd", "str", "openflags", "oct"],
  close: ["fd"],
  dup2: ["fd", "fd"],
  dup3: ["fd", "fd", "openflags"],
  lseek: ["fd", "int", "whence"],
  mmap: ["ptr", "size", "prot", "mapflags", "fd", "off"],
  mprotect: ["ptr", "size", "prot"],
  munmap: ["ptr", "size"],
  mremap: ["ptr", "size", "size", "mremapflags", "ptr"],
  pread64: ["fd", "ptr", "size", "off"],
  madvise: ["ptr", "size", "advice"],
  prctl: ["prctl", "hex", "hex", "hex", "hex"],
  arch_prctl: ["archprctl", "ptr"],
  rt_sigaction: ["sig", "ptr", "ptr", "size"],
  rt_sigprocmask: ["sighow", "ptr", "ptr", "size"],
  sigaltstack: ["ptr", "ptr"],
  setitimer: ["itimer", "ptr", "ptr"],
  set_tid_address: ["ptr"],
  set_robust_list: ["ptr", "size"],
  rseq: ["ptr", "size", "hex", "hex"],
  clone3: ["ptr", "size"],
  execve: ["str", "ptr", "ptr"],
  exit_group: ["int"],
  fchdir: ["fd"],
  chdir: ["str"],
  umask: ["oct"],
  prlimit64: ["int", "rlimit", "ptr", "ptr"],
  setsid: [],
  setpgid: ["int", "int"],
  kill: ["int", "sig"],
  fcntl: ["fd", "fcntl", "hex"],
};

function flagNames(v: bigint, table: [string, bigint][], zero: string): string {
  if (v === 0n) return zero;
  const parts: string[] = [];
  let rest = v;
  for (const [name, bit] of table) {
    if (bit !== 0n && (rest & bit) === bit) {
      parts.push(name);
      rest &= ~bit;
    }
  }
  if (rest) parts.push(`0x${rest.toString(16)}`);
  return parts.join("|");
}

function enumName(v: bigint, table: Record<string, number>): string | undefined {
  for (const [name, n] of Object.entries(table)) if (BigInt(n) === v) return name;
  return undefined;
}

const PROT: [string, bigint][] = [["PROT_READ", 1n], ["PROT_WRITE", 2n], ["PROT_EXEC", 4n], [
  "PROT_GROWSDOWN",
  0x01000000n,
], ["PROT_GROWSUP", 0x02000000n]];

const MAP_FLAGS: [string, bigint][] = [
  ["MAP_FIXED", 0x10n],
  ["MAP_ANONYMOUS", 0x20n],
  ["MAP_32BIT", 0x40n],
  ["MAP_GROWSDOWN", 0x100n],
  ["MAP_DENYWRITE", 0x800n],
  ["MAP_EXECUTABLE", 0x1000n],
  ["MAP_LOCKED", 0x2000n],
  ["MAP_NORESERVE", 0x4000n],
  ["MAP_POPULATE", 0x8000n],
  ["MAP_NONBLOCK", 0x10000n],
  ["MAP_STACK", 0x20000n],
  ["MAP_HUGETLB", 0x40000n],
  ["MAP_SYNC", 0x80000n],
  ["MAP_FIXED_NOREPLACE", 0x100000n],
];

const OPEN_FLAGS: [string, bigint][] = [
  ["O_CREAT", 0x40n],
  ["O_EXCL", 0x80n],
  ["O_NOCTTY", 0x100n],
  ["O_TRUNC", 0x200n],
  ["O_APPEND", 0x400n],
  ["O_NONBLOCK", 0x800n],
  ["O_SYNC", 0x101000n],
  ["O_DSYNC", 0x1000n],
  ["O_ASYNC", 0x2000n],
  ["O_DIRECT", 0x4000n],
  ["O_LARGEFILE", 0x8000n],
  ["O_TMPFILE", 0x410000n],
  ["O_DIRECTORY", 0x10000n],
  ["O_NOFOLLOW", 0x20000n],
  ["O_NOATIME", 0x40000n],
  ["O_CLOEXEC", 0x80000n],
  ["O_PATH", 0x200000n],
];

const MREMAP_FLAGS: [string, bigint][] = [
  ["MREMAP_MAYMOVE", 1n],
  ["MREMAP_FIXED", 2n],
  ["MREMAP_DONTUNMAP", 4n],
];

const ADVICE: Record<string, number> = {
  MADV_NORMAL: 0,
  MADV_RANDOM: 1,
  MADV_SEQUENTIAL: 2,
  MADV_WILLNEED: 3,
  MADV_DONTNEED: 4,
  MADV_FREE: 8,
  MADV_REMOVE: 9,
  MADV_DONTFORK: 10,
  MADV_DOFORK: 11,
  MADV_MERGEABLE: 12,
  MADV_UNMERGEABLE: 13,
  MADV_HUGEPAGE: 14,
  MADV_NOHUGEPAGE: 15,
  MADV_DONTDUMP: 16,
  MADV_DODUMP: 17,
  MADV_WIPEONFORK: 18,
  MADV_KEEPONFORK: 19,
  MADV_COLD: 20,
  MADV_PAGEOUT: 21,
  MADV_POPULATE_READ: 22,
  MADV_POPULATE_WRITE: 23,
  MADV_GUARD_INSTALL: 102,
  MADV_GUARD_REMOVE: 103,
};

const PRCTL: Record<string, number> = {
  PR_SET_PDEATHSIG: 1,
  PR_SET_DUMPABLE: 4,
  PR_SET_KEEPCAPS: 8,
  PR_SET_NAME: 15,
  PR_SET_SECCOMP: 22,
  PR_SET_TIMERSLACK: 29,
  PR_SET_MM: 35,
  PR_SET_CHILD_SUBREAPER: 36,
  PR_SET_NO_NEW_PRIVS: 38,
  PR_SET_THP_DISABLE: 41,
};

const ARCH_PRCTL: Record<string, number> = {
  ARCH_SET_GS: 0x1001,
  ARCH_SET_FS: 0x1002,
  ARCH_GET_FS: 0x1003,
  ARCH_GET_GS: 0x1004,
};

const WHENCE: Record<string, number> = { SEEK_SET: 0, SEEK_CUR: 1, SEEK_END: 2 };
const SIGHOW: Record<string, number> = { SIG_BLOCK: 0, SIG_UNBLOCK: 1, SIG_SETMASK: 2 };
const ITIMER: Record<string, number> = { ITIMER_REAL: 0, ITIMER_VIRTUAL: 1, ITIMER_PROF: 2 };

const FCNTL: Record<string, number> = {
  F_DUPFD: 0,
  F_GETFD: 1,
  F_SETFD: 2,
  F_GETFL: 3,
  F_SETFL: 4,
  F_SETOWN: 8,
  F_GETOWN: 9,
  F_SETSIG: 10,
  F_SETOWN_EX: 15,
  F_SETLEASE: 1024,
  F_DUPFD_CLOEXEC: 1030,
  F_SETPIPE_SZ: 1031,
  F_ADD_SEALS: 1033,
};

const RLIMIT: Record<string, number> = {
  RLIMIT_CPU: 0,
  RLIMIT_FSIZE: 1,
  RLIMIT_DATA: 2,
  RLIMIT_STACK: 3,
  RLIMIT_CORE: 4,
  RLIMIT_RSS: 5,
  RLIMIT_NPROC: 6,
  RLIMIT_NOFILE: 7,
  RLIMIT_MEMLOCK: 8,
  RLIMIT_AS: 9,
  RLIMIT_LOCKS: 10,
  RLIMIT_SIGPENDING: 11,
  RLIMIT_MSGQUEUE: 12,
  RLIMIT_NICE: 13,
  RLIMIT_RTPRIO: 14,
  RLIMIT_RTTIME: 15,
};

const SIGNALS = [
  "",
  "SIGHUP",
  "SIGINT",
  "SIGQUIT",
  "SIGILL",
  "SIGTRAP",
  "SIGABRT",
  "SIGBUS",
  "SIGFPE",
  "SIGKILL",
  "SIGUSR1",
  "SIGSEGV",
  "SIGUSR2",
  "SIGPIPE",
  "SIGALRM",
  "SIGTERM",
  "SIGSTKFLT",
  "SIGCHLD",
  "SIGCONT",
  "SIGSTOP",
  "SIGTSTP",
  "SIGTTIN",
  "SIGTTOU",
  "SIGURG",
  "SIGXCPU",
  "SIGXFSZ",
  "SIGVTALRM",
  "SIGPROF",
  "SIGWINCH",
  "SIGIO",
  "SIGPWR",
  "SIGSYS",
];

function hex(v: bigint): string {
  return v === 0n ? "0" : `0x${v.toString(16)}`;
}

function signed(v: bigint): bigint {
  return BigInt.asIntN(64, v);
}

function quote(s: string): string {
  return JSON.stringify(s);
}

function formatArg(
  kind: ArgKind,
  v: bigint,
  readString?: (addr: bigint) => string | undefined,
): string {
  switch (kind) {
    case "fd":
    case "int":
      return signed(v).toString();
    case "dirfd":
      return signed(v) === -100n ? "AT_FDCWD" : signed(v).toString();
    case "ptr":
      return v === 0n ? "NULL" : hex(v);
    case "str": {
      if (v === 0n) return "NULL";
      const s = readString?.(v);
      return s === undefined ? hex(v) : quote(s);
    }
    case "size":
      return v.toString();
    case "off":
    case "hex":
      return hex(v);
    case "oct":
      return v === 0n ? "0" : `0${v.toString(8)}`;
    case "prot":
      return flagNames(v, PROT, "PROT_NONE");
    case "mapflags": {
      const type = v & 3n;
      const typeName = ["0", "MAP_SHARED", "MAP_PRIVATE", "MAP_SHARED_VALIDATE"][Number(type)];
      const rest = v & ~3n;
      return rest === 0n ? typeName : `${typeName}|${flagNames(rest, MAP_FLAGS, "0")}`;
    }
    case "openflags": {
      const acc = ["O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE"][Number(v & 3n)];
      const rest = v & ~3n;
      return rest === 0n ? acc : `${acc}|${flagNames(rest, OPEN_FLAGS, "0")}`;
    }
    case "mremapflags":
      return flagNames(v, MREMAP_FLAGS, "0");
    case "advice":
      return enumName(v, ADVICE) ?? v.toString();
    case "prctl":
      return enumName(v, PRCTL) ?? v.toString();
    case "archprctl":
      return enumName(v, ARCH_PRCTL) ?? hex(v);
    case "whence":
      return enumName(v, WHENCE) ?? v.toString();
    case "sig":
      return v > 0n && v < BigInt(SIGNALS.length) ? SIGNALS[Number(v)] : signed(v).toString();
    case "sighow":
      return enumName(v, SIGHOW) ?? v.toString();
    case "fcntl":
      return enumName(v, FCNTL) ?? v.toString();
    case "itimer":
      return enumName(v, ITIMER) ?? v.toString();
    case "rlimit":
      return enumName(v, RLIMIT) ?? v.toString();
  }
}

/** Options for {@link formatOp}. */
export interface FormatOptions {
  /** Resolves string pointers (paths) to text; see {@link programStringReader}. */
  readString?: (addr: bigint) => string | undefined;
}

/**
 * Formats one op like an strace line, e.g.
 * `mmap(0x7f0000000000, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_FIXED|MAP_ANONYMOUS, -1, 0)`
 * or `pread64(slot[0], 0x7f0000000000, 8192, 0x3000) -> slot[1]`.
 * Suffixes: `-> slot[n]` (stores its result), `[may fail]`,
 * `[if 0 goto #n]`, `# comment`.
 */
export function formatOp(op: Op, opts: FormatOptions = {}): string {
  let text: string;
  const slotArg = (i: number) => op.argSlots?.includes(i) ?? false;
  const arg = (i: number, kind: ArgKind) =>
    slotArg(i) ? `slot[${op.args[i]}]` : formatArg(kind, op.args[i] ?? 0n, opts.readString);
  if (op.nr === OP_END) {
    text = "END";
  } else if (op.nr === OP_COPY) {
    text = `memcpy(${arg(0, "ptr")}, ${arg(1, "ptr")}, ${arg(2, "size")})`;
  } else {
    const name = opName(op.nr);
    const sig = SIGNATURES[name];
    const kinds: ArgKind[] = sig ?? ["hex", "hex", "hex", "hex", "hex", "hex"];
    text = `${name}(${kinds.map((k, i) => arg(i, k)).join(", ")})`;
  }
  if (op.store !== undefined) text += ` -> slot[${op.store}]`;
  if (op.allowFail) text += " [may fail]";
  if (op.jumpIfZeroTo !== undefined) text += ` [if 0 goto ${formatTarget(op.jumpIfZeroTo)}]`;
  if (op.comment) text += `  # ${op.comment}`;
  return text;
}

function formatTarget(t: string | number): string {
  return typeof t === "number" ? `#${t}` : t;
}

/** Formats a whole program blob, one numbered line per op. */
export function formatProgram(bytes: Uint8Array, baseAddress: bigint): string[] {
  const ops = decodeProgram(bytes, baseAddress);
  const readString = programStringReader(bytes, baseAddress);
  const width = String(Math.max(ops.length - 1, 0)).length;
  return ops.map((op, i) => `#${String(i).padStart(width, "0")} ${formatOp(op, { readString })}`);
}

/**
 * {@link describeFailure} of `program`'s failing op, followed by the op's
 * comment in brackets when it has one (what the op was restoring).
 */
export function describeFailedOp(
  program: { readonly ops: readonly Op[]; readonly opsAddress: bigint },
  rbx: bigint,
  rax: bigint,
): string {
  const why = describeFailure(program.ops, program.opsAddress, rbx, rax);
  const i = opIndexAt(rbx, program.opsAddress, program.ops.length);
  const comment = i >= 0 ? program.ops[i].comment : undefined;
  return `${why}${comment ? ` [${comment}]` : ""}`;
}

/**
 * The message the engine shows for a stub stop at FAIL: rbx is the failing
 * op's address, rax its (negative) result.
 */
export function describeFailure(
  ops: readonly Op[],
  opsAddress: bigint,
  rbx: bigint,
  rax: bigint,
): string {
  const i = opIndexAt(rbx, opsAddress, ops.length);
  const err = Number(-signed(rax));
  if (i < 0) return `restore stub failed at unknown op 0x${rbx.toString(16)}: ${errnoName(err)}`;
  return `op #${i} (${opName(ops[i].nr)}) failed: ${errnoName(err)}`;
}
