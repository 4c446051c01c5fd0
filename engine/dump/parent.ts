/**
 * The dump of a pre-copy chain (`dump --parent <dir>`): pages not written
 * since the parent pre-dump are referenced in the parent chain instead of
 * copied (engine/image/chain.ts), the written ones are read.
 *
 * Loaded before the freeze ({@link ParentPages.load}); attached with the
 * tree frozen ({@link ParentPages.attach}): for each process that still
 * holds the parent's tracking userfaultfd, one PAGEMAP_SCAN lists its data
 * pages and which of them were written since they were protected; a page
 * is taken from the parent only when the parent image has it at the same
 * address and it was not written (its uffd-wp bit, set only by cryo's
 * protection, is still set). Then the tracking is armed again (another
 * pre-dump) or taken out of the target (the final dump, whose walk runs on
 * another thread while the dump collects: {@link ParentPages.scanned}). A process
 * without the tracking (new, exec'd, or the fd was closed) is read whole.
 *
 * @module
 */

import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import type { Manifest } from "../model.ts";
import { TargetError } from "../errors.ts";
import {
  type ChainLink,
  type ChainRun,
  manifestSha256,
  processRuns,
  resolveChain,
} from "../image/chain.ts";
import { readMaps } from "../proc/maps.ts";
import { splitAtWritten } from "./written_ranges.ts";
import { type DataAndWritten, PagemapScanner, type ScanRegion } from "../proc/pagemap_scan.ts";
import type { FrozenTree } from "./freeze.ts";
import { armTracking, rearm, type SplitPiece, splitRun } from "./precopy.ts";
import {
  adoptFd,
  detachTracking,
  isUffd,
  setTrackingFd,
  type TrackingRelease,
} from "./tracking.ts";
import { readTrackingState } from "./tracking_state.ts";

/** The pages of one process that may be taken from the parent chain. */
export class ParentProcess {
  /** Runs not written since the parent, with where their data is, by address. */
  readonly #runs: ChainRun[];
  /** The data pages found at the freeze over [start, end), for engine/dump/plan.ts. */
  readonly scanned?: { start: number; end: number; regions: ScanRegion[] };

  constructor(runs: ChainRun[], scanned?: ParentProcess["scanned"]) {
    this.#runs = runs;
    this.scanned = scanned;
  }

  /** Splits a run to save (address order) into "parent" and "read" pieces. */
  split(run: { addr: number; length: number }, cursor: { i: number }): SplitPiece[] {
    return splitRun(run, cursor, this.#runs, (r) => ({ source: "parent", depth: r.depth + 1 }));
  }
}

/** `runs` (sorted) without the `written` ranges (sorted, [start, end)). */
function unwritten(runs: ChainRun[], written: [number, number][]): ChainRun[] {
  return splitAtWritten(runs, written).filter((p) => !p.written).map((p) => p.piece);
}

/** Regions per off-thread PAGEMAP_SCAN call (1.5 MiB): one call for ~30,000 written runs. */
const OFF_THREAD_REGIONS = 1 << 16;

/** {@link PagemapScanner.dataAndWrittenOffThread} of [start, end) of `pid`, closing the pagemap after. */
async function scanOffThread(pid: number, start: number, end: number): Promise<DataAndWritten> {
  using scanner = new PagemapScanner(pid, OFF_THREAD_REGIONS);
  return await scanner.dataAndWrittenOffThread(start, end);
}

/** The parent chain of a dump and what each process may take from it. */
export class ParentPages {
  /** The parent image (first) and its ancestors. */
  readonly chain: ChainLink[];
  /** SHA-256 of the parent's manifest.json. */
  readonly manifestSha256: string;
  /** Per process, after {@link attach}. */
  readonly processes = new Map<number, ParentProcess>();
  /** The parent's runs by pid (loaded before the freeze). */
  readonly #runs = new Map<number, ChainRun[]>();

  private constructor(chain: ChainLink[], sum: string) {
    this.chain = chain;
    this.manifestSha256 = sum;
  }

  /** The parent's tracking record. */
  get tracking(): Manifest["tracking"] {
    return this.chain[0].manifest.tracking;
  }

