/**
 * The page-loading ops of a mapping's restore (eager restore): each run of
 * pages recorded in the image is faulted in (`MADV_POPULATE_WRITE`, from
 * 64 KiB up) and read from the image file with `pread` (at most 1 GiB per
 * call).
 *
 * A mapping with at least {@link SPLIT_MIN} bytes of pages is loaded by
 * two threads of the restored process: the stub starts a temporary helper
 * thread (clone3 with `CLONE_THREAD | CLONE_VM | CLONE_UNTRACED`) that
 * loads the second half of the mapping's pages while the main thread
 * loads the first; the main thread then waits for the helper's exit
 * (`CLONE_CHILD_CLEARTID` clears a word of the program's data and wakes
 * its futex) before anything else touches the mapping. The kernel's page
 * allocation and copy then run on two cores.
 *
 * The helper never takes a pid the restore needs: its tid is chosen with
 * `set_tid`, from the top of the pid range, outside every pid and tid of
 * the tree's images ({@link pageHelperTid}). When that tid is taken (or
 * above the namespace's pid_max), clone3 fails and the main thread loads
 * the helper's half itself. Which it is, the main thread learns from the
 * word the clone itself wrote (a scratch slot, zeroed first, that
 * `CLONE_PARENT_SETTID` fills and `CLONE_CHILD_CLEARTID` clears):
 * `tgkill(pid, word, 0)` succeeds only for a helper this clone made and
 * that still runs. (Checking the tid itself was wrong: an earlier helper
 * of the same process, with the same tid, may still be exiting when the
 * next clone3 fails on its tid, and it answered the check: that half of
 * the pages was never loaded.) Were the helper already gone, a second
 * `pread` of the same pages writes the same bytes. The helper is not traced
 * (`CLONE_UNTRACED`): the restore session never sees it; a SIGKILL of the
 * process (cryo's kill of a failed restore, `PTRACE_O_EXITKILL`) ends it
 * with the process. A failing op of the helper stops at the stub's FAIL
 * `int3`: untraced, the helper dies of SIGTRAP, and with it the whole
 * process, which the session reports as a failed restore.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { Errno } from "../../ffi/errno.ts";
import { CLONE } from "../../ffi/structs.ts";
import { cloneArgs } from "../../ffi/structs.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";
import type { Mapping, ProcessImage } from "../model.ts";
import { type HexNum, hexNum, hexPlus } from "../image/hexnum.ts";
import { zombiePids } from "../task/zombies.ts";

/** One `pread` moves at most this much (below 0x7ffff000). */
const PREAD_MAX = 1 << 30;
/** Runs from this size up are faulted in before the pread (cheaper than a fault per page). */
const POPULATE_MIN = 64 << 10;
const MADV_POPULATE_WRITE = 23;
/**
 * A mapping with this many bytes of pages or more is loaded by two threads
 * (the helper's clone3, futex wait and exit cost ~0.1 ms; a MiB of pages
 * ~0.6 ms of one thread here: python-128MiB's mappings of 2 to 16 MiB,
 * 30 MiB in all, were loaded by one thread while the other CPU idled;
 * docs/PERFORMANCE.md, "Small restores, seventh pass").
 */
export const SPLIT_MIN = 2 << 20;
/** clone(2)'s CLONE_UNTRACED: no tracer's TRACECLONE attaches to the helper. */
const CLONE_UNTRACED = 0x800000n;
const FUTEX_WAIT = 0;
const PAGE = 4096;

/** One pread of pages: `length` bytes at `addr` from `fileOffset` of the image. */
export interface Piece {
  addr: HexNum;
  length: number;
  fileOffset: number;
}

/** `runs` (in order) cut into pieces of at most {@link PREAD_MAX} bytes. */
function piecesOf(runs: readonly Piece[]): Piece[] {
  const out: Piece[] = [];
  for (const run of runs) {
    for (let done = 0; done < run.length; done += PREAD_MAX) {
      out.push({
        addr: hexPlus(run.addr, done),
        length: Math.min(PREAD_MAX, run.length - done),
        fileOffset: run.fileOffset + done,
      });
    }
  }
  return out;
}

