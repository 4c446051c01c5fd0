/**
 * A file read to its end on another thread: a syscall table
 * (ffi/syscall_table.ts) of `read`s of one fd, each into its own slot of
 * one buffer, started at once and polled ({@link ReadAhead.done}) without
 * the event loop. For /proc text files whose size is known roughly
 * beforehand (a seq_file returns whole slots until its end: each `read`
 * fills the slot it is given but the last): the reads beyond the end
 * return 0, which proves the end was seen.
 *
 * @module
 */

import { SYS } from "./sysno.ts";
import { SyscallTable, type TableRun } from "./syscall_table.ts";

/** What {@link ReadAhead.collect} read. */
export interface ReadAheadResult {
  /** The bytes read, in file order. */
  bytes: Uint8Array;
  /** Whether a `read` returned 0 (the end of the file was seen). */
  complete: boolean;
  /** The errno of the first failed `read`, if one failed. */
  errno?: number;
}

/** `slots` reads of `slotBytes` each from raw fd `fd` (kept open by the caller until done). */
export class ReadAhead {
  readonly #table: SyscallTable;
  readonly #run: TableRun;
  readonly #buf: Uint8Array<ArrayBuffer>;
  readonly #slots: number;
  readonly #slotBytes: number;

  /** Starts the reads on one of Deno's blocking-pool threads. */
  constructor(fd: number, slots: number, slotBytes = 4096) {
    this.#slots = slots;
    this.#slotBytes = slotBytes;
    this.#buf = new Uint8Array(slots * slotBytes);
    const t = this.#table = new SyscallTable(slots);
    for (let i = 0; i < slots; i++) {
      t.syscall(SYS.read, fd, this.#buf.subarray(i * slotBytes, (i + 1) * slotBytes), slotBytes);
    }
    this.#run = t.run();
  }

  /** Whether every read ran. */
  done(): boolean {
    return this.#run.done();
  }

  /** Resolves once every read ran. */
  get finished(): Promise<void> {
    return this.#run.finished;
  }

  /** The bytes read (only once {@link done}). */
  collect(): ReadAheadResult {
    if (!this.done()) throw new Error("read-ahead still running");
    const parts: Uint8Array[] = [];
    let total = 0, complete = false, errno: number | undefined, whole = true;
    for (let i = 0; i < this.#slots; i++) {
      const r = this.#table.result(i);
      if (r < 0n) {
        errno = Number(-r);
        break;
      }
      if (r === 0n) {
        complete = true;
        break;
      }
      const n = Number(r);
      if (total !== i * this.#slotBytes) whole = false; // a slot before this one was not full
      parts.push(this.#buf.subarray(i * this.#slotBytes, i * this.#slotBytes + n));
      total += n;
    }
    const more = errno !== undefined ? { errno } : {};
    // Every slot full but the last: the bytes already follow each other in the buffer.
    if (whole) return { bytes: this.#buf.subarray(0, total), complete, ...more };
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      bytes.set(p, at);
      at += p.length;
    }
    return { bytes, complete, ...more };
  }
}
