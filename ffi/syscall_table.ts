/**
 * A syscall table run on another thread of cryo: a few bytes of x86-64
 * code, called through a nonblocking FFI call (one of Deno's blocking-pool
 * threads runs it), that issues every entry of a table one after the other
 * and stores each result next to it. No JavaScript runs per entry, and the
 * thread is handed the work once, so a long run of syscalls (a page copy's
 * `process_vm_readv` and `pwrite` per MiB) goes on beside cryo's own
 * thread on the other CPU, without a Worker (whose isolate costs cryo's
 * thread 20 to 40 ms to create).
 *
 * An entry is 8 words: number, six arguments, result. A number below
 * 0x1000 is a syscall; a larger one is the address of a function, called
 * with the SysV convention (the arguments in rdi, rsi, rdx, rcx, r8, r9):
 * the CRC fold of ffi/crc32_fold.ts ({@link SyscallTable.fold}). An entry
 * whose number is -1 ends the table; the code then stores 1 in its second
 * word (the done flag, for polling without the event loop).
 *
 * The table and every buffer its entries name must stay alive and must not
 * be closed or reused until the run is over ({@link TableRun.done}).
 *
 * @module
 */

import { codePage } from "./code_page.ts";
import { foldEntry } from "./crc32_fold.ts";
import { addressOf, cstr, syscall } from "./libc.ts";
import { SYS } from "./sysno.ts";

/**
 * The loop, 95 bytes (rbx is callee-saved: it walks the table). Bit 62 of
 * an entry's number ({@link SKIP_NEXT_ON_ERROR}) is cleared before use; when
 * it is set and the result is negative, the next entry is skipped (its
 * result stays 0):
 * ```
 * 0:  53                push rbx
 * 1:  48 89 fb          mov  rbx,rdi
 * 4:  48 8b 03          mov  rax,[rbx]          (loop)
 * 7:  48 83 f8 ff       cmp  rax,-1
 * 11: 74 49             je   86
 * 13: 48 0f ba f0 3e    btr  rax,62
 * 18: 48 8b 7b 08       mov  rdi,[rbx+8]
 * 22: 48 8b 73 10       mov  rsi,[rbx+16]
 * 26: 48 8b 53 18       mov  rdx,[rbx+24]
 * 30: 4c 8b 53 20       mov  r10,[rbx+32]
 * 34: 48 8b 4b 20       mov  rcx,[rbx+32]
 * 38: 4c 8b 43 28       mov  r8,[rbx+40]
 * 42: 4c 8b 4b 30       mov  r9,[rbx+48]
 * 46: 48 3d 00 10 00 00 cmp  rax,0x1000
 * 52: 73 04             jae  58
 * 54: 0f 05             syscall
 * 56: eb 02             jmp  60
 * 58: ff d0             call rax               (rsp is 16-aligned here: one push)
 * 60: 48 89 43 38       mov  [rbx+56],rax
 * 64: 48 85 c0          test rax,rax
 * 67: 79 0b             jns  80
 * 69: 48 0f ba 23 3e    bt   qword [rbx],62
 * 74: 73 04             jnc  80
 * 76: 48 83 c3 40       add  rbx,64            (skip the next entry)
 * 80: 48 83 c3 40       add  rbx,64
 * 84: eb ae             jmp  4
 * 86: c7 43 08 01 00 00 00  mov dword [rbx+8],1 (the end entry's done flag)
 * 93: 5b                pop  rbx
 * 94: c3                ret
 * ```
 */
