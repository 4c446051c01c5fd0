/**
 * The page copy of a process frozen once, made ahead on another thread:
 * once the collect's injected calls are done (engine/dump/process.ts) and
 * the pagemap walk then started ahead is over (checked at a few points of
 * the collect: cryo's thread never waits for it), the page plan is made
 * (engine/dump/plan.ts, each mapping's policy from its kind) and its reads run in a
 * syscall table (ffi/process_vm_table.ts) into the buffers the deferred
 * writes made ready before the freeze (engine/dump/deferred_pages.ts),
 * each buffer the bytes the stream (engine/dump/memory.ts) would pack into
 * it, while cryo's thread finishes the collect. The dump then takes the
 * plan if it is the one it would make (the same mappings, the same
 * policies, no page source, no inherited runs: {@link takeCopyAhead}) and
 * the streamer writes the buffers filled ahead instead of reading them
 * again; a buffer whose reads fell short, or that the table has not
 * reached (the streamer waits only for the one the table is on), is read
 * by the streamer into a buffer of its own, as before (the table's later
 * reads land in buffers nothing uses).
 *
 * When the table read every buffer of the plan whole (`readAll`, waited
 * for in the freeze), the dump streams them after the thaw (its writes,
 * sums and page records out of the freeze); the streamer then reads
 * nothing from the process (engine/dump/memory.ts `noReads`).
 *
 * Nothing may write the process's memory between the reads ahead and the
 * thaw: an injection session (engine/dump/injected.ts `withInjection`)
 * waits for the reads first ({@link settleCopyAhead}). The pages present
 * do not change either (the walk starts after the injected calls,
 * engine/dump/scan_ahead.ts).
 *
 * @module
 */

import { pageAlignedBuffer } from "../../ffi/page_file.ts";
import { VmReadTable } from "../../ffi/process_vm_table.ts";
import { giveBackReady, takeReadyBuffers } from "./deferred_pages.ts";
import { pageBufferBytes } from "./memory.ts";
import { type PagePlan, planPages } from "./plan.ts";
import { classifyVma, type PagePolicy, pagePolicy, type Vma } from "./vmas.ts";
import { beforeInjection } from "./injected.ts";
import { scanAheadDone } from "./scan_ahead.ts";
import { PagemapReader, PM } from "../proc/pagemap.ts";

/**
 * Most bytes copied ahead: the buffers made ready before the freeze first,
 * then fresh ones (faulted in by the table's thread).
 */
export const COPY_AHEAD_MAX_BYTES = 32 << 20;

/** One process's copy ahead. */
interface Ahead {
  pid: number;
  vmas: readonly Vma[];
  policies: PagePolicy[];
  plan: PagePlan;
  reads: VmReadTable;
  buffers: Uint8Array<ArrayBuffer>[];
  /** How many of `buffers` came from the ready pool (the first ones). */
  fromPool: number;
  /** Buffers handed to the streamer (not given back). */
  given: Set<number>;
}

let current: Ahead | undefined;

/** A copy ahead asked for, waiting for the page walk started ahead ({@link pumpCopyAhead}). */
let pending: { pid: number; vmas: readonly Vma[]; runsOn: boolean } | undefined;

/** What the copies ahead did in this process (tests). */
export const copyAheadStats = {
  started: 0,
  taken: 0,
  dropped: 0,
  buffersUsed: 0,
  /** Waits for the table in which the taker's `whileWaiting` ran ({@link takeCopyAhead}). */
  workedInWait: 0,
  /** Copies whose table read the whole plan (its `readAll`). */
  readAll: 0,
};

/**
 * Tests: a sleep of the table's thread before its reads (a table that
 * falls behind); `pauseAfterFirstMs`: one after its first buffer (the
 * streamer then waits for the second); `waitWalk`: {@link startCopyAhead}
 * waits for the walk ahead (the copy ahead begins whatever the machine's load).
 */
export const copyAheadHooks = {
  delayMs: 0,
  pauseAfterFirstMs: 0,
  waitWalk: false,
  /** `readAll` waits for the table's first buffer too (else: false when it is not read yet). */
  waitFirst: false,
};

/** Whether reads ahead are still running on the table's thread (tests). */
export function copyAheadRunning(): boolean {
  return current !== undefined && !current.reads.done();
}

/** The page policy of each of `vmas`, from its kind (as the dump's records have it). */
function policiesOf(vmas: readonly Vma[]): PagePolicy[] {
  return vmas.map((v) => pagePolicy(classifyVma(v)));
}

/**
 * Plans the pages of frozen `pid` (whose mappings are `vmas`, the injected
 * calls done) and starts reading them on another thread, as soon as the
 * page walk started ahead is over (engine/dump/scan_ahead.ts): now if it
 * is, else at a later {@link pumpCopyAhead} (cryo's thread does not wait
 * for the walk's thread). Nothing when the plan is empty or has no
 * buffers. Never throws: a failure leaves the copy to the streamer.
 */
