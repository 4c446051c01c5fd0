/**
 * Checking the images' checksums on cryo's main thread, a window at a time,
 * in the time the restore session would otherwise spend waiting for the
 * restore stubs (they read the same pages from the page cache meanwhile):
 * no worker thread to start, and no copy of the page data (each window is a
 * read-only mapping of the image, see ffi/file_window.ts).
 *
 * @module
 */

import { crc32 } from "../image/crc32.ts";
import { MappedFile } from "../../ffi/file_window.ts";
import { formatChecksum } from "../image/checksum.ts";
import { ImageFormatError } from "../image/errors.ts";
import { RestoreError } from "../errors.ts";

/** Bytes checked per {@link ImageVerifier.step}: short enough to keep the session responsive. */
const WINDOW = 8 << 20;

/** One image file to check against its manifest checksum. */
export interface ImageToVerify {
  /** Path of the image file. */
  path: string;
  /** The manifest's checksum ("crc32:<hex>"); empty: nothing to check. */
  checksum: string;
}

/** Verifies image checksums incrementally; see {@link step} and {@link finish}. */
export class ImageVerifier {
  readonly #files: ImageToVerify[];
  #index = 0;
  #file: MappedFile | undefined;
  #offset = 0;
  #crc = 0;
  #problem: Error | undefined;

  /** Nothing is read before the first {@link step}. */
  constructor(files: ImageToVerify[]) {
    this.#files = files.filter((f) => f.checksum);
  }

  /** Checks the next window; returns false once everything is checked (or a problem found). */
  step(): boolean {
    if (this.#problem || this.#index >= this.#files.length) return false;
    const f = this.#files[this.#index];
    try {
      this.#file ??= MappedFile.open(f.path);
      const file = this.#file;
      this.#crc = file.withWindow(this.#offset, WINDOW, (v) => crc32(v, this.#crc));
      this.#offset += WINDOW;
      if (this.#offset < file.size) return true;
      this.#closeFile();
      const got = formatChecksum(this.#crc);
      if (got !== f.checksum) {
        this.#problem = new ImageFormatError(
          f.path,
          `checksum ${got} differs from the manifest's ${f.checksum}`,
        );
        return false;
      }
      this.#index++;
      this.#offset = 0;
      this.#crc = 0;
      return this.#index < this.#files.length;
    } catch (e) {
      this.#closeFile();
      this.#problem = new RestoreError(`cannot verify the image: ${(e as Error).message}`);
      return false;
    }
  }

  /** Checks whatever is left; returns the first problem, or undefined when every checksum matches. */
  finish(): Error | undefined {
    while (this.step()) { /* next window */ }
    this.#closeFile();
    return this.#problem;
  }

  /** Stops early and releases the open file (after a failed restore). */
  close(): void {
    this.#closeFile();
  }

  #closeFile(): void {
    this.#file?.close();
    this.#file = undefined;
  }
}