/** Splits `pieces` into two lists of about the same bytes (a piece cut at a page boundary). */
export function splitPieces(pieces: readonly Piece[]): [Piece[], Piece[]] {
  const total = pieces.reduce((a, p) => a + p.length, 0);
  const half = Math.floor(total / 2 / PAGE) * PAGE;
  const first: Piece[] = [];
  const second: Piece[] = [];
  let seen = 0;
  for (const p of pieces) {
    if (seen >= half) second.push(p);
    else if (seen + p.length <= half) first.push(p);
    else {
      const cut = half - seen;
      first.push({ addr: p.addr, length: cut, fileOffset: p.fileOffset });
      second.push({
        addr: hexPlus(p.addr, cut),
        length: p.length - cut,
        fileOffset: p.fileOffset + cut,
      });
    }
    seen += p.length;
  }
  return [first, second];
}

function emitPieces(p: ProgramBuilder, pieces: readonly Piece[], imageSlot: number): void {
  for (const piece of pieces) {
    if (piece.length >= POPULATE_MIN) {
      p.op(SYS.madvise, [piece.addr, piece.length, MADV_POPULATE_WRITE], { allowFail: true });
    }
    p.op(SYS.pread64, [slot(imageSlot), piece.addr, piece.length, piece.fileOffset]);
  }
}

let pidMaxCache: number | undefined;

/** The host's pid_max (/proc/sys/kernel/pid_max), 4194304 when unreadable. */
function pidMax(): number {
  if (pidMaxCache === undefined) {
    try {
      pidMaxCache = Number(Deno.readTextFileSync("/proc/sys/kernel/pid_max").trim()) || 4194304;
    } catch {
      pidMaxCache = 4194304;
    }
  }
  return pidMaxCache;
}

/** Whether no task has the id `tid` now (`kill(tid, 0)` says ESRCH). */
function tidFree(tid: number): boolean {
  return rawSyscall(SYS.kill, tid, 0) === -BigInt(Errno.ESRCH);
}

/**
 * The tid of `proc`'s page helper: counted down from the top of the pid
 * range, one per process of the tree (in pid order), skipping every pid,
 * tid and zombie of the tree's images, and the ids in use now (`free`).
 * Never a pid the restore creates. Taken by the time the helper starts,
 * the main thread loads its pages (see the module doc).
 */
export function pageHelperTid(
  proc: ProcessImage,
  images: ReadonlyMap<number, ProcessImage> | undefined,
  max: number = pidMax(),
  free: (tid: number) => boolean = tidFree,
): number {
  const all = images ? [...images.values()] : [proc];
  const taken = new Set<number>(zombiePids(all));
  for (const i of all) {
    taken.add(i.pid);
    for (const t of i.threads) taken.add(t.tid);
  }
  const order = all.map((i) => i.pid).sort((a, b) => a - b);
  let rank = Math.max(0, order.indexOf(proc.pid));
  let tid = max - 1;
  for (;;) {
    // Never below 300 (the kernel's RESERVED_PIDS); the kernel refuses a taken one anyway.
    while (tid > 300 && (taken.has(tid) || !free(tid))) tid--;
    if (rank === 0) return tid;
    rank--;
    tid--;
  }
}

/** The page helper of one process: its tid and the scratch slot its clone writes. */
export interface PageHelper {
  /** From {@link pageHelperTid}. */
  tid: number;
  /** A slot free while pages load (the program's scratch slot). */
  slot: number;
  /** Its address in the restored process. */
  slotAddress: bigint;
}

/**
 * Emits the loading of `m`'s pages (see the module doc); `helper` from
 * {@link pageHelperTid}. Every op that changes the mapping afterwards
 * (mprotect, madvise flags) comes after the helper has exited.
 */
export function emitPageLoads(
  p: ProgramBuilder,
  proc: ProcessImage,
  m: Mapping,
  imageSlot: number,
  helper: PageHelper,
): void {
  const runs = m.pages.map((r) => ({
    addr: hexNum(r.addr),
    length: r.length,
    fileOffset: r.fileOffset,
  }));
  emitRunLoads(p, proc, runs, imageSlot, helper, m.start);
}

