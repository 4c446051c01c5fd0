/**
 * Checking the images' checksums during a restore, on a thread of Deno's
 * blocking pool from the start of the restore, while cryo's main thread
 * reads and compiles the images, runs the preflight and launches the tree;
 * cryo polls it at its steps (no worker to start, no event loop needed).
 * Images of up to {@link TABLE_MAX_BYTES} are read and folded by syscall
 * tables (verify_table.ts, x86-64 with PCLMULQDQ); larger ones a window at
 * a time: each window is a read-only mapping of the image
 * (ffi/file_window.ts), folded by ffi/crc32_fold.ts `crc32FoldInBackground`.
 * Without PCLMULQDQ the main thread checks the windows itself while the
 * restore session waits for the stubs.
 *
 * @module
 */

import { crc32, crc32AfterFold } from "../image/crc32.ts";
import { MappedFile } from "../../ffi/file_window.ts";
import {
  type BackgroundFold,
  type BackgroundFoldFn,
  crc32FoldInBackground,
} from "../../ffi/crc32_fold.ts";
import { formatChecksum } from "../image/checksum.ts";
import { ImageFormatError } from "../image/errors.ts";
import { RestoreError } from "../errors.ts";
import { sleepSync } from "../sleep_sync.ts";
import { RUN_BYTES, TableVerifier } from "./verify_table.ts";
import { tablesAvailable } from "../../ffi/syscall_table.ts";

/** Bytes checked per {@link ImageVerifier.step} on cryo's main thread: short enough to keep the session responsive. */
const WINDOW = 8 << 20;

/**
 * Bytes folded per background step (a window stays mapped, and its pages
 * count in cryo's RSS, until its fold is done).
 */
const BACKGROUND_WINDOW = 16 << 20;

/** The shortest fold the folding code takes (ffi/crc32_fold.ts). */
const FOLD_MIN = 64;

/** One image file to check against its manifest checksum. */
export interface ImageToVerify {
  /** Path of the image file. */
  path: string;
  /** The manifest's checksum ("crc32:<hex>"); empty: nothing to check. */
  checksum: string;
}

/** Options of {@link ImageVerifier}. */
export interface ImageVerifierOptions {
  /**
   * Fold the windows on a thread of Deno's blocking pool (when this CPU
   * can: ffi/crc32_fold.ts) instead of cryo's main thread (default true).
   */
  background?: boolean;
  /**
   * In the background, read and fold the images by syscall tables
   * (engine/restore/verify_table.ts) where they can run, instead of folding
   * mapped windows (default: for images of one run, {@link TABLE_MAX_BYTES}).
   */
  table?: boolean;
  /** Bytes per table run (tests; default verify_table.ts `RUN_BYTES`). */
  tableRunBytes?: number;
}

/**
 * Images up to this many bytes in all are checked by syscall tables: one
 * run (verify_table.ts `RUN_BYTES` and the quarter a run may go past it),
 * which goes on by itself beside the plan and is done before the stubs
 * load the pages (docs/PERFORMANCE.md, fifth pass, restorefixed). Larger
 * images are checked by mapped windows: the pass overlaps the stubs either
 * way there, and the windows' faults cost ~5 ms less CPU per 64 MiB than
 * the tables' copy.
 */
export const TABLE_MAX_BYTES = RUN_BYTES + RUN_BYTES / 4;

/** Whether `files` are for the tables ({@link TABLE_MAX_BYTES}); a file not there is (it reports it). */
function tableSized(files: readonly ImageToVerify[]): boolean {
  let total = 0;
  for (const f of files) {
    try {
      total += Deno.statSync(f.path).size;
    } catch {
      return true;
    }
  }
  return total <= TABLE_MAX_BYTES;
}

/** A window being folded on another thread, which unmaps it once folded. */
interface InFlight {
  /** The window's bytes after the ones folded (fewer than 16), copied before the fold started. */
  tail: Uint8Array;
  fold: BackgroundFold;
}

/**
 * Verifies image checksums incrementally; see {@link step} and {@link finish}.
 * With a background fold, each {@link step} starts the next window's fold on
 * another thread, or takes the result of the one running: the checking goes
 * on while cryo's main thread plans, checks and launches, wherever it calls
 * {@link step}. What is verified is the same: every byte of every image,
 * before {@link finish} answers.
 */
export class ImageVerifier {
  readonly #files: ImageToVerify[];
  readonly #background: BackgroundFoldFn | null;
  #index = 0;
  #file: MappedFile | undefined;
  #offset = 0;
  #crc = 0;
  #problem: Error | undefined;
  #inFlight: InFlight | undefined;
  /** The pass on syscall tables, where they run (then everything else here is unused). */
  readonly #table: TableVerifier | undefined;

