/**
 * The children files of a process's seized threads
 * (/proc/<pid>/task/<tid>/children), opened while the interrupted threads
 * enter their stops and read once they are stopped by a syscall table run on
 * cryo's thread: one FFI call for all of them instead of an open, a read
 * and a close per thread in the freeze (engine/dump/freeze.ts; 64 of each
 * for threads-64). A children file is generated at each read (offset 0 of
 * a seq_file): the text is the thread's children at the read, as a fresh
 * open gives.
 *
 * Why an fd opened ahead names the thread read: the files are opened after
 * the threads were seized by this thread, and are read only for threads
 * that reported their stop since (not their exit). A traced thread that
 * exits stays a zombie until its tracer waits for it, so its tid cannot
 * name another thread meanwhile. Any other thread, a failed read or a text
 * that may be cut is read the usual way.
 *
 * @module
 */

import {
  closeRawFdsOffThread,
  openRawFd,
  SyscallTable,
  tablesRunHere,
} from "../../ffi/syscall_table.ts";
import { SYS } from "../../ffi/sysno.ts";
import { ProcEntryNotFoundError } from "./errors.ts";
import {
  childrenFileSupported,
  parseIds,
  readChildrenOfThreads,
  readTaskChildren,
} from "./tasks.ts";

/** Bytes read of each children file (a longer one is read again the usual way). */
const SLOT = 1024;
/** Fewest threads worth the files opened ahead. */
export const CHILDREN_AHEAD_MIN = 8;

/** Table runs of {@link ChildrenFiles.read} in this process (tests). */
export const childrenAheadStats = { runs: 0 };

const decoder = new TextDecoder();

/** Fds left open by {@link ChildrenFiles.closeLater}. */
const left: number[] = [];

/** Closes the files left by {@link ChildrenFiles.closeLater} (on another thread). */
export function closeChildrenFilesLeft(): void {
  if (left.length) closeRawFdsOffThread(left.splice(0));
}

/** The children files of some threads of one process, open, and the table that reads them. */
export class ChildrenFiles {
  readonly #pid: number;
  /** Open fd of each thread's children file. */
  readonly #fds = new Map<number, number>();
  /** Entry (and slot) of each thread. */
  readonly #slots = new Map<number, number>();
  #buf: Uint8Array<ArrayBuffer>;
  #table: SyscallTable;

  private constructor(pid: number, tids: readonly number[]) {
    this.#pid = pid;
    for (const tid of tids) {
      try {
        this.#fds.set(tid, openRawFd(`/proc/${pid}/task/${tid}/children`, false));
      } catch { /* gone: read the usual way */ }
    }
    this.#buf = new Uint8Array(this.#fds.size * SLOT);
    this.#table = new SyscallTable(this.#fds.size);
    let i = 0;
    for (const [tid, fd] of this.#fds) {
      const slot = this.#buf.subarray(i * SLOT, (i + 1) * SLOT);
      this.#slots.set(tid, this.#table.syscall(SYS.pread64, fd, slot, SLOT, 0));
      i++;
    }
  }

  /**
   * Opens the children files of threads `tids` of `pid` (seized by this
   * thread, their stops not yet awaited), or undefined for fewer than `minThreads`,
   * without children files, or where tables cannot run here.
   */
  static open(
    pid: number,
    tids: readonly number[],
    minThreads = CHILDREN_AHEAD_MIN,
  ): ChildrenFiles | undefined {
    if (tids.length < minThreads || !tablesRunHere() || !childrenFileSupported()) return undefined;
    return new ChildrenFiles(pid, tids);
  }

  /** Forgets thread `tid` (it exited: its tid may name another thread later). */
  forget(tid: number): void {
    this.#slots.delete(tid);
  }

  /**
   * The children of the process whose threads are `tids` (each stopped
   * since its file was opened, or not opened here), as
   * engine/proc/tasks.ts `readChildrenOfThreads` gives them (the union,
   * ascending; a thread gone is skipped): the files of the threads opened
   * here read in one table run, the others the usual way.
   */
  read(tids: readonly number[]): number[] {
    const pid = this.#pid;
    const mine = tids.filter((t) => this.#slots.has(t));
    if (mine.length === 0) return readChildrenOfThreads(pid, tids);
    this.#table.runHere(); // every file opened here, read again at each call
    childrenAheadStats.runs++;
    const all = new Set<number>();
    const add = (ids: number[]) => {
      for (const c of ids) all.add(c);
    };
    for (const tid of tids) {
      const i = this.#slots.get(tid);
      const n = i === undefined ? -1n : this.#table.result(i);
      if (n === 0n) continue; // no children
      if (n > 0n && n < BigInt(SLOT)) {
        const text = decoder.decode(this.#buf.subarray(i! * SLOT, i! * SLOT + Number(n)));
        add(parseIds(text));
        continue;
      }
      try {
        add(readTaskChildren(pid, tid)); // the usual way
      } catch (err) {
        if (err instanceof ProcEntryNotFoundError) continue; // gone
        throw err;
      }
    }
    return [...all].sort((x, y) => x - y);
  }

  /** Closes the files (on another thread: see ffi/syscall_table.ts `closeRawFdsOffThread`). */
  close(): void {
    closeRawFdsOffThread([...this.#fds.values()]);
    this.#fds.clear();
    this.#slots.clear();
  }

  /** Leaves the files to {@link closeChildrenFilesLeft} (a freeze need not close them). */
  closeLater(): void {
    left.push(...this.#fds.values());
    this.#fds.clear();
    this.#slots.clear();
  }
}
