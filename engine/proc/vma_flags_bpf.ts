/**
 * The memory areas of a process and their vm_flags, read by a BPF
 * `task_vma` iterator (ffi/bpf.ts) instead of /proc/<pid>/smaps: no page
 * table walk, ~1 ms for 10,000 areas. The kernel layout the program reads
 * is taken from the running kernel's BTF (ffi/btf.ts). The flags come as
 * the kernel's bits; smaps shows them as two-letter codes, and the VM_*
 * bit values are #defines that no BTF type carries, so the codes come from
 * a table ({@link VM_FLAG_CODES}). The table is trusted only as far as an
 * smaps read of the same process confirms it ({@link checkDecoding};
 * engine/dump/vm_flags.ts): a bit no confirmed area had is not decoded.
 *
 * @module
 */

import { recallLayout, rememberLayout } from "./vm_flags_memo.ts";
import { Btf, BTF_KIND } from "../../ffi/btf.ts";
import {
  loadTaskVmaProgram,
  readTaskVmas,
  startTaskVmasRead,
  type TaskVmaLayout,
  VMA_RECORD_SIZE,
} from "../../ffi/bpf.ts";
import { PKEY_CODE, type SmapsArea } from "./smaps_flags.ts";
import { findIndexBelow } from "../find_from.ts";

/**
 * The smaps code of each vm_flags bit on x86-64 (fs/proc/task_mmu.c,
 * show_smap_vma_flags; include/linux/mm.h for the bits). "" for a bit
 * smaps does not show as a code: the protection key bits, shown as the
 * ProtectionKey line, which both readers turn into cryo's own code
 * {@link PKEY_CODE}. A bit not here is not decoded at all.
 */
export const VM_FLAG_CODES: ReadonlyMap<number, string> = new Map([
  [0, "rd"], // VM_READ
  [1, "wr"], // VM_WRITE
  [2, "ex"], // VM_EXEC
  [3, "sh"], // VM_SHARED
  [4, "mr"], // VM_MAYREAD
  [5, "mw"], // VM_MAYWRITE
  [6, "me"], // VM_MAYEXEC
  [7, "ms"], // VM_MAYSHARE
  [8, "gd"], // VM_GROWSDOWN
  [9, "um"], // VM_UFFD_MISSING
  [10, "pf"], // VM_PFNMAP
  [11, "gu"], // VM_MAYBE_GUARD (guard regions installed)
  [12, "uw"], // VM_UFFD_WP
  [13, "lo"], // VM_LOCKED
  [14, "io"], // VM_IO
  [15, "sr"], // VM_SEQ_READ
  [16, "rr"], // VM_RAND_READ
  [17, "dc"], // VM_DONTCOPY
  [18, "de"], // VM_DONTEXPAND
  [19, "lf"], // VM_LOCKONFAULT
  [20, "ac"], // VM_ACCOUNT
  [21, "nr"], // VM_NORESERVE
  [22, "ht"], // VM_HUGETLB
  [23, "sf"], // VM_SYNC
  [24, "ar"], // VM_ARCH_1 (VM_PAT)
  [25, "wf"], // VM_WIPEONFORK
  [26, "dd"], // VM_DONTDUMP
  [27, "sd"], // VM_SOFTDIRTY
  [28, "mm"], // VM_MIXEDMAP
  [29, "hg"], // VM_HUGEPAGE
  [30, "nh"], // VM_NOHUGEPAGE
  [31, "mg"], // VM_MERGEABLE
  [32, ""], // VM_PKEY_BIT0
  [33, ""], // VM_PKEY_BIT1
  [34, ""], // VM_PKEY_BIT2
  [35, ""], // VM_PKEY_BIT3
  [37, "ss"], // VM_SHADOW_STACK
  [38, "ui"], // VM_UFFD_MINOR
  [39, "dp"], // VM_DROPPABLE
  [42, "sl"], // VM_SEALED
]);

/** The protection key bits of vm_flags (VM_PKEY_BIT0 to VM_PKEY_BIT3). */
const PKEY_BITS = 0xfn << 32n;

/** The bits of {@link VM_FLAG_CODES}. */
const KNOWN_BITS = [...VM_FLAG_CODES.keys()].reduce((m, b) => m | (1n << BigInt(b)), 0n);

/** Decoded flags, one frozen list per distinct value (10,000 areas share a few). */
const decoded = new Map<bigint, string[] | null>();

/**
 * The smaps VmFlags codes of `flags`, in smaps' order (by bit), or null
 * when a bit of it has no entry in {@link VM_FLAG_CODES}.
 */
