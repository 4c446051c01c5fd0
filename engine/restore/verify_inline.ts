/**
 * Checking the images' checksums during a restore. Where syscall tables
 * run (x86-64 with PCLMULQDQ), the images are read and folded on a thread of
 * Deno's blocking pool from the start of the restore (verify_table.ts),
 * while cryo's main thread reads and compiles the images, runs the preflight
 * and launches the tree; cryo polls it at its steps (no worker to start, no
 * event loop needed). Otherwise a window at a time: each window is a
 * read-only mapping of the image (ffi/file_window.ts), folded on a thread
 * of Deno's blocking pool (ffi/crc32_fold.ts `crc32FoldInBackground`) or,
 * without PCLMULQDQ, checked by the main thread itself while the restore
 * session waits for the stubs.
 *
 * @module
 */

import { crc32, crc32AfterFold } from "../image/crc32.ts";
import { type FileWindow, MappedFile } from "../../ffi/file_window.ts";
import {
  type BackgroundFold,
  type BackgroundFoldFn,
  crc32FoldInBackground,
} from "../../ffi/crc32_fold.ts";
import { formatChecksum } from "../image/checksum.ts";
import { ImageFormatError } from "../image/errors.ts";
import { RestoreError } from "../errors.ts";
import { sleepSync } from "../sleep_sync.ts";
import { TableVerifier } from "./verify_table.ts";
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
   * mapped windows (default true).
   */
  table?: boolean;
  /** Bytes per table run (tests; default verify_table.ts `RUN_BYTES`). */
  tableRunBytes?: number;
}

/** A window being folded on another thread. */
interface InFlight {
  window: FileWindow;
  /** Bytes of the window given to the fold (a multiple of 16); the rest goes through the table. */
  bulk: number;
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
    this.#table = background && (opts.table ?? true) && tablesAvailable()
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
    this.#inFlight = { window, bulk, fold: fold(window.addr, bulk, ~this.#crc >>> 0) };
  }

  /** Takes a finished fold's result: the window's CRC, then the window is unmapped. */
  #complete(job: InFlight): void {
    this.#inFlight = undefined;
    try {
      this.#crc = crc32AfterFold(job.fold.remainder(), job.window.view().subarray(job.bulk));
    } finally {
      job.window.unmap();
    }
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

  /** Waits for a running fold (its window must stay mapped until it is done), then lets go of everything. */
  #release(): void {
    const job = this.#inFlight;
    if (job) {
      while (!job.fold.done()) sleepSync(0.2);
      job.window.unmap();
      this.#inFlight = undefined;
    }
    this.#closeFile();
  }

  #closeFile(): void {
    this.#file?.close();
    this.#file = undefined;
  }
}
