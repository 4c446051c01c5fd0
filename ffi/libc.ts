/**
 * The one binding to libc: `Deno.dlopen` of the C library, a generic
 * `syscall()`, errno capture and typed errors.
 *
 * Every call here is synchronous and runs on the calling JS thread; ptrace
 * and wait calls must stay on the main thread (the tracer is a thread).
 * The one exception, {@link rawSyscallOffThread}, is for a long read-only
 * kernel walk that may overlap the main thread's work.
 *
 * @module
 */

import { errnoName } from "./errno.ts";
import { SYS, syscallName } from "./sysno.ts";

const symbols = {
  syscall: {
    parameters: ["i64", "i64", "i64", "i64", "i64", "i64", "i64"],
    result: "i64",
  },
  __errno_location: { parameters: [], result: "pointer" },
  /** `pointer` parameters: a `buffer` one costs every command more to bind (see spawnSymbols). */
  dlsym: { parameters: ["pointer", "pointer"], result: "pointer" },
} as const;

/**
 * posix_spawn and its attributes, bound only by what spawns (ffi/spawn.ts),
 * each on its first call ({@link lazySymbols}). Every memory argument is a
 * `pointer` (ffi/spawn.ts passes `Deno.UnsafePointer.of` of buffers it
 * holds across the call). A `Deno.dlopen` of the 13 took ~6 ms of a fresh
 * process with `buffer` parameters, ~3 ms with `pointer` ones, and binding
 * the ones a launch calls by `dlsym` ~1.5 ms (docs/PERFORMANCE.md).
 */
const spawnSymbols = {
  posix_spawn: {
    parameters: ["pointer", "pointer", "pointer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  posix_spawn_file_actions_init: { parameters: ["pointer"], result: "i32" },
  posix_spawn_file_actions_destroy: { parameters: ["pointer"], result: "i32" },
  posix_spawn_file_actions_adddup2: { parameters: ["pointer", "i32", "i32"], result: "i32" },
  posix_spawn_file_actions_addclose: { parameters: ["pointer", "i32"], result: "i32" },
  posix_spawn_file_actions_addclosefrom_np: { parameters: ["pointer", "i32"], result: "i32" },
  posix_spawn_file_actions_addopen: {
    parameters: ["pointer", "i32", "pointer", "i32", "u32"],
    result: "i32",
  },
  posix_spawnattr_init: { parameters: ["pointer"], result: "i32" },
  posix_spawnattr_destroy: { parameters: ["pointer"], result: "i32" },
  posix_spawnattr_setflags: { parameters: ["pointer", "i16"], result: "i32" },
  posix_spawnattr_setsigmask: { parameters: ["pointer", "pointer"], result: "i32" },
  posix_spawnattr_setsigdefault: { parameters: ["pointer", "pointer"], result: "i32" },
  posix_spawnattr_setpgroup: { parameters: ["pointer", "i32"], result: "i32" },
} as const;

/** memcmp, bound on its first call ({@link bytesEqual}). */
const memSymbols = {
  memcmp: { parameters: ["pointer", "pointer", "usize"], result: "i32" },
} as const;

let lib: Deno.DynamicLibrary<typeof symbols> | undefined;
let memLib: Deno.StaticForeignLibraryInterface<typeof memSymbols> | undefined;

/**
 * Whether `a` and `b` hold the same bytes, by libc's `memcmp` (one call
 * for 500 KB of maps text, where a JavaScript loop run once, cold, costs
 * ~10 ms).
 */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  if (a.length === 0) return true;
  memLib ??= lazySymbols(memSymbols);
  return memLib.memcmp(Deno.UnsafePointer.of(a), Deno.UnsafePointer.of(b), BigInt(a.length)) === 0;
}
let spawnLib: Deno.StaticForeignLibraryInterface<typeof spawnSymbols> | undefined;

/** The lazily opened libc handle. */
export function libc(): Deno.DynamicLibrary<typeof symbols>["symbols"] {
  lib ??= Deno.dlopen("libc.so.6", symbols);
  return lib.symbols;
}

/** libc's posix_spawn functions (each bound on its first call). */
export function libcSpawn(): Deno.StaticForeignLibraryInterface<typeof spawnSymbols> {
  spawnLib ??= lazySymbols(spawnSymbols);
  return spawnLib;
}

/**
 * Functions of the C library (found by `dlsym` in the process's global
 * scope, where libc is) with the signatures of `defs`, each bound by
 * `Deno.UnsafeFnPointer` on its first call: `Deno.dlopen` prepares every
 * symbol it is given at once, which costs more than looking up the few a
 * caller uses. A missing symbol throws on that first call, naming it.
 */
function lazySymbols<S extends Record<string, Deno.ForeignFunction>>(
  defs: S,
): Deno.StaticForeignLibraryInterface<S> {
  const out: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(defs)) {
    let bound: ((...args: unknown[]) => unknown) | undefined;
    out[name] = (...args: unknown[]) => {
      if (!bound) {
        const cname = cstr(name);
        const p = libc().dlsym(null, Deno.UnsafePointer.of(cname));
        cname.fill(0); // referenced until dlsym returned
        if (p === null) throw new Error(`libc has no ${name}`);
        const fn = new Deno.UnsafeFnPointer(p as Deno.PointerObject<Deno.ForeignFunction>, def);
        bound = (...a: unknown[]) => (fn.call as (...x: unknown[]) => unknown)(...a);
      }
      return bound(...args);
    };
  }
  return out as Deno.StaticForeignLibraryInterface<S>;
}

