/**
 * A small reader of the running kernel's BTF (/sys/kernel/btf/vmlinux):
 * the header, the type section and the string section, enough to find a
 * type by kind and name, the byte offset of a struct member (through
 * anonymous struct and union members) and the values of an enum. Used to
 * take kernel struct layouts and enum values from the kernel that runs,
 * never from a header of another build (ffi/bpf.ts).
 *
 * @module
 */

/** BTF kinds (the `kind` field of a type's info word). */
export const BTF_KIND = {
  INT: 1,
  PTR: 2,
  ARRAY: 3,
  STRUCT: 4,
  UNION: 5,
  ENUM: 6,
  FWD: 7,
  TYPEDEF: 8,
  VOLATILE: 9,
  CONST: 10,
  RESTRICT: 11,
  FUNC: 12,
  FUNC_PROTO: 13,
  VAR: 14,
  DATASEC: 15,
  FLOAT: 16,
  DECL_TAG: 17,
  TYPE_TAG: 18,
  ENUM64: 19,
} as const;

/** A BTF blob that cannot be read (bad magic, truncated, unknown kind). */
export class BtfError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BtfError";
  }
}

/** One member of a struct or union: its name ("" when anonymous), type id and bit offset. */
export interface BtfMember {
  name: string;
  type: number;
  bitOffset: number;
}

const MAGIC = 0xeb9f;
/** Size of a `struct btf_type` (name_off, info, size/type). */
const TYPE_SIZE = 12;

