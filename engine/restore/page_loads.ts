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
 * **By userfaultfd** (a split load of private anonymous memory, when the
 * compile gave a staging area): the range is registered with a
 * userfaultfd of the restored process's own (missing mode, user-mode
 * faults only: no page of it is faulted while it is registered) and each
 * piece of at most {@link STAGE_BYTES} is read into the loading thread's
 * staging buffer and copied in with `UFFDIO_COPY`, which allocates each
 * page and copies into it: no zeroing of the page first and no page-table
 * walk of `MADV_POPULATE_WRITE` (128 MiB on two threads here: 21 to 25 ms
 * against 30 to 36; docs/PERFORMANCE.md, "Small and mid restores, ninth
 * pass"). A `UFFDIO_COPY` that fails (a page already there included)
 * fails the restore. Once both halves are in, the range is unregistered
 * and the userfaultfd closed, before anything else touches the mapping.
 * A kernel or sandbox without userfaultfd, or a range it refuses, loads
 * the pages as above (the same ops, emitted beside); so does a process
 * whose helper does not run when the main thread looks (none was made, or
 * it is done already: its pages are read again), after the range is
 * unregistered. The staging buffers
 * are the bootstrap's vdso scratch area (engine/restore/compile.ts),
 * unused after the exec set-up, mapped afresh by the first such load (the
 * vdso parked there left a hole) and unmapped with the bootstrap.
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
import { placeholderPids } from "../task/groups.ts";
import { unixCredHelperPids } from "../fds/unix.ts";
import { UFFD_API } from "../../ffi/probe.ts";
import { UFFD_USER_MODE_ONLY, UFFDIO, UFFDIO_REGISTER_MODE_MISSING } from "../../ffi/uffd.ts";

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
/** Each loading thread's staging buffer for `UFFDIO_COPY`: half of the 1 MiB staging area. */
export const STAGE_BYTES = 512 << 10;
/**
 * Bytes of one process loaded by userfaultfd at most: each piece of
 * {@link STAGE_BYTES} adds two ops and a 40-byte struct to the program
 * (~170 KiB per 512 MiB), which must fit the bootstrap; a range beyond
 * the budget left loads the usual way, and a program that would not fit
 * is compiled again without these loads (engine/restore/compile.ts).
 */
export const UFFD_BUDGET = 1 << 30;
/** userfaultfd(2) flags: close-on-exec, user-mode faults only (allowed unprivileged). */
const UFFD_FLAGS = 0o2000000 | UFFD_USER_MODE_ONLY;
const PROT_RW = 3;
/** UFFDIO_COPY's ioctl number as a number (the builder writes numbers without a bigint). */
const UFFDIO_COPY_NR = Number(UFFDIO.COPY);
/** 2^32: a u64 written as two u32 halves. */
const TWO32 = 2 ** 32;
/** MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS. */
const MAP_PRIVATE_FIXED_ANON = 0x32;

/** One pread of pages: `length` bytes at `addr` from `fileOffset` of the image. */
export interface Piece {
  addr: HexNum;
  length: number;
  fileOffset: number;
}

/** `runs` (in order) cut into pieces of at most {@link PREAD_MAX} bytes. */
function piecesOf(runs: readonly Piece[]): Piece[] {
  return cutPieces(runs, PREAD_MAX);
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

/** The listeners' credential helper pids of each tree (one walk of its fds per tree, not per process). */
const credHelperMemo = new WeakMap<ReadonlyMap<number, ProcessImage>, number[]>();

function credHelpersOf(
  images: ReadonlyMap<number, ProcessImage> | undefined,
  all: readonly ProcessImage[],
): number[] {
  if (!images) return unixCredHelperPids(all);
  let pids = credHelperMemo.get(images);
  if (!pids) credHelperMemo.set(images, pids = unixCredHelperPids(all));
  return pids;
}

/**
 * The tid of `proc`'s page helper: counted down from the top of the pid
 * range, one per process of the tree (in pid order), skipping every pid,
 * tid and zombie of the tree's images, the pids of its helpers (placeholders,
 * listeners' credential helpers), and the ids in use now (`free`).
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
  const taken = new Set<number>([
    ...zombiePids(all),
    ...placeholderPids(all).map((x) => x.pid),
    ...credHelpersOf(images, all),
  ]);
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
  /**
   * The staging area of the userfaultfd loads: 2 x {@link STAGE_BYTES},
   * free while pages load; none: no userfaultfd loads.
   */
  stage?: bigint;
  /** A slot free while pages load, for the userfaultfd. */
  uffdSlot?: number;
  /** Bytes this process may still load by userfaultfd (starts at {@link UFFD_BUDGET}). */
  uffdBudget?: number;
  /** Whether the staging area was mapped afresh already (the first userfaultfd load does). */
  stageMapped?: boolean;
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
  emitRunLoads(p, proc, runs, imageSlot, helper, m.start, uffdEligible(m));
}

/**
 * Whether `m`'s pages may be loaded by userfaultfd: private anonymous
 * memory that is not hugetlb, nor inherited (a forked child's pages may
 * be there already), nor System V or AIO memory; nor marked for huge
 * pages ("hg": a copy makes small pages where a populate made huge ones),
 * nor registered with a userfaultfd of the program's own ("um", "uw", "ui").
 */
export function uffdEligible(m: Mapping): boolean {
  return m.kind === "anon" && !m.inherited && m.sysvShm === undefined && !m.aio &&
    !UFFD_INELIGIBLE_FLAGS.some((f) => m.vmFlags.includes(f));
}

/** VmFlags that keep a mapping's pages out of the userfaultfd loads (see {@link uffdEligible}). */
const UFFD_INELIGIBLE_FLAGS = ["ht", "hg", "um", "uw", "ui"];

/** `pieces` cut further into pieces of at most `max` bytes (page multiples). */
function cutPieces(pieces: readonly Piece[], max: number): Piece[] {
  const out: Piece[] = [];
  for (const piece of pieces) {
    for (let done = 0; done < piece.length; done += max) {
      out.push({
        addr: hexPlus(piece.addr, done),
        length: Math.min(max, piece.length - done),
        fileOffset: piece.fileOffset + done,
      });
    }
  }
  return out;
}

/** Bytes of one `struct uffdio_copy` (dst, src, len, mode, copy: five u64). */
const COPY_STRUCT = 40;

/**
 * Each piece read into `stage` and copied into place with `UFFDIO_COPY`
 * (which must succeed). The pieces' `struct uffdio_copy`s are laid out
 * side by side in one block of the program's data, and every argument is
 * a number or one shared slot reference: this runs once per 512 KiB of
 * the load (128 times for 64 MiB) in code that is still cold, where a
 * bigint, an array and a view per piece cost ~8 us a piece against ~7
 * (python-128MiB's compile 8.9 -> 8.1 ms; docs/PERFORMANCE.md, "Small
 * and mid restores, tenth pass").
 */
function emitCopies(
  p: ProgramBuilder,
  pieces: readonly Piece[],
  imageSlot: number,
  uffdSlot: number,
  stage: bigint,
): void {
  const cut = cutPieces(pieces, STAGE_BYTES);
  const src = Number(stage); // a user-space address: exact as a number
  const structs = new Uint8Array(cut.length * COPY_STRUCT); // mode and copy stay 0
  const view = new DataView(structs.buffer);
  for (let i = 0; i < cut.length; i++) {
    const at = i * COPY_STRUCT;
    const dst = cut[i].addr;
    if (typeof dst === "number") {
      view.setUint32(at, dst % TWO32, true);
      view.setUint32(at + 4, Math.floor(dst / TWO32), true);
    } else view.setBigUint64(at, dst, true);
    view.setUint32(at + 8, src % TWO32, true);
    view.setUint32(at + 12, Math.floor(src / TWO32), true);
    view.setUint32(at + 16, cut[i].length, true); // at most STAGE_BYTES
  }
  const first = Number(p.data(structs, 8));
  const file = slot(imageSlot);
  const uffd = slot(uffdSlot);
  for (let i = 0; i < cut.length; i++) {
    p.op(SYS.pread64, [file, src, cut[i].length, cut[i].fileOffset]);
    p.op(SYS.ioctl, [uffd, UFFDIO_COPY_NR, first + i * COPY_STRUCT]);
  }
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
  uffd = false,
): void {
  const pieces = piecesOf(runs);
  const total = pieces.reduce((a, piece) => a + piece.length, 0);
  if (total < SPLIT_MIN) return emitPieces(p, pieces, imageSlot);
  const [mine, theirs] = splitPieces(pieces);
  const at = key;
  const byUffd = uffd && helper.stage !== undefined && helper.uffdSlot !== undefined &&
    (helper.uffdBudget ?? 0) >= total;
  const usual = `page-usual-${at}`;
  const after = `page-after-${at}`;
  if (byUffd) {
    helper.uffdBudget! -= total;
    emitUffdLoads(p, proc, pieces, mine, theirs, imageSlot, helper, at, usual, after);
  }
  p.label(usual);
  const helperTid = helper.tid;
  // The futex word, in the scratch slot: 0, then the helper's tid while it runs
  // (CLONE_PARENT_SETTID, only if clone3 made it), 0 again once it exited.
  p.op(SYS.rt_sigprocmask, [0, 0, 0, 8], { store: helper.slot, comment: "zero the helper's word" });
  const args = helperCloneArgs(p, helper);
  const helperLabel = `page-helper-${at}`;
  const mineLabel = `page-main-${at}`;
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
  emitJoin(p, proc, helper, "page", at, after);
  p.label(helperLabel);
  emitPieces(p, theirs, imageSlot);
  p.op(SYS.exit, [0], { comment: "the page helper ends" });
  p.label(after);
}

/** The clone3 arguments of the page helper (see the module doc). */
function helperCloneArgs(p: ProgramBuilder, helper: PageHelper): bigint {
  const word = helper.slotAddress;
  const flags = CLONE.VM | CLONE.FS | CLONE.FILES | CLONE.SIGHAND | CLONE.THREAD |
    CLONE.SYSVSEM | CLONE_UNTRACED | CLONE.PARENT_SETTID | CLONE.CHILD_CLEARTID;
  return p.data(cloneArgs.encode({
    flags,
    pidfd: 0n,
    childTid: word,
    parentTid: word,
    exitSignal: 0n,
    stack: 0n,
    stackSize: 0n,
    tls: 0n,
    cgroup: 0n,
    setTid: p.u64s([helper.tid]),
    setTidSize: 1n,
  }));
}

/**
 * The userfaultfd loads of one split range (see the module doc): jumps to
 * `usual` (the usual loads) when the userfaultfd or its registration is
 * refused, or when no helper runs (after the range is unregistered and
 * the userfaultfd closed); else ends at `after`, the range unregistered
 * and the userfaultfd closed.
 */
function emitUffdLoads(
  p: ProgramBuilder,
  proc: ProcessImage,
  pieces: readonly Piece[],
  mine: readonly Piece[],
  theirs: readonly Piece[],
  imageSlot: number,
  helper: PageHelper,
  at: string,
  usual: string,
  after: string,
): void {
  const u = helper.uffdSlot!;
  const stage = helper.stage!;
  const first = pieces[0];
  const last = pieces[pieces.length - 1];
  const start = BigInt(first.addr);
  const end = BigInt(last.addr) + BigInt(last.length);
  const apiOk = `page-uffd-api-${at}`;
  const registered = `page-uffd-reg-${at}`;
  const refused = `page-uffd-refused-${at}`;
  const helperLabel = `page-uffd-helper-${at}`;
  const mineLabel = `page-uffd-main-${at}`;
  if (!helper.stageMapped) {
    // The exec set-up parked the vdso there (and left a hole): mapped afresh, read-write.
    p.op(SYS.mmap, [stage, 2 * STAGE_BYTES, PROT_RW, MAP_PRIVATE_FIXED_ANON, -1, 0], {
      comment: "the staging area of the userfaultfd loads",
    });
    helper.stageMapped = true;
  }
  p.op(SYS.userfaultfd, [UFFD_FLAGS], {
    allowFail: true,
    store: u,
    comment: `userfaultfd for ${at}'s pages`,
  });
  p.op(SYS.ioctl, [slot(u), UFFDIO.API, p.u64s([UFFD_API, 0n, 0n])], {
    allowFail: true,
    jumpIfZeroTo: apiOk,
  });
  p.label(refused);
  p.op(SYS.close, [slot(u)], { allowFail: true });
  p.op(SYS.rt_sigprocmask, [0, 0, 0, 8], { jumpIfZeroTo: usual, comment: "the usual loads" });
  p.label(apiOk);
  const range = p.u64s([start, end - start]);
  p.op(SYS.ioctl, [
    slot(u),
    UFFDIO.REGISTER,
    p.u64s([start, end - start, UFFDIO_REGISTER_MODE_MISSING, 0n]),
  ], {
    allowFail: true,
    jumpIfZeroTo: registered,
  });
  p.op(SYS.rt_sigprocmask, [0, 0, 0, 8], { jumpIfZeroTo: refused });
  p.label(registered);
  p.op(SYS.rt_sigprocmask, [0, 0, 0, 8], { store: helper.slot, comment: "zero the helper's word" });
  p.op(SYS.clone3, [helperCloneArgs(p, helper), cloneArgs.size], {
    allowFail: true,
    jumpIfZeroTo: helperLabel,
    comment: `page helper thread ${helper.tid} copies half of ${at}'s pages in`,
  });
  p.op(SYS.tgkill, [proc.pid, slot(helper.slot), 0], {
    allowFail: true,
    jumpIfZeroTo: mineLabel,
    comment: "the helper runs; else unregister and load it all the usual way",
  });
  // No helper runs (none was made, or it is done already): the usual loads, from their own
  // clone on (pages the helper copied in are read again, the same bytes).
  p.op(SYS.ioctl, [slot(u), UFFDIO.UNREGISTER, range]);
  p.op(SYS.close, [slot(u)]);
  p.op(SYS.rt_sigprocmask, [0, 0, 0, 8], { jumpIfZeroTo: usual });
  p.label(mineLabel);
  emitCopies(p, mine, imageSlot, u, stage);
  emitJoin(p, proc, helper, "page-uffd", at, after, () => {
    p.op(SYS.ioctl, [slot(u), UFFDIO.UNREGISTER, range], { comment: `${at}'s pages are in` });
    p.op(SYS.close, [slot(u)]);
  });
  p.label(helperLabel);
  emitCopies(p, theirs, imageSlot, u, stage + BigInt(STAGE_BYTES));
  p.op(SYS.exit, [0], { comment: "the page helper ends" });
}

/**
 * The main thread's wait for the page helper of `key`'s load to exit (its
 * futex word cleared) and its tid to be free again, then `done`'s ops and
 * a jump to `after`. Labels `${prefix}-join-${key}` and the like.
 */
function emitJoin(
  p: ProgramBuilder,
  proc: ProcessImage,
  helper: PageHelper,
  prefix: string,
  key: string,
  after: string,
  done?: () => void,
): void {
  const join = `${prefix}-join-${key}`;
  const gone = `${prefix}-gone-${key}`;
  const yieldLabel = `${prefix}-yield-${key}`;
  p.label(join);
  // Woken (0): wait again, until the word is 0 (EAGAIN); a spurious wake-up waits again.
  p.op(SYS.futex, [helper.slotAddress, FUTEX_WAIT, helper.tid, 0, 0, 0], {
    allowFail: true,
    jumpIfZeroTo: join,
    comment: "wait for the page helper's exit",
  });
  // The word is cleared before the helper's tid is free again: wait (yielding) until it is,
  // so that the next mapping's helper can take the same tid (else its clone3 fails, EEXIST,
  // and this thread loads that whole mapping alone). ESRCH for a tid that is not this
  // process's (no helper was made, the tid being someone else's) ends it at once.
  p.label(gone);
  p.op(SYS.tgkill, [proc.pid, helper.tid, 0], {
    allowFail: true,
    jumpIfZeroTo: yieldLabel,
    comment: "the page helper's tid still taken",
  });
  done?.();
  // Always 0 (a no-op): the main thread jumps over the helper's code.
  p.op(SYS.rt_sigprocmask, [0, 0, 0, 8], { jumpIfZeroTo: after });
  p.label(yieldLabel);
  p.op(SYS.sched_yield, [], { jumpIfZeroTo: gone });
}