  /**
   * Reads the parent chain of a dump of `root` (refusing a missing or
   * changed one, or one that is not a pre-dump of this tree, or not its
   * latest) and the parent's page runs.
   */
  static async load(dir: string, root: number): Promise<ParentPages> {
    const chain = await resolveChain(dir);
    const head = chain[0].manifest;
    if (!head.tracking) {
      throw new TargetError(
        `${dir} is not a pre-dump (dump it with --pre-dump to use it as --parent)`,
      );
    }
    if (head.rootPid !== root) {
      throw new TargetError(`${dir} is a pre-dump of pid ${head.rootPid}, not of ${root}`);
    }
    const state = readTrackingState(root);
    if (state && state.generation !== head.tracking.generation) {
      throw new TargetError(
        `${dir} is not the latest pre-dump of pid ${root}: give ${state.dir} as the parent`,
      );
    }
    const pp = new ParentPages(chain, await manifestSha256(chain[0].dir));
    pp.#valid = state !== undefined;
    for (const p of head.processes) pp.#runs.set(p.pid, await processRuns(chain[0], p.pid));
    return pp;
  }

  /** The final dump's tracking, lifted once the tree runs again (or is dead): see {@link attach}. */
  release?: TrackingRelease;

  /** The walks of a final dump still running (see {@link attach}). */
  #scanning: Promise<void> = Promise.resolve();

  /**
   * Waits for the page table walks {@link attach} left running (a final
   * dump): {@link processes} is complete once this resolves. The tree must
   * stay frozen until then.
   */
  async scanned(): Promise<void> {
    await this.#scanning;
  }

  /**
   * The processes whose walk {@link attach} started: it also finds the data
   * pages the dump plans from, so the collect starts no walk of its own
   * (engine/dump/scan_ahead.ts).
   */
  readonly scanningPids = new Set<number>();

  /** Whether the live tracking is the parent's generation (else everything is read). */
  #valid = false;

  /**
   * With the tree frozen: finds in each process what was written since the
   * parent, then arms the tracking again (`keep`: another pre-dump) or
   * takes it out of every process (the final dump; `kill`: the tree is
   * killed once dumped): see {@link detachTracking}.
   */
  attach(tree: FrozenTree, keep: boolean, kill = false): void {
    const recorded = this.tracking?.fds ?? [];
    const fdNumbers = [...new Set(recorded.map((r) => r.fd))];
    const tracked: { pid: number; runs: ChainRun[]; start: number; end: number }[] = [];
    for (const p of tree.processes) {
      const mine = recorded.find((r) => r.pid === p.pid);
      const runs = this.#runs.get(p.pid);
      if (!this.#valid || !mine || !runs || !isUffd(p.pid, mine.fd)) continue;
      const maps = readMaps(p.pid).filter((m) => m.path !== "[vsyscall]");
      if (maps.length === 0) continue;
      tracked.push({
        pid: p.pid,
        runs,
        start: Number(maps[0].start),
        end: Number(maps[maps.length - 1].end),
      });
    }
    // Taking the tracking out of the tree leaves the protections (and so what the walks see).
    if (!keep) this.release = detachTracking(tree.processes.map((p) => p.pid), fdNumbers, kill);
    const scans: Promise<unknown>[] = [];
    for (const { pid, runs, start, end } of tracked) {
      const found = (scan: DataAndWritten) =>
        this.processes.set(
          pid,
          new ParentProcess(unwritten(runs, scan.written), { start, end, regions: scan.regions }),
        );
      if (keep) {
        using scanner = new PagemapScanner(pid);
        found(scanner.dataAndWritten(start, end));
      } else {
        // The final dump does not touch the protections: the walk overlaps the collect.
        scans.push(scanOffThread(pid, start, end).then(found));
      }
    }
    for (const t of tracked) this.scanningPids.add(t.pid);
    this.#scanning = Promise.all(scans).then(() => {});
    this.#scanning.catch(() => {}); // settled by {@link scanned}, or dropped with a failed dump
    if (!keep) return;
    for (const p of tree.processes) {
      const mine = recorded.find((r) => r.pid === p.pid);
      if (mine && isUffd(p.pid, mine.fd)) {
        const copy = adoptFd(p.pid, mine.fd);
        if (copy >= 0) {
          try {
            rearm(p.pid, copy);
            setTrackingFd(p.pid, mine.fd);
          } finally {
            rawSyscall(SYS.close, copy);
          }
          continue;
        }
      }
      armTracking(p.pid);
      // Copies inherited by children forked since are cryo's too (left out of the image).
      for (const fd of fdNumbers) if (isUffd(p.pid, fd)) setTrackingFd(p.pid, fd);
    }
  }
}
