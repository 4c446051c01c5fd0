/**
 * A fork snapshot's pages copied on two threads after the thaw: the
 * streamer (memory.ts, `deferReads`) plans the runs and their file offsets
 * as before, but reads nothing; {@link SnapshotLaneWriter} collects them
 * and, when the streamer finishes, has syscall tables copy them
 * (engine/dump/native_lane.ts: `pread` of /proc/<fork>/mem, the CRC fold,
 * `pwrite`, per MiB, no JavaScript per MiB), the last half of what one
 * table has not reached claimed for another one again and again, so that
 * both CPUs copy while cryo's thread waits. The fork never runs: its pages
 * are the target's as of the freeze, read without a pin (a pinning read of
 * a page the fork shares with the target would copy it). The same bytes,
 * runs and block CRCs as the streamer's own copy: the blocks are the
 * submitted buffers (1 MiB from the page data's start).
 *
 * @module
 */

import { CRC_BLOCK } from "./memory.ts";
import { PAGE_BUFFER_BYTES, type PageWriter } from "./page_writer.ts";
import { nativeLaneAvailable, NativeLaneCopy } from "./native_lane.ts";
import { lanesAvailable } from "./copy_lanes.ts";
import type { CopyJob } from "./precopy_copy.ts";
import type { Vma } from "./vmas.ts";

/** Snapshots copied by the tables so far (tests). */
export const snapshotLaneStats = { copies: 0 };

/**
 * Whether a snapshot's copy of `bytes` runs on the tables: they run here,
 * it is at least `minBytes` and a second CPU is likely idle
 * (copy_lanes.ts `lanesAvailable`: on a busy machine the second table only
 * adds its share of CPU to what the other processes wait for)
 * (`CRYO_SNAPSHOT_LANES=0` never, `=1` at any size and load).
 */
export function snapshotLanesWanted(bytes: number, minBytes = SNAPSHOT_LANES_MIN_BYTES): boolean {
  const env = Deno.env.get("CRYO_SNAPSHOT_LANES");
  if (env === "0" || !nativeLaneAvailable()) return false;
  if (env === "1") return true;
  return bytes >= minBytes && lanesAvailable();
}

/**
 * Below this many bytes a snapshot is copied by cryo's thread: at 16 to
 * 40 MiB (threads-64, maps-10000, anon-64MiB) the tables gained nothing
 * measurable and cost 0.01 to 0.02 s of CPU and 3 MiB of RSS
 * (docs/PERFORMANCE.md, nineteenth pass, branch big512).
 */
export const SNAPSHOT_LANES_MIN_BYTES = 256 << 20;

/**
 * A {@link PageWriter} that reads nothing: the streamer's pieces are
 * given to {@link record}, its buffers are only counted, and
 * {@link close} copies every piece on the tables into the existing file.
 */
export class SnapshotLaneWriter implements PageWriter {
  readonly size = PAGE_BUFFER_BYTES;
  readonly sumsSubmits = true;
  readonly #pid: number;
  readonly #path: string;
  readonly #preallocate: boolean;
  /** Pieces in file order, by mapping (adjacent pieces of one mapping merged). */
  readonly #planned: CopyJob["planned"] = [];
  #start = -1;
  #end = -1;
  #crcs: number[] = [];
  #copy: NativeLaneCopy | undefined;
  readonly #empty = new Uint8Array(0);

  /**
   * Copies from process `pid` (the fork) into the existing file `path`;
   * `preallocate`: its page region allocated first (an image not synced).
   */
  constructor(pid: number, path: string, preallocate: boolean) {
    if (CRC_BLOCK % PAGE_BUFFER_BYTES !== 0) throw new Error("buffers must divide a block");
    this.#pid = pid;
    this.#path = path;
    this.#preallocate = preallocate;
  }

  /** A piece of `length` bytes at `addr` of `vma`, going to `fileOffset` (the next one). */
  record(vma: Vma, addr: number, length: number, fileOffset: number): void {
    if (this.#start < 0) this.#start = this.#end = fileOffset;
    if (fileOffset !== this.#end) throw new Error(`snapshot piece at ${fileOffset} out of order`);
    this.#end += length;
    const last = this.#planned[this.#planned.length - 1];
    const run = last?.vma === vma ? last.runs[last.runs.length - 1] : undefined;
    if (run && Number(run.addr) + run.length === addr) run.length += length;
    else if (last?.vma === vma) last.runs.push({ addr: BigInt(addr), length });
    else this.#planned.push({ vma, runs: [{ addr: BigInt(addr), length }] });
  }

  acquire(_offset: number): Uint8Array {
    return this.#empty; // (nothing is read into it: the streamer defers its reads)
  }

  submit(_length: number, _offset: number): void {}

  /** Copies every piece recorded (both threads), then the blocks' CRCs are known. */
  async close(): Promise<void> {
    if (this.#start < 0) return;
    const job: CopyJob = {
      pid: this.#pid,
      path: this.#path,
      pagesStart: this.#start,
      planned: this.#planned,
    };
    this.#copy = NativeLaneCopy.start([job], {
      existingFiles: true,
      pin: false,
      preallocate: this.#preallocate,
    });
    const [r] = await this.#copy.finish();
    this.#copy = undefined;
    // The fork never runs nor unmaps: a piece it could not give is an error, not zeros.
    if (r.lostBytes || r.pagesEnd !== this.#end) {
      throw new Error(`process ${this.#pid}: ${r.lostBytes} bytes of its snapshot unreadable`);
    }
    this.#crcs = r.blockCrcs;
    snapshotLaneStats.copies++;
  }

  submittedCrcs(): readonly number[] {
    return this.#crcs;
  }

  async abort(): Promise<void> {
    await this.#copy?.abandon();
  }
}