export function startCopyAhead(pid: number, vmas: readonly Vma[], runsOn = false): void {
  dropCopyAhead();
  pending = { pid, vmas, runsOn };
  pumpCopyAhead();
}

/**
 * Starts the copy ahead asked for by {@link startCopyAhead} if the page
 * walk started ahead is over by now (called at a few points of the
 * collect: engine/dump/process.ts).
 */
export function pumpCopyAhead(): void {
  if (pending && (copyAheadHooks.waitWalk || scanAheadDone(pending.pid))) {
    const { pid, vmas, runsOn } = pending;
    pending = undefined;
    begin(pid, vmas, runsOn);
  }
}

/**
 * {@link startCopyAhead} once the walk is over. With `runsOn` (the process
 * runs on after the dump) a readable run is read with process_vm_readv only
 * where its pages are present and mapped by the process alone (pagemap bits
 * 63 and 56), with a pread of /proc/<pid>/mem elsewhere: a pin of a page
 * shared copy-on-write would leave the process a copy of it.
 */
function begin(pid: number, vmas: readonly Vma[], runsOn: boolean): void {
  let ahead: Ahead | undefined;
  using pagemap = runsOn ? new PagemapReader(pid) : undefined;
  try {
    const policies = policiesOf(vmas);
    const plan = planPages(pid, vmas, policies, () => undefined);
    const reads = plan.reads;
    if (!reads || plan.readBytes === 0) return;
    const size = pageBufferBytes(plan.readBytes);
    const count = Math.ceil(Math.min(plan.readBytes, COPY_AHEAD_MAX_BYTES) / size);
    const buffers = takeReadyBuffers(count, size);
    const fromPool = buffers.length;
    if (fromPool < count) {
      const fresh = pageAlignedBuffer((count - fromPool) * size);
      for (let i = 0; i < count - fromPool; i++) {
        buffers.push(fresh.subarray(i * size, (i + 1) * size));
      }
    }
    const table = new VmReadTable(pid);
    if (copyAheadHooks.delayMs > 0) table.addDelay(copyAheadHooks.delayMs);
    ahead = { pid, vmas, policies, plan, reads: table, buffers, fromPool, given: new Set() };
    // The stream's bytes in plan order, cut into buffers of `size`.
    let k = 0, fill = 0;
    let pieces: (number | boolean)[] = [];
    for (let i = 0; i < reads.length && k < count; i += 3) {
      const readable = vmas[reads[i]].perms[0] === "r";
      let addr = reads[i + 1], left = reads[i + 2];
      const pinnable = readable && pagemap ? exclusiveRuns(pagemap, addr, left) : undefined;
      while (left > 0 && k < count) {
        let n = Math.min(left, size - fill);
        let pin = readable;
        if (pinnable) [n, pin] = pinnable(addr, n);
        pieces.push(addr, n, pin);
        addr += n;
        left -= n;
        fill += n;
        if (fill === size) {
          table.addBuffer(buffers[k++], pieces);
          if (k === 1 && copyAheadHooks.pauseAfterFirstMs > 0) {
            table.addDelay(copyAheadHooks.pauseAfterFirstMs);
          }
          pieces = [];
          fill = 0;
        }
      }
    }
    if (pieces.length && k < count) table.addBuffer(buffers[k++], pieces);
    beforeInjection.hook = settleCopyAhead;
    table.start();
    current = ahead;
    copyAheadStats.started++;
  } catch {
    if (ahead) {
      current = ahead;
      dropCopyAhead();
    }
  }
}

/**
 * The copy ahead of `pid` when it was made for this plan: the same
 * mappings `vmas` and `policies`, nothing inherited, no page source (the
 * caller says so with `plain`). Its plan, and the buffer of the stream's
 * `k`-th buffer when it read all its bytes (waits for its reads, running
 * `whileWaiting` first at the first such wait). Any
 * other copy ahead is dropped.
 */
