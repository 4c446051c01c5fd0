/**
 * The page plan's PAGEMAP_SCAN (engine/dump/plan.ts) walked ahead on
 * another thread: started by the collect (engine/dump/process.ts) once the
 * injected calls are done, over the whole user address space of the
 * frozen process, and taken by the plan when it covers the plan's range.
 * Only a dump's collect starts one (a plan follows, and the walks it did
 * not take are dropped at the thaw or on failure): a collect called alone
 * leaves no walk, and so no pagemap fd, behind it.
 * Not earlier: the injected calls write below the threads' red zones
 * (engine/dump/injected.ts), which makes stack pages present that the plan
 * then saves. Nothing cryo does between the walk and the plan changes which
 * pages of a frozen process hold data. A call that failed is made again by
 * cryo's thread; a walk stopped by a full buffer is continued there.
 *
 * @module
 */

import { tablesAvailable } from "../../ffi/syscall_table.ts";
import { ScanBuffer, type ScanInTable } from "../../ffi/pagemap_scan.ts";
import { PagemapScanner, type ScanRegion } from "../proc/pagemap_scan.ts";
import { sleepSync } from "../sleep_sync.ts";

/** The end of the range walked ahead: the top of a 4-level address space. */
export const SCAN_AHEAD_END = 0x7ffffffff000;

/** One walk started ahead. */
interface Ahead {
  scanner: PagemapScanner;
  call: ScanInTable;
  start: number;
  end: number;
}

const started = new Map<number, Ahead>();

/** What the walks ahead gave (tests), and a fault to inject. */
export const scanAheadStats = {
  /** Walks started. */
  started: 0,
  /** Walks whose regions the plan took. */
  used: 0,
  /** Walks taken but made again by cryo's thread (a failed call). */
  redone: 0,
  /** Tests: the next walk started names a closed fd (its call fails with EBADF). */
  failNext: false,
};

/**
 * Starts walking the data pages of frozen `pid` on another thread, with a
 * region buffer of `capacity` (one call for that many regions or fewer).
 * Nothing when tables do not run here or the pagemap cannot be opened
 * (the plan walks it itself).
 */
export function startScanAhead(pid: number, capacity: number): void {
  dropScanAhead(pid);
  if (!tablesAvailable()) return;
  let scanner: PagemapScanner;
  try {
    scanner = new PagemapScanner(pid, capacity);
  } catch {
    return; // the plan opens it again, and says why
  }
  try {
    const end = SCAN_AHEAD_END;
    const call = scanAheadStats.failNext ? failedScan(end) : scanner.startDataRegions(0, end);
    started.set(pid, { scanner, call, start: 0, end });
    scanAheadStats.started++;
  } catch {
    scanner.close();
  }
}

/** Tests: the call made on fd -1 (fails with EBADF on the table's thread). */
function failedScan(end: number): ScanInTable {
  scanAheadStats.failNext = false;
  return new ScanBuffer(16).scanInTable(-1, 0n, BigInt(end), { returnMask: 0n });
}

/** Whether the walk started ahead of `pid` is over (true when none was started). */
export function scanAheadDone(pid: number): boolean {
  const a = started.get(pid);
  return !a || a.call.done();
}

/**
 * The data regions of [lo, hi) of `pid` walked ahead (the whole walk, in
 * address order: regions outside [lo, hi) included), or undefined when no
 * walk covering it was started (the caller walks itself). Waits for the
 * walk; a failed call is made again here.
 */
export function takeScanAhead(pid: number, lo: number, hi: number): ScanRegion[] | undefined {
  const a = started.get(pid);
  if (!a) return undefined;
  started.delete(pid);
  try {
    while (!a.call.done()) sleepSync(0.02);
    if (lo < a.start || hi > a.end) return undefined;
    const first = a.call.result();
    if (first.n < 0) {
      scanAheadStats.redone++;
      return a.scanner.dataRegions(a.start, a.end);
    }
    scanAheadStats.used++;
    return a.scanner.dataRegions(a.start, a.end, first);
  } finally {
    a.scanner.close();
  }
}

/** Waits for and drops the walk ahead of `pid` (a dump that did not plan it). */
export function dropScanAhead(pid: number): void {
  const a = started.get(pid);
  if (!a) return;
  started.delete(pid);
  while (!a.call.done()) sleepSync(0.02);
  a.scanner.close();
}

/** Drops every walk ahead not taken (the end of a dump). */
export function dropScansAhead(): void {
  for (const pid of [...started.keys()]) dropScanAhead(pid);
}
