/**
 * Reads of another process's memory into local buffers, run by a syscall
 * table (ffi/syscall_table.ts) on one of Deno's blocking-pool threads: per
 * buffer, one `process_vm_readv` per up to IOV_MAX readable pieces and one
 * `pread` of /proc/<pid>/mem per unreadable piece, packed one after the
 * other from the buffer's start. No JavaScript runs per read; cryo's
 * thread polls each buffer's entries ({@link VmReadTable.filled}).
 *
 * @module
 */

import { addressOf } from "./libc.ts";
import { IOV_MAX } from "./process_vm.ts";
import { SYS } from "./sysno.ts";
import { closeRawFd, openRawFd, SyscallTable, type TableRun } from "./syscall_table.ts";

/** A cell nobody notifies: `Atomics.wait` on it only times out (a short blocking sleep). */
const cell = new Int32Array(new SharedArrayBuffer(4));
const nap = () => Atomics.wait(cell, 0, 0, 0.02);

/** One entry and the bytes it must return. */
interface Expect {
  entry: number;
  bytes: number;
}

/** The reads of one process's memory into buffers, each checked on its own. */
export class VmReadTable {
  readonly #pid: number;
  readonly #table = new SyscallTable(64);
  /** Each buffer's entries. */
  readonly #buffers: Expect[][] = [];
  #memFd = -1;
  #run: TableRun | undefined;

  /** Reads of process `pid`. */
  constructor(pid: number) {
    this.#pid = pid;
  }

  /**
   * Adds the reads filling `local` from its start with `pieces` (address,
   * length, readable: three entries a piece), in order; adjacent readable
   * pieces are one remote piece. Returns the buffer's index. `local` must
   * stay alive until the run is over (the table keeps it).
   */
  addBuffer(local: Uint8Array<ArrayBuffer>, pieces: readonly (number | boolean)[]): number {
    const expects: Expect[] = [];
    const base = addressOf(local);
    this.#table.keep(local);
    let at = 0;
    let iov: number[] = [];
    let iovAt = 0, iovBytes = 0;
    const flush = () => {
      if (!iov.length) return;
      const remote = new BigUint64Array(iov.length);
      for (let i = 0; i < iov.length; i++) remote[i] = BigInt(iov[i]);
      const localIov = new BigUint64Array([base + BigInt(iovAt), BigInt(iovBytes)]);
      const entry = this.#table.syscall(
        SYS.process_vm_readv,
        this.#pid,
        localIov,
        1,
        remote,
        iov.length / 2,
        0,
      );
      expects.push({ entry, bytes: iovBytes });
      iov = [];
      iovBytes = 0;
    };
    for (let i = 0; i < pieces.length; i += 3) {
      const addr = pieces[i] as number, len = pieces[i + 1] as number;
      if (pieces[i + 2]) {
        const n = iov.length;
        if (n && iov[n - 2] + iov[n - 1] === addr) iov[n - 1] += len;
        else {
          if (n === 2 * IOV_MAX) flush();
          if (!iov.length) iovAt = at;
          iov.push(addr, len);
        }
        iovBytes += len;
      } else {
        flush();
        if (this.#memFd < 0) this.#memFd = openRawFd(`/proc/${this.#pid}/mem`, false);
        const entry = this.#table.syscall(SYS.pread64, this.#memFd, base + BigInt(at), len, addr);
        expects.push({ entry, bytes: len });
      }
      at += len;
    }
    flush();
    if (at > local.length) throw new RangeError(`${at} bytes of reads into ${local.length}`);
    this.#buffers.push(expects);
    return this.#buffers.length - 1;
  }

  /**
   * Adds a sleep of `ms` milliseconds before the reads added after it
   * (tests: a table that falls behind).
   */
  addDelay(ms: number): void {
    const ts = new BigUint64Array([BigInt(Math.floor(ms / 1000)), BigInt((ms % 1000) * 1e6)]);
    this.#table.syscall(SYS.nanosleep, ts, 0);
  }

  /** Starts the reads on another thread. */
  start(): void {
    this.#run = this.#table.run();
  }

  /**
   * Whether buffer `i`'s reads ran and each read all its bytes (false: one
   * failed or fell short: the buffer holds no sure bytes), without
   * waiting: undefined while some have not run yet.
   */
  filledSoFar(i: number): boolean | undefined {
    if (!this.#run) return false;
    let all = true;
    for (const e of this.#buffers[i]) {
      const r = this.#table.resultSoFar(e.entry);
      if (r === 0n) return undefined;
      if (r !== BigInt(e.bytes)) all = false;
    }
    return all;
  }

  /**
   * Waits until buffer `i`'s reads ran; whether each read all its bytes
   * (false: a read failed or fell short, the buffer holds no sure bytes).
   */
  filled(i: number): boolean {
    const expects = this.#buffers[i];
    if (!this.#run) return false;
    for (const e of expects) {
      let r = this.#table.resultSoFar(e.entry);
      while (r === 0n && !this.#run.done()) {
        nap();
        r = this.#table.resultSoFar(e.entry);
      }
      if (r === 0n) r = this.#table.result(e.entry);
      if (r !== BigInt(e.bytes)) return false;
    }
    return true;
  }

  /** Whether every read ran (the buffers are free again). */
  done(): boolean {
    return !this.#run || this.#run.done();
  }

  /** Waits until every read ran (the buffers may be reused then), and closes the fd. */
  finish(): void {
    if (this.#run) { while (!this.#run.done()) nap(); }
    this.#close();
  }

  /**
   * Without waiting: once every read ran, closes the fd and calls `then`
   * (at once when they did); until then the table keeps its buffers.
   */
  finishLater(then: () => void): void {
    if (this.done()) {
      this.#close();
      then();
      return;
    }
    this.#run!.finished.then(() => {
      this.#close();
      then();
    });
  }

  #close(): void {
    if (this.#memFd >= 0) closeRawFd(this.#memFd);
    this.#memFd = -1;
  }
}