export function takeCopyAhead(
  pid: number,
  vmas: readonly Vma[],
  policies: readonly PagePolicy[],
  plain: boolean,
  /**
   * Run once, at the first wait for the table's reads, before that wait: work for cryo's
   * thread, idle there (an exception from it is dropped).
   */
  whileWaiting?: () => void,
): {
  plan: PagePlan;
  buffer: (k: number) => Uint8Array<ArrayBuffer> | undefined;
  readAll: () => boolean;
} | undefined {
  pending = undefined; // not begun by now: the dump plans and copies itself
  const a = current;
  if (!a) return undefined;
  if (
    !plain || a.pid !== pid || a.vmas !== vmas || a.policies.length !== policies.length ||
    a.policies.some((p, i) => p !== policies[i])
  ) {
    dropCopyAhead();
    return undefined;
  }
  copyAheadStats.taken++;
  /** Set by a true `readAll`: every buffer the streamer asks for is one read ahead. */
  let whole = false;
  /** Runs `whileWaiting` (once) before a wait for the table. */
  const beforeWait = () => {
    const idle = whileWaiting;
    whileWaiting = undefined;
    try {
      if (idle) copyAheadStats.workedInWait++;
      idle?.();
    } catch { /* the caller's work: done again later */ }
  };
  return {
    plan: a.plan,
    // Whether the table read the whole plan: waits for its reads unless it is behind from
    // the start (its first buffer not read: the streamer reads it, as buffer() says), then
    // checks that every buffer of the stream is filled, so that the streamer will read
    // nothing from the process (its buffers are then theirs at any time: after the thaw).
    readAll: () => {
      if (current !== a) return false;
      if (a.reads.filledSoFar(0) === undefined && !copyAheadHooks.waitFirst) return false;
      const size = a.buffers[0]?.length ?? 0;
      const count = size ? Math.ceil(a.plan.readBytes / size) : Infinity;
      if (count > a.buffers.length) return false;
      if (!a.reads.done()) beforeWait();
      a.reads.finish();
      for (let k = 0; k < count; k++) if (a.reads.filledSoFar(k) !== true) return false;
      whole = true;
      copyAheadStats.readAll++;
      return true;
    },
    buffer: (k) => {
      if (current !== a || k >= a.buffers.length || a.given.has(k)) {
        // After readAll, the streamer may run with the process thawed: it must read nothing.
        if (whole) throw new Error(`internal error: buffer ${k} read ahead is not there`);
        return undefined;
      }
      // Waited for when the table is on it (its previous one read): otherwise the table is
      // behind (a busy machine: it had the rest of the collect to read the first one) and
      // the streamer reads this one itself, into its own buffer.
      let filled = a.reads.filledSoFar(k);
      if (filled === undefined && k > 0 && a.reads.filledSoFar(k - 1) !== undefined) {
        beforeWait();
        filled = a.reads.filledSoFar(k) ?? a.reads.filled(k);
      }
      if (!filled) {
        if (whole) throw new Error(`internal error: buffer ${k} read ahead is not there`);
        return undefined;
      }
      a.given.add(k);
      copyAheadStats.buffersUsed++;
      return a.buffers[k];
    },
  };
}

/**
 * The copy ahead of frozen `pid` (a rehearsal helper's: engine/dump/rehearsal.ts)
 * made, taken and dropped, so that the dump's freeze runs its code
 * compiled. Never throws.
 */
export function rehearseCopyAhead(pid: number, vmas: readonly Vma[]): void {
  const stats = { ...copyAheadStats };
  try {
    startCopyAhead(pid, vmas);
    const a = current;
    a?.reads.finish(); // its buffers back to the pool at the drop below, not at an event loop turn
    const taken = takeCopyAhead(pid, vmas, policiesOf(vmas), true);
    if (taken) { for (let k = 0; taken.buffer(k); k++); }
    a?.given.clear(); // every buffer back to the pool
  } catch { /* only a rehearsal */ }
  dropCopyAhead();
  Object.assign(copyAheadStats, stats);
}

/** Waits for the reads ahead of `pid` (before anything writes its memory). */
export function settleCopyAhead(pid: number): void {
  if (current?.pid === pid) current.reads.finish();
}

/**
 * Releases the reads ahead, if any: the ready buffers not handed to a
 * writer go back to the pool once the table's reads are over (not waited
 * for: reads the streamer made itself instead may still run on the table's
 * thread, into buffers nothing uses). At the end of the dump's copy, and
 * on failure.
 */
export function dropCopyAhead(): void {
  pending = undefined;
  const a = current;
  if (!a) return;
  current = undefined;
  if (a.given.size === 0) copyAheadStats.dropped++;
  const back = a.buffers.slice(0, a.fromPool).filter((_, i) => !a.given.has(i));
  a.reads.finishLater(() => giveBackReady(back));
}

/**
 * For the run of `length` bytes at `addr`: a function giving, for a piece
 * starting at `at` of at most `n` bytes, the length of its first part all
 * present and mapped by the process alone or all not, and which it is.
 */
function exclusiveRuns(
  pagemap: PagemapReader,
  addr: number,
  length: number,
): (at: number, n: number) => [number, boolean] {
  const runs: number[] = [];
  pagemap.forEachRun(addr, addr + length, { all: PM.PRESENT | PM.EXCLUSIVE }, (a, l) => {
    runs.push(a, a + l);
  });
  return (at, n) => {
    for (let i = 0; i < runs.length; i += 2) {
      if (at < runs[i]) return [Math.min(n, runs[i] - at), false];
      if (at < runs[i + 1]) return [Math.min(n, runs[i + 1] - at), true];
    }
    return [n, false];
  };
}