// deno-fmt-ignore
export const TABLE_CODE: Uint8Array = new Uint8Array([
  0x53,
  0x48, 0x89, 0xfb,
  0x48, 0x8b, 0x03,
  0x48, 0x83, 0xf8, 0xff,
  0x74, 0x49,
  0x48, 0x0f, 0xba, 0xf0, 0x3e,
  0x48, 0x8b, 0x7b, 0x08,
  0x48, 0x8b, 0x73, 0x10,
  0x48, 0x8b, 0x53, 0x18,
  0x4c, 0x8b, 0x53, 0x20,
  0x48, 0x8b, 0x4b, 0x20,
  0x4c, 0x8b, 0x43, 0x28,
  0x4c, 0x8b, 0x4b, 0x30,
  0x48, 0x3d, 0x00, 0x10, 0x00, 0x00,
  0x73, 0x04,
  0x0f, 0x05,
  0xeb, 0x02,
  0xff, 0xd0,
  0x48, 0x89, 0x43, 0x38,
  0x48, 0x85, 0xc0,
  0x79, 0x0b,
  0x48, 0x0f, 0xba, 0x23, 0x3e,
  0x73, 0x04,
  0x48, 0x83, 0xc3, 0x40,
  0x48, 0x83, 0xc3, 0x40,
  0xeb, 0xae,
  0xc7, 0x43, 0x08, 0x01, 0x00, 0x00, 0x00,
  0x5b,
  0xc3,
]);

/** Flag of an entry's number: when its result is negative, the next entry is skipped. */
export const SKIP_NEXT_ON_ERROR = 1n << 62n;

/** The C signature of the code, called without blocking: void run(table). */
const RUN_DEF = { parameters: ["pointer"], result: "void", nonblocking: true } as const;

/** The same code called on the calling thread (ptrace requests must come from the tracer). */
const RUN_HERE_DEF = { parameters: ["pointer"], result: "void" } as const;

let runner: Deno.UnsafeFnPointer<typeof RUN_DEF> | null | undefined;
let hereRunner: Deno.UnsafeFnPointer<typeof RUN_HERE_DEF> | null | undefined;

/** The code called synchronously on this thread, or null where tables cannot run. */
function tableRunnerHere(): Deno.UnsafeFnPointer<typeof RUN_HERE_DEF> | null {
  if (hereRunner !== undefined) return hereRunner;
  const fn = tableRunner();
  hereRunner = fn
    ? new Deno.UnsafeFnPointer(fn.pointer as Deno.PointerObject<typeof RUN_HERE_DEF>, RUN_HERE_DEF)
    : null;
  return hereRunner;
}

/**
 * Whether {@link SyscallTable.runHere} can run here (x86-64, an executable
 * page; no CRC fold needed).
 */
export function tablesRunHere(): boolean {
  return tableRunnerHere() !== null;
}

/** The runner (one page of code, read+exec, kept for the process's lifetime), or null. */
function tableRunner(): Deno.UnsafeFnPointer<typeof RUN_DEF> | null {
  if (runner !== undefined) return runner;
  const addr = codePage(TABLE_CODE);
  runner = addr === null ? null : new Deno.UnsafeFnPointer(
    Deno.UnsafePointer.create(addr) as Deno.PointerObject<typeof RUN_DEF>,
    RUN_DEF,
  );
  return runner;
}

/** Whether tables can run here with CRC folds (x86-64 with PCLMULQDQ, an executable page). */
export function tablesAvailable(): boolean {
  return tableRunner() !== null && foldEntry() !== null;
}

/** An argument of an entry: a number, or a buffer (its address). */
export type TableArg = number | bigint | Uint8Array<ArrayBuffer> | BigUint64Array<ArrayBuffer>;

/** Words per entry. */
const WORDS = 8;
/** 2^32: a number written as two u32 halves. */
const TWO32 = 2 ** 32;

/** A table being built; {@link run} starts it on another thread. */
export class SyscallTable {
  #words: BigUint64Array<ArrayBuffer>;
  /** {@link #words} as u32 halves (little-endian: the low half first). */
  #halves: Uint32Array<ArrayBuffer>;
  #count = 0;
  /** Buffers the entries name: kept alive with the table until the run is over. */
  readonly #keep: object[] = [];

  constructor(capacity = 64) {
    this.#words = new BigUint64Array(WORDS * (capacity + 1));
    this.#halves = new Uint32Array(this.#words.buffer);
  }

  /** Entries so far. */
  get length(): number {
    return this.#count;
  }

