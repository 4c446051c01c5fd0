/**
 * A syscall batch: a few bytes of x86-64 code, run in a thread under
 * crash-safe injection (ffi/safe_inject.ts `CrashSafeThread.runBatch`),
 * that issues every syscall of a table one after the other and stores each
 * result next to it, so that N injected syscalls cost one resume and one
 * stop instead of N ptrace round trips.
 *
 * The code expects rbx = the table and rsp = the thread's signal frame (so
 * the final `ret` goes to the rt_sigreturn restorer, as after any injected
 * syscall). A table entry is 8 words: number, six arguments, result; an
 * entry whose number is -1 ends it. The last real entry unblocks one quiet
 * signal (default action: ignore); the end entry holds a tgkill of that
 * signal to the thread itself and the address of a `syscall; ret` outside
 * the code (the crash-safe injection's call site), to which the code jumps
 * to issue it: with a tracer, that is the one stop (a signal-delivery stop
 * at that `ret`, out of the code, so the code's page can be unmapped with
 * no register change); a thread whose tracer died runs on, the signal is
 * discarded, and the `ret` takes it back to its own state.
 *
 * @module
 */

import { SYS } from "./sysno.ts";

/**
 * The loop and its end, 63 bytes:
 * ```
 * 0:  48 8b 03      mov  (%rbx),%rax
 * 3:  48 8b 7b 08   mov  0x8(%rbx),%rdi
 * 7:  48 8b 73 10   mov  0x10(%rbx),%rsi
 * 11: 48 8b 53 18   mov  0x18(%rbx),%rdx
 * 15: 4c 8b 53 20   mov  0x20(%rbx),%r10
 * 19: 4c 8b 43 28   mov  0x28(%rbx),%r8
 * 23: 4c 8b 4b 30   mov  0x30(%rbx),%r9
 * 27: 0f 05         syscall
 * 29: 48 89 43 38   mov  %rax,0x38(%rbx)
 * 33: 48 83 c3 40   add  $0x40,%rbx
 * 37: 48 83 3b ff   cmpq $-1,(%rbx)
 * 41: 75 d5         jne  0
 * 43: 48 8b 7b 08   mov  0x8(%rbx),%rdi     (the end entry: tgid,
 * 47: 48 8b 73 10   mov  0x10(%rbx),%rsi     tid,
 * 51: 48 8b 53 18   mov  0x18(%rbx),%rdx     signal)
 * 55: b8 ea 00 00 00  mov $234,%eax         (tgkill)
 * 60: ff 63 20      jmp  *0x20(%rbx)        (to `syscall; ret`)
 * ```
 */
// deno-fmt-ignore
export const BATCH_CODE: Uint8Array = new Uint8Array([
  0x48, 0x8b, 0x03,
  0x48, 0x8b, 0x7b, 0x08,
  0x48, 0x8b, 0x73, 0x10,
  0x48, 0x8b, 0x53, 0x18,
  0x4c, 0x8b, 0x53, 0x20,
  0x4c, 0x8b, 0x43, 0x28,
  0x4c, 0x8b, 0x4b, 0x30,
  0x0f, 0x05,
  0x48, 0x89, 0x43, 0x38,
  0x48, 0x83, 0xc3, 0x40,
  0x48, 0x83, 0x3b, 0xff,
  0x75, 0xd5,
  0x48, 0x8b, 0x7b, 0x08,
  0x48, 0x8b, 0x73, 0x10,
  0x48, 0x8b, 0x53, 0x18,
  0xb8, 0xea, 0x00, 0x00, 0x00,
  0xff, 0x63, 0x20,
]);

/**
 * Offset in {@link BATCH_CODE} just past its `syscall`: where a quiet
 * signal that became pending from elsewhere is taken once the last entry
 * unblocked it (before the tgkill); the batch's own stop is at the `ret` of
 * the `syscall; ret` it jumps to.
 */
export const BATCH_AFTER_SYSCALL = 29;

/** Bytes of one table entry. */
const ENTRY = 64;

/** One syscall of a batch: its number and up to six arguments. */
export interface BatchStep {
  nr: number;
  args: readonly (number | bigint)[];
}

/** The signal that ends a batch and the ids (as the target's pid namespace numbers them) to send it to. */
export interface BatchStop {
  signal: number;
  tgid: number;
  tid: number;
}

/** Bytes the table of `steps` syscalls takes (with the unblock entry, the end entry, a spare one and the mask word). */
export function batchTableBytes(steps: number): number {
  return (steps + 3) * ENTRY + 8;
}

/**
 * Encodes the table of `steps` for address `at`, ending with the stop
 * `stop`, whose tgkill is issued at `site` (a `syscall; ret` in the target).
 */
export function encodeBatchTable(
  at: bigint,
  steps: readonly BatchStep[],
  stop: BatchStop,
  site: bigint,
): Uint8Array {
  const n = steps.length;
  const out = new Uint8Array(batchTableBytes(n));
  const dv = new DataView(out.buffer);
  const maskAt = (n + 3) * ENTRY;
  const SIG_SETMASK = 2;
  const all: BatchStep[] = [
    ...steps,
    { nr: SYS.rt_sigprocmask, args: [SIG_SETMASK, at + BigInt(maskAt), 0, 8] },
  ];
  all.forEach((s, i) => {
    dv.setBigInt64(i * ENTRY, BigInt(s.nr), true);
    s.args.forEach((a, j) =>
      dv.setBigUint64(i * ENTRY + 8 + j * 8, BigInt.asUintN(64, BigInt(a)), true)
    );
  });
  // The end entry: the tgkill the code issues at `site`.
  const end = all.length * ENTRY;
  dv.setBigInt64(end, -1n, true);
  dv.setBigUint64(end + 8, BigInt(stop.tgid), true);
  dv.setBigUint64(end + 16, BigInt(stop.tid), true);
  dv.setBigUint64(end + 24, BigInt(stop.signal), true);
  dv.setBigUint64(end + 32, site, true);
  dv.setBigUint64(maskAt, BigInt.asUintN(64, ~(1n << BigInt(stop.signal - 1))), true);
  return out;
}

/** The results (raw rax, -errno on failure) of the `steps` syscalls from the table's bytes. */
export function batchResults(table: Uint8Array, steps: number): bigint[] {
  const dv = new DataView(table.buffer, table.byteOffset, table.byteLength);
  return Array.from({ length: steps }, (_, i) => dv.getBigInt64(i * ENTRY + 56, true));
}

/**
 * Writes {@link BATCH_CODE} at `at` in process `pid` through /proc/<pid>/mem
 * (which writes into a mapping without write permission, as a debugger
 * does); with `pages`, at the start of each of that many pages from `at`
 * (fresh pages: the rest of each is written with the zeros it holds).
 */
export function installBatchCode(pid: number, at: bigint, pages = 1): void {
  // All pages in one write (the pages are fresh: zero but for the code at each start).
  const bytes = new Uint8Array((pages - 1) * 4096 + BATCH_CODE.length);
  for (let p = 0; p < pages; p++) bytes.set(BATCH_CODE, p * 4096);
  const f = Deno.openSync(`/proc/${pid}/mem`, { read: true, write: true });
  try {
    f.seekSync(at, Deno.SeekMode.Start);
    for (let d = 0; d < bytes.length;) d += f.writeSync(bytes.subarray(d));
  } finally {
    f.close();
  }
}