  /** Nothing is read before the first {@link step}. */
  constructor(files: ImageToVerify[], opts: ImageVerifierOptions = {}) {
    this.#files = files.filter((f) => f.checksum);
    const background = this.#files.length > 0 && (opts.background ?? true);
    const table = opts.table ?? tableSized(this.#files);
    this.#table = background && table && tablesAvailable()
      ? new TableVerifier(this.#files, opts.tableRunBytes)
      : undefined;
    this.#background = background && !this.#table ? crc32FoldInBackground() : null;
  }

  /**
   * Checks the next window, or (background) takes the result of the window
   * being folded and starts the next one. Returns true when it did
   * something and has more to do; false once everything is checked (or a
   * problem found), and while the background fold it waits for still runs.
   */
  step(): boolean {
    if (this.#table) return this.#table.step();
    if (this.#problem || this.#index >= this.#files.length) return false;
    try {
      if (!this.#background) return this.#stepInline();
      if (this.#inFlight) {
        if (!this.#inFlight.fold.done()) return false;
        this.#complete(this.#inFlight);
        if (this.#problem || this.#index >= this.#files.length) return false;
      }
      this.#start(this.#background);
      return true;
    } catch (e) {
      this.#release();
      this.#problem = new RestoreError(`cannot verify the image: ${(e as Error).message}`);
      return false;
    }
  }

  /** Checks whatever is left; returns the first problem, or undefined when every checksum matches. */
  finish(): Error | undefined {
    if (this.#table) return this.#table.finish();
    for (;;) {
      if (this.step()) continue;
      if (!this.#inFlight || this.#problem) break;
      sleepSync(0.2); // the background fold runs
    }
    this.#release();
    return this.#problem;
  }

  /** Stops early and releases the open file (after a failed restore; waits for a running fold). */
  close(): void {
    this.#table?.close();
    this.#release();
  }

  #stepInline(): boolean {
    const f = this.#files[this.#index];
    this.#file ??= MappedFile.open(f.path);
    const file = this.#file;
    this.#crc = file.withWindow(this.#offset, WINDOW, (v) => crc32(v, this.#crc));
    this.#advance(WINDOW);
    return !this.#problem && this.#index < this.#files.length;
  }

  /** Maps the next window and starts its fold (a window too short to fold is checked here). */
  #start(fold: BackgroundFoldFn): void {
    const f = this.#files[this.#index];
    this.#file ??= MappedFile.open(f.path);
    const window = this.#file.map(this.#offset, BACKGROUND_WINDOW);
    const bulk = window.length - (window.length % 16);
    if (bulk < FOLD_MIN) {
      try {
        this.#crc = crc32(window.view(), this.#crc);
      } finally {
        window.unmap();
      }
      this.#advance(BACKGROUND_WINDOW);
      return;
    }
    const tail = window.view().slice(bulk);
    // The fold's thread unmaps the window once folded: that munmap (~0.7 ms per 16 MiB
    // window faulted in) is not cryo's main thread's.
    const job = fold(window.addr, bulk, ~this.#crc >>> 0, window.length);
    window.handOver();
    this.#inFlight = { tail, fold: job };
  }

  /** Takes a finished fold's result: the window's CRC (its thread has unmapped the window). */
  #complete(job: InFlight): void {
    this.#inFlight = undefined;
    this.#crc = crc32AfterFold(job.fold.remainder(), job.tail);
    this.#advance(BACKGROUND_WINDOW);
  }

  /** Moves past a window of `step` bytes; at a file's end compares its checksum. */
  #advance(step: number): void {
    this.#offset += step;
    if (this.#offset < this.#file!.size) return;
    this.#closeFile();
    const f = this.#files[this.#index];
    const got = formatChecksum(this.#crc);
    if (got !== f.checksum) {
      this.#problem = new ImageFormatError(
        f.path,
        `checksum ${got} differs from the manifest's ${f.checksum}`,
      );
      return;
    }
    this.#index++;
    this.#offset = 0;
    this.#crc = 0;
  }

  /** Waits for a running fold (it unmaps its window and writes its slot), then lets go of everything. */
  #release(): void {
    const job = this.#inFlight;
    if (job) {
      while (!job.fold.done()) sleepSync(0.2);
      this.#inFlight = undefined;
    }
    this.#closeFile();
  }

  #closeFile(): void {
    this.#file?.close();
    this.#file = undefined;
  }
}
