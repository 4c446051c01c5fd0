/**
 * Copy lanes: a large page copy run on two cores at once. The copy is cut
 * into segments (engine/dump/precopy_copy.ts `segmentJobs`: each has its
 * own, pre-computed file offset and starts at a block boundary), and two
 * lanes take them one at a time from a shared counter: cryo's main thread
 * and a worker thread (copy_lane_worker.ts) with its own FFI handles, its
 * own page-aligned buffer and its own file descriptors. Each lane reads
 * and writes its own buffer (no buffer passes between cores: see "Tried
 * and dropped" in docs/PERFORMANCE.md, "The page copy through a
 * page-aligned buffer"). The results merge into exactly the file content
 * and block CRCs of a copy made from start to end in one thread
 * (`mergeSegments`).
 *
 * A lane that is slow to start or gets little CPU simply takes fewer
 * segments; one that cannot start takes none. The worker is started at the
 * beginning of the dump ({@link CopyLanes.start}), so that loading its
 * modules overlaps the pre-copy's freeze and arming. On failure, nothing
 * is left writing: the lanes stop taking segments, and the copy waits for
 * the worker's segment in progress before it rejects.
 *
 * @module
 */

import {
  type CopyJob,
  type CopyResult,
  type CopySegment,
  copySegment,
  createJobFiles,
  jobBytes,
  mergeSegments,
  newLane,
  segmentJobs,
  type SegmentResult,
} from "./precopy_copy.ts";
import { pausePoint } from "../pause.ts";
import { claimSegment, MAX_SEGMENTS, stopClaims } from "./lane_claims.ts";
import { sourceURL } from "../modules.ts";
import { type CpuLoad, cpuLoad } from "../proc/cpu_load.ts";
import { releaseUffd } from "./uffd_release.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";

/** Whether this process's fd `fd` is a userfaultfd. */
function isUserfaultfd(fd: number): boolean {
  try {
    return Deno.readLinkSync(`/proc/self/fd/${fd}`) === "anon_inode:[userfaultfd]";
  } catch {
    return false;
  }
}

/** fcntl(2): duplicate with close-on-exec. */
const F_DUPFD_CLOEXEC = 1030;

/**
 * Where syscall tables cannot run (engine/dump/precopy_lanes.ts; elsewhere the
 * table is the second lane at every size), below this many bytes to copy,
 * no worker lane: the worker's creation
 * blocks cryo's thread 20 to 40 ms and adds 11 to 13 MiB of RSS, and below
 * it a syscall table as the second lane (engine/dump/native_lane.ts)
 * copies as fast for less (256 and 512 MiB measured: the same wall, less
 * CPU; docs/PERFORMANCE.md, "Small dumps: a syscall table as the second
 * copy lane"). Above it the worker's claims balance a long copy on a busy
 * machine and it releases the tracking on its thread.
 */
export const LANE_MIN_BYTES = 1 << 30;

/** Size of a segment: small enough that the lanes end close together. */
export const SEGMENT_BYTES = 16 << 20;

/** Message to the worker: copy what you can claim of `segments`. */
export interface LaneRequest {
  call: number;
  segments: CopySegment[];
  /**
   * Int32Array over it: [0] the claims (lane_claims.ts), [1] set to 1
   * by a worker whose segment failed.
   */
  control: SharedArrayBuffer;
}

/**
 * Message to the worker: release a pre-copy's userfaultfd (its copy `uffd`,
 * which the worker closes) as uffd_release.ts `releaseUffd` does.
 */
export interface LaneReleaseRequest {
  call: number;
  release: { uffd: number; ranges: [number, number][]; chunkBytes: number };
}

/** Message from the worker: one segment done (or failed), a release done, or ready. */
export type LaneReply =
  | { ready: true }
  | { call: number; released: true }
  | { call: number; index: number; result: SegmentResult }
  | { call: number; index: number; error: string }
  /** The worker is gone (told to the calls in progress by {@link CopyLanes} itself). */
  | { gone: true };

/** Options of {@link CopyLanes.copy} (tests and measurements). */
export interface LaneOptions {
  /** Below this many bytes the worker takes no part (default {@link LANE_MIN_BYTES}). */
  minBytes?: number;
  /** Segment size (default {@link SEGMENT_BYTES}; a multiple of 1 MiB). */
  segmentBytes?: number;
  /** false: this thread takes no segment while the worker lives (default true). */
  mainLane?: boolean;
}