/** The parsed type table of one BTF blob. */
export class Btf {
  readonly #view: DataView;
  readonly #bytes: Uint8Array;
  readonly #strOff: number;
  readonly #strLen: number;
  /** Byte offset in the blob of each type id (index 0: the void type, unused). */
  readonly #at: Uint32Array;
  readonly #decoder = new TextDecoder();

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#view = v;
    if (bytes.length < 24 || v.getUint16(0, true) !== MAGIC) {
      throw new BtfError("not a little-endian BTF blob");
    }
    const hdrLen = v.getUint32(4, true);
    const typeOff = hdrLen + v.getUint32(8, true);
    const typeLen = v.getUint32(12, true);
    this.#strOff = hdrLen + v.getUint32(16, true);
    this.#strLen = v.getUint32(20, true);
    if (typeOff + typeLen > bytes.length || this.#strOff + this.#strLen > bytes.length) {
      throw new BtfError("truncated BTF blob");
    }
    if (typeOff % 4 !== 0) throw new BtfError("unaligned type section");
    // Every type is at least 12 bytes: room for the most there can be.
    const at = new Uint32Array(Math.floor(typeLen / TYPE_SIZE) + 1);
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset + typeOff, typeLen >>> 2);
    let n = 1, w = 0;
    const endWord = typeLen >>> 2;
    while (w < endWord) {
      at[n++] = typeOff + w * 4;
      const info = words[w + 1];
      const kind = (info >>> 24) & 0x1f;
      const fixed = FIXED_WORDS[kind];
      if (fixed === 0xff) throw new BtfError(`unknown BTF kind ${kind} at byte ${typeOff + w * 4}`);
      w += 3 + fixed + (info & 0xffff) * PER_VLEN_WORDS[kind];
    }
    if (w !== endWord || typeLen % 4 !== 0) {
      throw new BtfError("type section does not end on a type");
    }
    this.#at = at.slice(0, n);
  }

  /** Reads and parses /sys/kernel/btf/vmlinux (throws when it cannot). */
  static vmlinux(path = "/sys/kernel/btf/vmlinux"): Btf {
    return new Btf(Deno.readFileSync(path));
  }

  /** Number of type ids (the highest id + 1). */
  get count(): number {
    return this.#at.length;
  }

  /** The kind of type `id`. */
  kind(id: number): number {
    return (this.#view.getUint32(this.#at[id] + 4, true) >>> 24) & 0x1f;
  }

  /** The name of type `id` ("" when anonymous). */
  name(id: number): string {
    return this.#string(this.#view.getUint32(this.#at[id], true));
  }

  /** The number of members, enumerators or parameters of type `id`. */
  vlen(id: number): number {
    return this.#view.getUint32(this.#at[id] + 4, true) & 0xffff;
  }

  /** The size (structs, unions, ints, enums) or the referred type id (pointers, typedefs...). */
  sizeOrType(id: number): number {
    return this.#view.getUint32(this.#at[id] + 8, true);
  }

  /** The first type of `kind` named `name`, or undefined. */
  find(kind: number, name: string): number | undefined {
    const want = new TextEncoder().encode(name);
    const v = this.#view, b = this.#bytes;
    for (let id = 1; id < this.#at.length; id++) {
      const p = this.#at[id];
      if (((v.getUint32(p + 4, true) >>> 24) & 0x1f) !== kind) continue;
      const s = this.#strOff + v.getUint32(p, true);
      if (b[s + want.length] !== 0) continue;
      let same = true;
      for (let i = 0; i < want.length && same; i++) same = b[s + i] === want[i];
      if (same) return id;
    }
    return undefined;
  }

  /** The members of struct or union `id`. */
  members(id: number): BtfMember[] {
    const k = this.kind(id);
    if (k !== BTF_KIND.STRUCT && k !== BTF_KIND.UNION) {
      throw new BtfError(`type ${id} is not a struct or union`);
    }
    const v = this.#view;
    const bitfields = (v.getUint32(this.#at[id] + 4, true) >>> 31) === 1;
    const out: BtfMember[] = [];
    for (let i = 0, p = this.#at[id] + TYPE_SIZE; i < this.vlen(id); i++, p += 12) {
      const off = v.getUint32(p + 8, true);
      out.push({
        name: this.#string(v.getUint32(p, true)),
        type: v.getUint32(p + 4, true),
        bitOffset: bitfields ? off & 0xffffff : off,
      });
    }
    return out;
  }

  /** Type `id` with typedefs and qualifiers (const, volatile, restrict, type tags) taken off. */
  resolve(id: number): number {
    for (;;) {
      const k = this.kind(id);
      if (
        k !== BTF_KIND.TYPEDEF && k !== BTF_KIND.CONST && k !== BTF_KIND.VOLATILE &&
        k !== BTF_KIND.RESTRICT && k !== BTF_KIND.TYPE_TAG
      ) return id;
      id = this.sizeOrType(id);
    }
  }

  /**
   * The member `name` of struct or union `id`, looked for in it and in its
   * anonymous struct and union members: its type and byte offset from the
   * start of `id`. Undefined when there is none; a bitfield member is an error.
   */
  member(id: number, name: string): { type: number; offset: number } | undefined {
    for (const m of this.members(id)) {
      if (m.name === name) {
        if (m.bitOffset % 8 !== 0) throw new BtfError(`member ${name} is a bitfield`);
        return { type: m.type, offset: m.bitOffset / 8 };
      }
      if (m.name !== "") continue;
      const inner = this.resolve(m.type);
      const k = this.kind(inner);
      if (k !== BTF_KIND.STRUCT && k !== BTF_KIND.UNION) continue;
      const found = this.member(inner, name);
      if (found) {
        if (m.bitOffset % 8 !== 0) throw new BtfError(`anonymous member of ${name} is a bitfield`);
        return { type: found.type, offset: m.bitOffset / 8 + found.offset };
      }
    }
    return undefined;
  }

  /** The enumerators of enum (or enum64) `id`, by name. */
  enumValues(id: number): Map<string, bigint> {
    const k = this.kind(id);
    const v = this.#view;
    const out = new Map<string, bigint>();
    const signed = (v.getUint32(this.#at[id] + 4, true) >>> 31) === 1;
    if (k === BTF_KIND.ENUM) {
      for (let i = 0, p = this.#at[id] + TYPE_SIZE; i < this.vlen(id); i++, p += 8) {
        const val = signed ? v.getInt32(p + 4, true) : v.getUint32(p + 4, true);
        out.set(this.#string(v.getUint32(p, true)), BigInt(val));
      }
    } else if (k === BTF_KIND.ENUM64) {
      for (let i = 0, p = this.#at[id] + TYPE_SIZE; i < this.vlen(id); i++, p += 12) {
        const lo = BigInt(v.getUint32(p + 4, true)), hi = BigInt(v.getUint32(p + 8, true));
        const u = (hi << 32n) | lo;
        out.set(this.#string(v.getUint32(p, true)), signed ? BigInt.asIntN(64, u) : u);
      }
    } else throw new BtfError(`type ${id} is not an enum`);
    return out;
  }

  /** The value of enumerator `name` of the enum named `enumName` (either width), or undefined. */
  enumerator(enumName: string, name: string): bigint | undefined {
    const id = this.find(BTF_KIND.ENUM, enumName) ?? this.find(BTF_KIND.ENUM64, enumName);
    return id === undefined ? undefined : this.enumValues(id).get(name);
  }

  #string(off: number): string {
    if (off >= this.#strLen) throw new BtfError(`string offset ${off} out of range`);
    const s = this.#strOff + off;
    const e = this.#bytes.indexOf(0, s);
    return this.#decoder.decode(this.#bytes.subarray(s, e < 0 ? this.#strOff + this.#strLen : e));
  }
}

/** Words (4 bytes) after a type's 12-byte header, by kind: a fixed part (0xff: unknown kind)... */
const FIXED_WORDS = new Uint8Array(32).fill(0xff);
/** ...and a part per member, enumerator or parameter (the `vlen` field). */
const PER_VLEN_WORDS = new Uint8Array(32);
for (
  const [kind, fixed, perVlen] of [
    [BTF_KIND.INT, 1, 0],
    [BTF_KIND.PTR, 0, 0],
    [BTF_KIND.ARRAY, 3, 0],
    [BTF_KIND.STRUCT, 0, 3],
    [BTF_KIND.UNION, 0, 3],
    [BTF_KIND.ENUM, 0, 2],
    [BTF_KIND.FWD, 0, 0],
    [BTF_KIND.TYPEDEF, 0, 0],
    [BTF_KIND.VOLATILE, 0, 0],
    [BTF_KIND.CONST, 0, 0],
    [BTF_KIND.RESTRICT, 0, 0],
    [BTF_KIND.FUNC, 0, 0],
    [BTF_KIND.FUNC_PROTO, 0, 2],
    [BTF_KIND.VAR, 1, 0],
    [BTF_KIND.DATASEC, 0, 3],
    [BTF_KIND.FLOAT, 0, 0],
    [BTF_KIND.DECL_TAG, 1, 0],
    [BTF_KIND.TYPE_TAG, 0, 0],
    [BTF_KIND.ENUM64, 0, 3],
  ]
) {
  FIXED_WORDS[kind] = fixed;
  PER_VLEN_WORDS[kind] = perVlen;
}
