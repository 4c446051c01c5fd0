/**
 * A queue of `pwrite`s served by one thread: a syscall table
 * (ffi/syscall_table.ts) of `capacity` pairs "wait on futex word j; pwrite
 * j", started once. {@link WriteQueue.post} fills in write j's arguments,
 * then sets word j and wakes the thread: each write costs cryo's thread one
 * `futex` wake, not a blocking-pool call of its own (whose thread start
 * cost ~1 ms each, 40 of them in a freeze).
 *
 * With `foldBytes`, each write is preceded by a CRC fold of its buffer
 * (ffi/crc32_fold.ts), on the same thread: {@link WriteQueue.remainder}.
 *
 * A write not yet posted names fd -1 (and its fold a zeroed buffer of
 * `foldBytes`, so that a fold run with half-set arguments reads nothing
 * else): if the wait ever returns early (a signal), the `pwrite` fails
 * with EBADF and its result says so; the caller then writes and sums it
 * itself ({@link WriteQueue.result}). Entries never posted are released
 * by {@link WriteQueue.close}.
 *
 * @module
 */

import { addressOf, rawSyscall } from "./libc.ts";
import { SYS } from "./sysno.ts";
import { SyscallTable, type TableRun } from "./syscall_table.ts";

const FUTEX_WAIT_PRIVATE = 128 | 0, FUTEX_WAKE_PRIVATE = 128 | 1;

/** Errno of a write run before it was posted (fd -1). */
export const EBADF = 9;

/** Errno of a wait whose word was already set (posted before the thread reached it). */
const EAGAIN = 11;

/** Up to `capacity` writes, each run by the queue's thread once posted, in order. */
export class WriteQueue {
  /** Writes it can take. */
  readonly capacity: number;
  readonly #table: SyscallTable;
  readonly #flags: Int32Array<ArrayBuffer>;
  readonly #flagsAt: bigint;
  readonly #run: TableRun;
  /** Entries per write: wait, (fold,) pwrite. */
  readonly #step: number;
  /** Each write's fold remainder (16 bytes), with folds. */
  readonly #remainders: Uint8Array<ArrayBuffer>[] = [];
  readonly #foldBytes: number;
  #posted = 0;
  #closed: Promise<void> | undefined;

  /**
   * Starts the thread, waiting for the first write; with `foldBytes`
   * (the largest write, a multiple of 16), each is summed first.
   */
  constructor(capacity: number, foldBytes?: number) {
    this.capacity = capacity;
    this.#foldBytes = foldBytes ?? 0;
    this.#step = foldBytes ? 3 : 2;
    this.#flags = new Int32Array(capacity);
    const bytes = new Uint8Array(this.#flags.buffer);
    this.#flagsAt = addressOf(bytes);
    const t = this.#table = new SyscallTable(this.#step * capacity);
    t.keep(bytes);
    const blank = foldBytes ? new Uint8Array(foldBytes) : undefined; // never written: no RSS
    if (blank) t.keep(blank);
    for (let j = 0; j < capacity; j++) {
      t.syscall(SYS.futex, this.#flagsAt + BigInt(4 * j), FUTEX_WAIT_PRIVATE, 0, 0);
      if (blank) {
        const out = new Uint8Array(16);
        this.#remainders.push(out);
        t.fold(addressOf(blank), 64, 0xffffffff, out);
      }
      t.syscall(SYS.pwrite64, -1, 0, 0, 0);
    }
    this.#run = t.run();
  }

  /** Whether each write is summed (a CRC fold) before it is written. */
  get folds(): boolean {
    return this.#step === 3;
  }

  /** Writes posted so far. */
  get posted(): number {
    return this.#posted;
  }

  /**
   * Posts the write of `length` (> 0) bytes of `buf` at `offset` of raw fd
   * `fd`; returns its index, or -1 when the queue is full or closed. `buf`
   * must stay alive and unchanged until {@link result} gives its result.
   */
  post(fd: number, buf: Uint8Array<ArrayBuffer>, length: number, offset: number): number {
    if (this.#posted === this.capacity || this.#closed) return -1;
    if (this.folds && (length > this.#foldBytes || length % 16 !== 0 || length < 64)) return -1;
    const j = this.#posted++;
    const at = this.#step * j;
    if (this.folds) this.#table.patch(at + 1, [addressOf(buf), length]);
    this.#table.patch(at + this.#step - 1, [fd, buf, length, offset]);
    this.#release(j);
    return j;
  }

  /** Write `j`'s result (bytes written, or -errno), or undefined while it has not run. */
  result(j: number): bigint | undefined {
    const r = this.#table.result(this.#step * j + this.#step - 1);
    return r === 0n ? undefined : r;
  }

  /**
   * Whether write `j`'s wait ended otherwise than by its post (a signal):
   * its fold may then have summed the blank buffer although its `pwrite`
   * saw the posted arguments, so the caller sums (and, on EBADF, writes)
   * it itself. Only once {@link result} is known.
   */
  wokeEarly(j: number): boolean {
    const r = this.#table.result(this.#step * j);
    return r !== 0n && r !== -BigInt(EAGAIN);
  }

  /**
   * The CRC fold remainder of write `j`'s buffer (engine/image/crc32.ts
   * `crc32AfterFold` finishes it), once {@link result} is known and not
   * EBADF; with folds only.
   */
  remainder(j: number): Uint8Array {
    return this.#remainders[j];
  }

  #release(j: number): void {
    Atomics.store(this.#flags, j, 1);
    rawSyscall(SYS.futex, this.#flagsAt + BigInt(4 * j), FUTEX_WAKE_PRIVATE, 1);
  }

  /** Releases the entries never posted; resolves once the thread has run every entry. */
  close(): Promise<void> {
    if (!this.#closed) {
      for (let j = this.#posted; j < this.capacity; j++) this.#release(j);
      this.#closed = this.#run.finished;
    }
    return this.#closed;
  }
}