  #add(nr: number | bigint, args: TableArg[]): number {
    if (WORDS * (this.#count + 2) > this.#words.length) {
      const grown = new BigUint64Array(this.#words.length * 2);
      grown.set(this.#words);
      this.#words = grown;
      this.#halves = new Uint32Array(grown.buffer);
    }
    const w = this.#words, at = WORDS * this.#count;
    if (typeof nr === "number") {
      this.#halves[2 * at] = nr; // a syscall number (below 0x1000)
      this.#halves[2 * at + 1] = 0;
    } else w[at] = nr;
    for (let i = 0; i < 6; i++) {
      const a = args[i] ?? 0;
      if (typeof a === "number" && a >= 0 && a <= Number.MAX_SAFE_INTEGER) {
        // Two u32 halves, no bigint: the checksum pass adds ~130 entries per 64 MiB in code
        // that is still cold (docs/PERFORMANCE.md, "Small restores, eleventh pass").
        const h = this.#halves, k = 2 * (at + 1 + i);
        h[k] = a % TWO32;
        h[k + 1] = Math.floor(a / TWO32);
        continue;
      }
      // (A BigUint64Array stores any bigint modulo 2^64: a negative one as its two's complement.)
      w[at + 1 + i] = typeof a === "number" ? BigInt(a) : typeof a === "bigint" ? a : addressOf(a);
      if (typeof a === "object") this.#keep.push(a);
    }
    w[at + 7] = 0n;
    return this.#count++;
  }

  /** Adds syscall `nr` with `args`; returns its index (its result: {@link result}). */
  syscall(nr: number, ...args: TableArg[]): number {
    return this.#add(nr, args);
  }

  /**
   * {@link syscall}, and the entry added after it is skipped (result 0)
   * when this one fails (a negative result). Another entry must follow it.
   */
  syscallOrSkipNext(nr: number, ...args: TableArg[]): number {
    return this.#add(BigInt(nr) | SKIP_NEXT_ON_ERROR, args);
  }

  /**
   * Adds a call of the function at `fn` (an address of executable code,
   * SysV arguments, e.g. ffi/pin_check.ts), as {@link syscallOrSkipNext}:
   * the next entry is skipped when it returns a negative number.
   */
  callOrSkipNext(fn: bigint, ...args: TableArg[]): number {
    return this.#add(fn | SKIP_NEXT_ON_ERROR, args);
  }

  /**
   * Adds a CRC fold of `len` bytes at `buf` (len a multiple of 16, >= 64)
   * from the CRC register `init` into the 16 bytes `out` (or at the
   * address `out`, of a buffer the caller keeps alive with the table)
   * (ffi/crc32_fold.ts; engine/image/crc32.ts `crc32AfterFold` finishes it).
   * Only where {@link tablesAvailable}.
   */
  fold(buf: bigint, len: number, init: number, out: Uint8Array<ArrayBuffer> | bigint): number {
    const f = foldEntry();
    if (!f) throw new Error("no CRC fold on this machine");
    return this.#add(f.fn, [buf, len, init >>> 0, out, f.constants]);
  }

  /** Keeps `buf` alive until the run is over (a buffer named by address only). */
  keep(buf: object): void {
    this.#keep.push(buf);
  }

  /**
   * Sets the first `args.length` arguments of entry `i` (the others are
   * kept), also while the table runs: the second and later first, then the
   * first (atomically). The code loads the first argument before the
   * others, and x86-64 keeps stores in order and loads in order: a run that
   * sees the new first argument sees the others. Buffers named here must be
   * kept alive by the caller until entry `i` ran.
   */
  patch(i: number, args: TableArg[]): void {
    const w = this.#words, at = WORDS * i;
    const word = (a: TableArg) =>
      typeof a === "number"
        ? BigInt.asUintN(64, BigInt(a))
        : typeof a === "bigint"
        ? BigInt.asUintN(64, a)
        : addressOf(a);
    for (let k = 1; k < args.length && k < 6; k++) w[at + 1 + k] = word(args[k]);
    if (args.length) Atomics.store(w, at + 1, word(args[0]));
  }

  /**
   * Runs every entry on the calling thread, in one synchronous FFI call
   * (no JavaScript per entry): for requests only this thread may make, such
   * as ptrace requests to the tracees of this thread. Only where
   * {@link tablesRunHere}; the results are read with {@link result} after.
   */
  runHere(): void {
    const fn = tableRunnerHere();
    if (!fn) throw new Error("syscall tables cannot run on this machine");
    this.#ended();
    fn.call(Deno.UnsafePointer.of(this.#words));
  }

  /** Writes the end entry after the last one; returns its index in words. */
  #ended(): number {
    const w = this.#words, end = WORDS * this.#count;
    if (this.#count > 0 && (w[end - WORDS] & SKIP_NEXT_ON_ERROR) !== 0n) {
      throw new Error("the last entry of a table may not skip the next one"); // the end entry
    }
    w.fill(0n, end, end + WORDS);
    w[end] = 0xffffffffffffffffn; // the end entry; its second word becomes the done flag
    return end;
  }

  /**
   * The result of entry `i` as stored so far, read atomically while the
   * table may still run on another thread: 0 until the entry ran (and when
   * it returned 0). For waiting on one entry of a run: an entry that
   * returns a non-zero result has run once this is non-zero.
   */
  resultSoFar(i: number): bigint {
    return BigInt.asIntN(64, Atomics.load(this.#words, WORDS * i + 7));
  }

  /** The raw result of entry `i` (a syscall's: -errno on failure). Only once the run is done. */
  result(i: number): bigint {
    return BigInt.asIntN(64, this.#words[WORDS * i + 7]);
  }

  /**
   * {@link result} as a number, read without a bigint when it is below
   * 2^32 (a read's byte count: the checksum pass compares ~130 of them in
   * code that is still cold). Exact up to 2^53 in magnitude.
   */
  resultNumber(i: number): number {
    const k = 2 * (WORDS * i + 7);
    return this.#halves[k + 1] === 0 ? this.#halves[k] : Number(this.result(i));
  }

  /**
   * Starts the table on one of Deno's blocking-pool threads. The returned
   * run's promise resolves when every entry ran (the event loop must turn
   * to see it); {@link TableRun.done} can be polled without it.
   */
  run(): TableRun {
    const fn = tableRunner();
    if (!fn) throw new Error("syscall tables cannot run on this machine");
    const w = this.#words, end = this.#ended();
    const flag = new Int32Array(w.buffer, (end + 1) * 8, 1);
    const keep = [w, ...this.#keep];
    const finished = (fn.call(Deno.UnsafePointer.of(w)) as Promise<void>).then(() => {
      keep.length = 0;
    });
    return { finished, done: () => Atomics.load(flag, 0) === 1 };
  }
}

/** A table running on another thread. */
export interface TableRun {
  /** Resolves once every entry ran. */
  finished: Promise<void>;
  /** True once every entry ran (polled: no event loop turn needed). */
  done(): boolean;
}

const O_RDONLY = 0, O_RDWR = 2, O_CLOEXEC = 0o2000000;

/** A raw fd of `path` opened read-write (or read-only), for table entries; close with {@link closeRawFd}. */
export function openRawFd(path: string, write: boolean): number {
  return Number(syscall(SYS.open, cstr(path), (write ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0));
}

/** Closes a raw fd from {@link openRawFd}. */
export function closeRawFd(fd: number): void {
  syscall(SYS.close, fd);
}

/**
 * Closes raw fds from {@link openRawFd} on another thread (one table run,
 * not awaited: a freeze need not wait for 64 closes), or here where
 * tables cannot run. The fds must not be used again.
 */
export function closeRawFdsOffThread(fds: readonly number[]): void {
  if (fds.length === 0) return;
  if (!tableRunner()) {
    for (const fd of fds) {
      try {
        closeRawFd(fd);
      } catch { /* already closed */ }
    }
    return;
  }
  const table = new SyscallTable(fds.length);
  for (const fd of fds) table.syscall(SYS.close, fd);
  table.run().finished.catch(() => {});
}