/**
 * Emits the loading of `runs` (pages at `addr` from `fileOffset` of the
 * image, in order), as {@link emitPageLoads} does for one mapping's: with
 * the helper from {@link SPLIT_MIN} bytes on. `key` names the program's
 * labels (the address of the first mapping they belong to: unique).
 */
export function emitRunLoads(
  p: ProgramBuilder,
  proc: ProcessImage,
  runs: readonly Piece[],
  imageSlot: number,
  helper: PageHelper,
  key: string,
): void {
  const pieces = piecesOf(runs);
  const total = pieces.reduce((a, piece) => a + piece.length, 0);
  if (total < SPLIT_MIN) return emitPieces(p, pieces, imageSlot);
  const [mine, theirs] = splitPieces(pieces);
  const at = key;
  const helperTid = helper.tid;
  // The futex word, in the scratch slot: 0, then the helper's tid while it runs
  // (CLONE_PARENT_SETTID, only if clone3 made it), 0 again once it exited.
  const word = helper.slotAddress;
  p.op(SYS.rt_sigprocmask, [0, 0, 0, 8], { store: helper.slot, comment: "zero the helper's word" });
  const flags = CLONE.VM | CLONE.FS | CLONE.FILES | CLONE.SIGHAND | CLONE.THREAD |
    CLONE.SYSVSEM | CLONE_UNTRACED | CLONE.PARENT_SETTID | CLONE.CHILD_CLEARTID;
  const args = p.data(cloneArgs.encode({
    flags,
    pidfd: 0n,
    childTid: word,
    parentTid: word,
    exitSignal: 0n,
    stack: 0n,
    stackSize: 0n,
    tls: 0n,
    cgroup: 0n,
    setTid: p.u64s([helperTid]),
    setTidSize: 1n,
  }));
  const helperLabel = `page-helper-${at}`;
  const mineLabel = `page-main-${at}`;
  const join = `page-join-${at}`;
  const after = `page-after-${at}`;
  p.op(SYS.clone3, [args, cloneArgs.size], {
    allowFail: true,
    jumpIfZeroTo: helperLabel,
    comment: `page helper thread ${helperTid} loads half of ${at}'s pages`,
  });
  // The tid this clone wrote (0 when it made no helper, or once its helper exited).
  p.op(SYS.tgkill, [proc.pid, slot(helper.slot), 0], {
    allowFail: true,
    jumpIfZeroTo: mineLabel,
    comment: "the helper runs; else load its half here",
  });
  emitPieces(p, theirs, imageSlot);
  p.label(mineLabel);
  emitPieces(p, mine, imageSlot);
  p.label(join);
  // Woken (0): wait again, until the word is 0 (EAGAIN); a spurious wake-up waits again.
  p.op(SYS.futex, [word, FUTEX_WAIT, helperTid, 0, 0, 0], {
    allowFail: true,
    jumpIfZeroTo: join,
    comment: "wait for the page helper's exit",
  });
  // The word is cleared before the helper's tid is free again: wait (yielding) until it is,
  // so that the next mapping's helper can take the same tid (else its clone3 fails, EEXIST,
  // and this thread loads that whole mapping alone). ESRCH for a tid that is not this
  // process's (no helper was made, the tid being someone else's) ends it at once.
  const gone = `page-gone-${at}`;
  const yieldLabel = `page-yield-${at}`;
  p.label(gone);
  p.op(SYS.tgkill, [proc.pid, helperTid, 0], {
    allowFail: true,
    jumpIfZeroTo: yieldLabel,
    comment: "the page helper's tid still taken",
  });
  // Always 0 (a no-op): the main thread jumps over the helper's code.
  p.op(SYS.rt_sigprocmask, [0, 0, 0, 8], { jumpIfZeroTo: after });
  p.label(yieldLabel);
  p.op(SYS.sched_yield, [], { jumpIfZeroTo: gone });
  p.label(helperLabel);
  emitPieces(p, theirs, imageSlot);
  p.op(SYS.exit, [0], { comment: "the page helper ends" });
  p.label(after);
}