/** Reads the calling thread's errno (call immediately after the failing call). */
export function errno(): number {
  const p = libc().__errno_location();
  return new Deno.UnsafePointerView(p!).getInt32(0);
}

/** A failed system call or libc call, with its arguments and errno name. */
export class SyscallError extends Error {
  /** The call that failed, e.g. `ptrace(PTRACE_SEIZE)`. */
  readonly call: string;
  /** Arguments as passed (numbers or descriptions). */
  readonly args: readonly unknown[];
  /** The errno value. */
  readonly errno: number;
  /** The symbolic errno name, e.g. `ESRCH`. */
  readonly code: string;

  constructor(call: string, args: readonly unknown[], err: number) {
    const shown = args.map((a) => typeof a === "bigint" ? `0x${a.toString(16)}` : String(a));
    super(`${call}(${shown.join(", ")}) failed: ${errnoName(err)}`);
    this.name = "SyscallError";
    this.call = call;
    this.args = args;
    this.errno = err;
    this.code = errnoName(err);
  }
}

/** A system call argument: an integer, bigint, pointer or a buffer (passed by address). */
export type SysArg =
  | number
  | bigint
  | Deno.PointerValue
  | BufferSource
  | ArrayBufferView<ArrayBufferLike>;

/** Converts a syscall argument into a 64-bit integer. */
export function argValue(a: SysArg | undefined): bigint {
  if (a === undefined || a === null) return 0n;
  if (typeof a === "number") return BigInt(a);
  if (typeof a === "bigint") return a;
  if (ArrayBuffer.isView(a) || a instanceof ArrayBuffer) {
    return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(a as BufferSource)));
  }
  return BigInt(Deno.UnsafePointer.value(a as Deno.PointerObject));
}

/** libc's `syscall()` bound to run on Deno's blocking thread pool. */
const offThreadSymbols = {
  syscall: {
    parameters: ["i64", "i64", "i64", "i64", "i64", "i64", "i64"],
    result: "i64",
    nonblocking: true,
  },
} as const;

let offThreadLib: Deno.DynamicLibrary<typeof offThreadSymbols> | undefined;

/**
 * Raw syscall on another thread (Deno's blocking pool), for a long
 * read-only call (a page table walk) that may run while the main thread
 * works: the result, or -1 on failure (that thread's errno is not read:
 * repeat the call with {@link rawSyscall} for it). Memory its arguments
 * point to must stay alive and untouched until the promise settles.
 */
export async function rawSyscallOffThread(nr: number, ...args: SysArg[]): Promise<bigint> {
  const v = args.map(argValue);
  while (v.length < 6) v.push(0n);
  offThreadLib ??= Deno.dlopen("libc.so.6", offThreadSymbols);
  const r = await offThreadLib.symbols.syscall(BigInt(nr), v[0], v[1], v[2], v[3], v[4], v[5]);
  return BigInt(r);
}

/**
 * A syscall argument as the `i64` parameter takes it: a number or bigint
 * as it is (no conversion per call: every ptrace request of a dump goes
 * through here, most of them in code run too few times to be optimised).
 */