export function decodeVmFlags(flags: bigint): string[] | null {
  const known = decoded.get(flags);
  if (known !== undefined) return known;
  let out: string[] | null = [];
  if ((flags & ~KNOWN_BITS) !== 0n) out = null;
  else {
    for (let b = 0; b < 64; b++) {
      if ((flags >> BigInt(b)) & 1n) {
        const code = VM_FLAG_CODES.get(b)!;
        if (code !== "") out.push(code);
      }
      if (b === 35 && (flags & PKEY_BITS) !== 0n) out.push(PKEY_CODE);
    }
    Object.freeze(out);
  }
  decoded.set(flags, out);
  return out;
}

/** The areas of one process as the iterator gave them (address order). */
export interface VmaRecords {
  count: number;
  start: BigUint64Array;
  end: BigUint64Array;
  flags: BigUint64Array;
}

/** The loaded program, or why there is none; made once per cryo process. */
let loaded: { fd: number } | { unavailable: string } | undefined;

/** The program's kernel layout, from the running kernel's BTF (throws when something is missing). */
export function taskVmaLayout(btf: Btf): TaskVmaLayout {
  const need = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`BTF has no ${what}`);
    return v;
  };
  const struct = (name: string) => need(btf.find(BTF_KIND.STRUCT, name), `struct ${name}`);
  /** Offset of a member that is a pointer (ctx fields) or an 8-byte integer (area fields). */
  const member = (s: number, name: string, kind: "ptr" | "u64") => {
    const m = need(btf.member(s, name), `member ${name} of ${btf.name(s)}`);
    const t = btf.resolve(m.type);
    const ok = kind === "ptr"
      ? btf.kind(t) === BTF_KIND.PTR
      : btf.kind(t) === BTF_KIND.INT && btf.sizeOrType(t) === 8;
    if (!ok) throw new Error(`member ${name} of ${btf.name(s)} is not a ${kind}`);
    return m.offset;
  };
  const ctx = struct("bpf_iter__task_vma");
  const vma = struct("vm_area_struct");
  const helper = need(btf.enumerator("bpf_func_id", "BPF_FUNC_seq_write"), "BPF_FUNC_seq_write");
  return {
    attachBtfId: need(btf.find(BTF_KIND.FUNC, "bpf_iter_task_vma"), "FUNC bpf_iter_task_vma"),
    seqWriteHelper: Number(helper),
    ctxMeta: member(ctx, "meta", "ptr"),
    ctxVma: member(ctx, "vma", "ptr"),
    metaSeq: member(struct("bpf_iter_meta"), "seq", "ptr"),
    vmStart: member(vma, "vm_start", "u64"),
    vmEnd: member(vma, "vm_end", "u64"),
    vmFlags: member(vma, "vm_flags", "u64"),
    probeReadHelper: Number(
      need(
        btf.enumerator("bpf_func_id", "BPF_FUNC_probe_read_kernel"),
        "BPF_FUNC_probe_read_kernel",
      ),
    ),
    // CONFIG_NUMA only (engine/memory/mempolicy.ts): without it no area has a policy.
    vmPolicy: btf.member(vma, "vm_policy") ? member(vma, "vm_policy", "ptr") : -1,
  };
}

/**
 * Loads the iterator program once (its layout read from BTF, or as read
 * earlier on this boot: engine/proc/vm_flags_memo.ts; the verifier run): true when it is
 * there, else false with {@link bpfUnavailable} saying why. Never throws.
 */
export function loadVmaIterator(): boolean {
  if (!loaded) {
    try {
      const remembered = recallLayout();
      const layout = remembered ?? taskVmaLayout(Btf.vmlinux());
      loaded = { fd: loadTaskVmaProgram(layout) };
      if (!remembered) rememberLayout(layout);
    } catch (e) {
      loaded = { unavailable: e instanceof Error ? e.message : String(e) };
    }
  }
  return "fd" in loaded;
}

/** Why the iterator could not be loaded (undefined when it was, or was not tried). */
export function bpfUnavailable(): string | undefined {
  return loaded && "unavailable" in loaded ? loaded.unavailable : undefined;
}

/**
 * The memory areas of process `pid` (its mm, through its thread `pid`) with
 * their vm_flags. The iterator must be loaded ({@link loadVmaIterator});
 * throws a BpfError when the kernel refuses the iteration.
 */
export function readVmaRecords(pid: number): VmaRecords {
  return vmaRecordsOf(readVmaBytes(pid));
}

/**
 * The iterator's records of process `pid` as bytes ({@link readVmaRecords}
 * without their decoding: the freeze compares them with a read made
 * before it, engine/dump/vm_flags.ts). Throws as it does.
 */