/** Above this CPU pressure (PSI "some", percent), no second lane. */
export const LANE_MAX_PRESSURE = 40;

/**
 * Whether a second lane may find an idle CPU: two CPUs or more and CPU
 * pressure below {@link LANE_MAX_PRESSURE} with a load average below twice
 * their number (a dump's own two lanes, its target and the commands run
 * before it raise the load average of a quiet machine, not its pressure);
 * without PSI, a load average below their number. The pressure is the one
 * since the command started when known ({@link CpuLoad.pressureRecent}):
 * the 10-second average still holds the CPU a command run just before took
 * (a benchmark's previous dump), when the machine is idle now. On a busy
 * machine the worker would only add its start-up and its share of the
 * copy's CPU to what the other processes wait for (docs/PERFORMANCE.md,
 * "Copy lanes").
 */
export function lanesAvailable(load: CpuLoad = cpuLoad()): boolean {
  if (load.cpus < 2) return false;
  const pressure = load.pressureRecent ?? load.pressure10;
  if (pressure === undefined) return load.load1 < load.cpus;
  return pressure < LANE_MAX_PRESSURE && load.load1 < 2 * load.cpus;
}

/** Two copy lanes: this thread and a worker thread. */
export class CopyLanes {
  readonly #worker: Worker;
  #dead = false;
  #ready = false;
  #calls = 0;
  /** Handlers of the calls in progress, by call. */
  readonly #waiting = new Map<number, (reply: LaneReply) => void>();
  /** When the worker was created, and when it said it was ready (ms, performance.now). */
  readonly startedAt: number;
  readyAt?: number;
  /** Segments of the last {@link copy}: in all, and copied by the worker lane. */
  last = { segments: 0, byWorker: 0, bytes: 0 };