function argRaw(a: SysArg | undefined): number | bigint {
  if (a === undefined || a === null) return 0;
  if (typeof a === "number" || typeof a === "bigint") return a;
  if (ArrayBuffer.isView(a) || a instanceof ArrayBuffer) {
    return Deno.UnsafePointer.value(Deno.UnsafePointer.of(a as BufferSource));
  }
  return Deno.UnsafePointer.value(a as Deno.PointerObject);
}

/** kill(2)'s number, for the guard in {@link rawSyscall}. */
const SYS_KILL = 62;

/**
 * Raw syscall: returns the result, or `-errno` on failure (never throws).
 * kill(0, sig) and kill(-1, sig) fail with EINVAL without being made: they
 * would signal cryo's own process group, or every process it may signal
 * (its caller's included), never what cryo means (a pid it failed to learn
 * reaching a kill).
 */
export function rawSyscall(nr: number, ...args: SysArg[]): bigint {
  if (nr === SYS_KILL && (args[0] === 0 || args[0] === 0n || args[0] === -1 || args[0] === -1n)) {
    return -22n; // EINVAL
  }
  // The i64 parameters take numbers as well as bigints (Deno converts them).
  const call = libc().syscall as (...a: (number | bigint)[]) => bigint | number;
  const r = BigInt(
    call(
      nr,
      argRaw(args[0]),
      argRaw(args[1]),
      argRaw(args[2]),
      argRaw(args[3]),
      argRaw(args[4]),
      argRaw(args[5]),
    ),
  );
  if (r === -1n) return -BigInt(errno());
  return r;
}

/**
 * Runs a system call and throws a {@link SyscallError} naming it on failure.
 * Returns the result as a bigint (addresses do not fit in a number).
 */
export function syscall(nr: number, ...args: SysArg[]): bigint {
  const r = rawSyscall(nr, ...args);
  if (r < 0n && r > -4096n) {
    throw new SyscallError(syscallName(nr), args.map(describeArg), Number(-r));
  }
  return r;
}

/** Like {@link syscall} but returns a JS number (for fds, pids, sizes). */
export function syscallNum(nr: number, ...args: SysArg[]): number {
  return Number(syscall(nr, ...args));
}

function describeArg(a: SysArg): unknown {
  if (typeof a === "number" || typeof a === "bigint") return a;
  if (a === null || a === undefined) return 0;
  if (ArrayBuffer.isView(a)) return `<buf ${a.byteLength}>`;
  if (a instanceof ArrayBuffer) return `<buf ${a.byteLength}>`;
  return "<ptr>";
}

/** NUL-terminated UTF-8 encoding of a string, for passing to the kernel. */
export function cstr(s: string): Uint8Array<ArrayBuffer> {
  const enc = new TextEncoder().encode(s);
  const out = new Uint8Array(enc.length + 1);
  out.set(enc);
  return out;
}

/** Address of a buffer as a bigint. */
export function addressOf(buf: BufferSource): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

/** An array of pointers to C strings (NULL-terminated), kept alive with its strings. */
export class CStringArray {
  /** The `char *[]` buffer. */
  readonly pointers: BigUint64Array<ArrayBuffer>;
  readonly #strings: Uint8Array[];

  constructor(items: readonly string[]) {
    this.#strings = items.map(cstr);
    this.pointers = new BigUint64Array(items.length + 1);
    this.#strings.forEach((s, i) => this.pointers[i] = addressOf(s as Uint8Array<ArrayBuffer>));
  }
}

/**
 * This (Deno) process's pid, by the raw syscall: every symbol of the
 * `Deno.dlopen` above is prepared when libc is first opened (~0.3 ms each
 * in a fresh process), and this one is called twice in cryo.
 */
export function selfPid(): number {
  return Number(rawSyscall(SYS.getpid));
}

/**
 * Reads exactly `buf.length` bytes from `fd` (raw syscalls, retrying on
 * EINTR): false at end of file or on an error.
 */
export function readFully(fd: number, buf: Uint8Array): boolean {
  let got = 0;
  while (got < buf.length) {
    const r = rawSyscall(0, /* read */ fd, buf.subarray(got), buf.length - got);
    if (r === -4n) continue; // EINTR
    if (r <= 0n) return false;
    got += Number(r);
  }
  return true;
}