export function readVmaBytes(pid: number): Uint8Array<ArrayBuffer> {
  if (!loaded || !("fd" in loaded)) throw new Error("the vma iterator is not loaded");
  const bytes = readTaskVmas(loaded.fd, pid);
  if (bytes.length % VMA_RECORD_SIZE !== 0) {
    throw new Error(`the vma iterator gave ${bytes.length} bytes, not whole records`);
  }
  return bytes;
}

/** {@link readVmaBytes} on another thread ({@link startVmaBytesRead}). */
export interface VmaBytesRead {
  /** Settles once every read ran. */
  finished: Promise<void>;
  /**
   * The records read (once finished), or undefined when the reads did not
   * prove their end or failed (the caller reads them again).
   */
  take(): Uint8Array<ArrayBuffer> | undefined;
  /** Closes the iterator's fds (once finished). */
  close(): void;
}

/**
 * Starts {@link readVmaBytes} of `pid` on another thread (a syscall table of
 * reads, ffi/bpf.ts `startTaskVmasRead`), sized for about `expectBytes` of
 * records. Throws when it cannot start (the caller reads on its thread).
 */
export function startVmaBytesRead(pid: number, expectBytes: number): VmaBytesRead {
  if (!loaded || !("fd" in loaded)) throw new Error("the vma iterator is not loaded");
  const r = startTaskVmasRead(loaded.fd, pid, expectBytes);
  return {
    finished: r.finished,
    take: () => {
      const bytes = r.take();
      return bytes && bytes.length % VMA_RECORD_SIZE === 0 ? bytes : undefined;
    },
    close: () => r.close(),
  };
}

/**
 * The records of {@link readVmaBytes}' `bytes` (whole records), copied as
 * 32-bit halves: the same 64-bit values, no bigint made per field (30,000
 * for 10,000 areas, twice per dump).
 */
export function vmaRecordsOf(bytes: Uint8Array<ArrayBuffer>): VmaRecords {
  const all = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  const count = bytes.length / VMA_RECORD_SIZE;
  const start = new BigUint64Array(count), end = new BigUint64Array(count);
  const flags = new BigUint64Array(count);
  const s = new Uint32Array(start.buffer), e = new Uint32Array(end.buffer);
  const f = new Uint32Array(flags.buffer);
  // No loop of 10,000 rounds for V8 to compile (engine/find_from.ts).
  findIndexBelow(count, (i) => {
    const w = 8 * i, h = 2 * i;
    s[h] = all[w];
    s[h + 1] = all[w + 1];
    e[h] = all[w + 2];
    e[h + 1] = all[w + 3];
    f[h] = all[w + 4];
    f[h + 1] = all[w + 5];
    return false;
  });
  return { count, start, end, flags };
}

/** What an smaps read says of the decoding of `records` (read about the same time). */
export interface DecodingCheck {
  /** The first area where decoded flags and smaps differ (none: the decoding agrees). */
  disagreement?: string;
  /** Every bit set in an area where decoding and smaps agree. */
  confirmedBits: bigint;
  /** Areas compared (in both, same addresses). */
  compared: number;
}

/**
 * Compares the decoded flags of `records` with `smaps`, area by area, for
 * the areas in both with the same addresses (the process may have run
 * between the two reads: an area in one only is left out, not compared).
 */
export function checkDecoding(records: VmaRecords, smaps: readonly SmapsArea[]): DecodingCheck {
  let confirmedBits = 0n, compared = 0;
  let j = 0;
  for (const a of smaps) {
    while (j < records.count && records.start[j] < a.start) j++;
    if (j >= records.count) break;
    if (records.start[j] !== a.start || records.end[j] !== a.end) continue;
    const flags = records.flags[j];
    const codes = decodeVmFlags(flags);
    compared++;
    if (!codes || !sameCodes(codes, a.vmFlags)) {
      return {
        disagreement: `area ${a.start.toString(16)}-${a.end.toString(16)}: flags 0x${
          flags.toString(16)
        } decode to "${codes?.join(" ") ?? "(unknown bit)"}", smaps shows "${a.vmFlags.join(" ")}"`,
        confirmedBits,
        compared,
      };
    }
    confirmedBits |= flags;
  }
  return { confirmedBits, compared };
}

function sameCodes(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The start addresses of the areas of `bytes` (whole records,
 * {@link readVmaBytes}) that have a NUMA policy of their own (vm_policy not
 * NULL): engine/memory/mempolicy.ts reads only those.
 */
export function policyStarts(bytes: Uint8Array): Set<bigint> {
  const all = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >> 2);
  const out = new Set<bigint>();
  const count = bytes.length / VMA_RECORD_SIZE;
  findIndexBelow(count, (i) => {
    const w = 8 * i;
    if ((all[w + 6] | all[w + 7]) !== 0) {
      out.add(BigInt(all[w]) | (BigInt(all[w + 1]) << 32n));
    }
    return false;
  });
  return out;
}