  private constructor() {
    this.startedAt = performance.now();
    this.#worker = new Worker(sourceURL("engine/dump/copy_lane_worker.ts"), { type: "module" });
    this.#worker.onmessage = (e: MessageEvent<LaneReply>) => {
      const m = e.data;
      if ("ready" in m) {
        this.#ready = true;
        this.readyAt = performance.now();
        return;
      }
      if ("call" in m) this.#waiting.get(m.call)?.(m);
    };
    this.#worker.onerror = (e) => {
      e.preventDefault();
      this.#fail();
    };
    this.#worker.onmessageerror = () => this.#fail();
  }

  /** Workers of this process that died (not closed): what the tests of a lost lane look at. */
  static lost = 0;

  /** The worker is gone: whatever it claimed and did not finish is done by this thread. */
  #fail(): void {
    if (!this.#dead) CopyLanes.lost++;
    this.#dead = true;
    for (const h of [...this.#waiting.values()]) h({ gone: true });
  }

  /**
   * Starts the worker lane, or undefined when two lanes cannot pay on this
   * machine (unless `force`).
   */
  static start(force = false): CopyLanes | undefined {
    if (!force && !lanesAvailable()) return undefined;
    try {
      return new CopyLanes();
    } catch {
      return undefined;
    }
  }

  /** Whether the worker finished loading. */
  get ready(): boolean {
    return this.#ready;
  }

  /**
   * Copies `jobs` (their files are created or truncated first): segments
   * taken by both lanes when there is enough to copy, else by this thread
   * alone. Results by job, as `copyPlanned` gives them.
   */
  async copy(jobs: readonly CopyJob[], opts: LaneOptions = {}): Promise<CopyResult[]> {
    await createJobFiles(jobs);
    const total = jobs.reduce((n, j) => n + jobBytes(j), 0);
    let size = opts.segmentBytes ?? SEGMENT_BYTES;
    while (Math.ceil(total / size) + jobs.length > MAX_SEGMENTS) size *= 2;
    const segments = segmentJobs(jobs, size);
    const results: (SegmentResult | undefined)[] = segments.map(() => undefined);
    const control = new SharedArrayBuffer(8);
    const ctl = new Int32Array(control);
    ctl[0] = segments.length << 16;
    const call = ++this.#calls;
    const useWorker = !this.#dead && total >= (opts.minBytes ?? LANE_MIN_BYTES);
    // The worker's answers; `wake` re-checks what the copy waits for after each.
    const answered = new Set<number>();
    let workerError: string | undefined;
    let wake = () => {};
    const until = (done: () => boolean) =>
      new Promise<void>((resolve) => {
        wake = () => {
          if (done() || this.#dead) resolve();
        };
        wake();
      });
    this.#waiting.set(call, (m) => {
      if ("index" in m) {
        answered.add(m.index);
        if ("error" in m) workerError ??= m.error;
        else results[m.index] = m.result;
      }
      wake();
    });
    const mine = new Set<number>();
    const lane = newLane();
    let failure: unknown;
    try {
      if (useWorker) this.#worker.postMessage({ call, segments, control } satisfies LaneRequest);
      for (;;) {
        if (opts.mainLane === false && useWorker) break;
        if (Atomics.load(ctl, 1) !== 0) break; // the worker failed
        const i = claimSegment(ctl, false);
        if (i < 0) break;
        mine.add(i);
        results[i] = await copySegment(segments[i], lane, () => pausePoint("precopy-pages"));
      }
    } catch (e) {
      failure = e;
    } finally {
      lane.files.close();
    }
    if (useWorker && opts.mainLane === false) {
      await until(() => answered.size === segments.length || workerError !== undefined);
    }
    // No claim succeeds from now on; the worker claimed [end, length).
    const [, end] = stopClaims(ctl);
    if (useWorker) {
      // Nothing may still be writing when this returns or throws: every segment
      // the worker claimed is answered (or the worker is gone).
      await until(() => {
        for (let i = end; i < segments.length; i++) if (!answered.has(i)) return false;
        return true;
      });
    }
    this.#waiting.delete(call);
    if (failure !== undefined) throw failure;
    if (workerError !== undefined) throw new Error(`copy lane: ${workerError}`);
    // Left by a worker that died: done here (read again; the pre-copy's tracking covers it).
    const rest = segments.map((_, i) => i).filter((i) => !results[i]);
    if (rest.length) {
      const again = newLane();
      try {
        for (const i of rest) {
          results[i] = await copySegment(segments[i], again, () => pausePoint("precopy-pages"));
        }
      } finally {
        again.files.close();
      }
    }
    this.last = {
      segments: segments.length,
      byWorker: segments.length - mine.size - rest.length,
      bytes: total,
    };
    return mergeSegments(jobs, segments, results as SegmentResult[]);
  }

  /**
   * Releases a pre-copy's userfaultfd `uffd` (uffd_release.ts
   * `releaseUffd`: its `ranges` lifted and unregistered `chunkBytes` at a
   * time) on the worker's thread, so that this one goes on meanwhile (the
   * dump's notes); on this thread when the worker is gone or dies. The
   * worker works on a copy of the fd; `uffd` is closed when this resolves.
   */
  async release(uffd: number, ranges: [number, number][], chunkBytes: number): Promise<void> {
    const copy = this.#dead ? -1 : Number(rawSyscall(SYS.fcntl, uffd, F_DUPFD_CLOEXEC, 0));
    if (copy < 0) return releaseUffd(uffd, ranges, chunkBytes);
    const call = ++this.#calls;
    const released = await new Promise<boolean>((resolve) => {
      this.#waiting.set(call, (m) => resolve("released" in m));
      this.#worker.postMessage(
        { call, release: { uffd: copy, ranges, chunkBytes } } satisfies LaneReleaseRequest,
      );
    });
    this.#waiting.delete(call);
    // Released: nothing is registered any more, the close is cheap. Else (the worker died)
    // whatever it did not do is done here (a chunk done twice is registered and unregistered
    // again), and its copy, if still open, is closed (cryo opens no other userfaultfd by then).
    if (released) return void rawSyscall(SYS.close, uffd);
    releaseUffd(uffd, ranges, chunkBytes);
    if (isUserfaultfd(copy)) rawSyscall(SYS.close, copy);
  }

  /** Stops the worker (a copy in progress must have returned). */
  close(): void {
    this.#dead = true;
    this.#worker.terminate();
  }
}
