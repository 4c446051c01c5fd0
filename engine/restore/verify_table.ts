/**
 * The restore's checksum pass as syscall tables (ffi/syscall_table.ts) run
 * on one of Deno's blocking-pool threads: each image is read with `pread`
 * into one buffer of cryo's, {@link CHUNK} bytes at a time, and each chunk
 * is folded (ffi/crc32_fold.ts) right after it is read, the fold going on
 * from the one before: a fold leaves its 16-byte remainder in the buffer's
 * first 16 bytes, and the next fold takes those 16 bytes and the next chunk
 * (the remainder is congruent to every byte folded so far, so it stands in
 * for them). The file's last fold writes its own remainder, which
 * engine/image/crc32.ts `crc32AfterFold` finishes with the file's last
 * (<16) bytes, read by a `pread` of their own.
 *
 * Against a fold of read-only mappings of the file (the pass before it):
 * no page-table entry per page of the image (on this VM each file page
 * mapped cost more than its copy), no window to unmap between folds, so
 * no gap while cryo's main thread is busy elsewhere (a run of
 * {@link RUN_BYTES} goes on by itself), and 1 MiB of cryo's memory instead
 * of a 16 MiB window. The buffer is cryo's own: what is folded is what was
 * read, every byte of every image, as before.
 *
 * @module
 */

import { closeRawFd, openRawFd, SyscallTable, type TableRun } from "../../ffi/syscall_table.ts";
import { addressOf, syscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { errnoName } from "../../ffi/errno.ts";
import { crc32, crc32AfterFold } from "../image/crc32.ts";
import { formatChecksum } from "../image/checksum.ts";
import { ImageFormatError } from "../image/errors.ts";
import { RestoreError } from "../errors.ts";
import { sleepSync } from "../sleep_sync.ts";

/** Bytes read and folded per chunk (the buffer's size, beside the 16-byte remainder). */
export const CHUNK = 1 << 20;
/**
 * Bytes per table run: the main thread starts the next run at its next
 * step, and a restore that gives up waits for the run in flight, no more.
 * A run goes on past it when less than a quarter of it is left (one run
 * for the image of a process of up to 128 MiB and its binaries). A run
 * reads ~128 MiB in 30 to 60 ms here.
 */
export const RUN_BYTES = 128 << 20;
/** The shortest buffer the fold takes. */
const FOLD_MIN = 64;
/** A chunk after the first is folded with the 16 bytes of remainder before it. */
const CHAINED_MIN = FOLD_MIN - 16;

/** One image file and what its reads and folds leave. */
interface FileCheck {
  path: string;
  checksum: string;
  fd: number;
  /** Size when opened. */
  size: number;
  /** Bytes folded: the size rounded down to 16 (0 when under {@link FOLD_MIN}). */
  bulk: number;
  /** The last fold's remainder. */
  out: Uint8Array<ArrayBuffer>;
  /** The bytes after `bulk` (the whole file when `bulk` is 0). */
  tail: Uint8Array<ArrayBuffer>;
}

/** One `pread` of the tables and the bytes it must return. */
interface Read {
  file: FileCheck;
  table: SyscallTable;
  entry: number;
  bytes: number;
}

/** One piece of a file to read and fold. */
interface Piece {
  file: FileCheck;
  offset: number;
  length: number;
  /** First piece of its file (folded from the CRC register of nothing before it). */
  first: boolean;
  /** Last piece of its file (its remainder goes to the file's `out`). */
  last: boolean;
}

/** The pieces of a file: {@link CHUNK} bytes each, none after the first under {@link CHAINED_MIN}. */
function piecesOf(file: FileCheck): Piece[] {
  const out: Piece[] = [];
  for (let offset = 0; offset < file.bulk;) {
    let length = Math.min(CHUNK, file.bulk - offset);
    const after = file.bulk - offset - length;
    if (after > 0 && after < CHAINED_MIN) length += after; // at most CHUNK + 32 bytes
    out.push({ file, offset, length, first: offset === 0, last: offset + length === file.bulk });
    offset += length;
  }
  return out;
}

/**
 * Checks image checksums on syscall tables; same interface and answers as
 * engine/restore/verify_inline.ts `ImageVerifier` (which uses it where
 * tables can run).
 */
export class TableVerifier {
  readonly #toOpen: { path: string; checksum: string }[];
  #files: FileCheck[] | undefined;
  /** The runs still to start ({@link #runs}). */
  #toRun: Iterator<SyscallTable> | undefined;
  /** Every read of the runs made so far (each keeps its table until the results are read). */
  readonly #reads: Read[] = [];
  #inFlight: TableRun | undefined;
  /** Remainder and chunk: [0, 16) the remainder, then up to CHUNK + 32 bytes. */
  readonly #buf = new Uint8Array(16 + CHUNK + 64);
  #problem: Error | undefined;
  #finished = false;

  readonly #runBytes: number;

  /**
   * Nothing is opened or read before the first {@link step}. `runBytes`:
   * bytes per run (default {@link RUN_BYTES}; a multiple of {@link CHUNK}).
   */
  constructor(files: { path: string; checksum: string }[], runBytes = RUN_BYTES) {
    this.#toOpen = files.filter((f) => f.checksum);
    this.#runBytes = runBytes;
  }

  /**
   * Opens the files (first call) and starts the next run when none is in
   * flight; once the last run is done, compares the checksums. True when
   * it did one of those; false once everything is checked (or a problem
   * found), and while the run in flight goes on.
   */
  step(): boolean {
    if (this.#problem || this.#finished) return false;
    try {
      if (!this.#files) {
        this.#files = this.#open();
        this.#toRun = this.#runs(this.#files);
      }
      if (this.#inFlight && !this.#inFlight.done()) return false;
      this.#inFlight = undefined;
      const next = this.#toRun!.next();
      if (!next.done) {
        this.#inFlight = next.value.run();
        return true;
      }
      // Everything read: the answer, while cryo's main thread has nothing else to do.
      this.#problem = this.#results();
      this.#finished = true;
      this.#release();
      return true;
    } catch (e) {
      this.#problem = new RestoreError(`cannot verify the image: ${(e as Error).message}`);
      this.#release();
      return false;
    }
  }

  /** Runs whatever is left; returns the first problem, or undefined when every checksum matches. */
  finish(): Error | undefined {
    while (!this.#problem && !this.#finished) {
      if (!this.step() && this.#inFlight) sleepSync(0.2); // the table runs
    }
    this.#release();
    return this.#problem;
  }

  /** Stops early: waits for the run in flight (its buffers and fds), then closes the files. */
  close(): void {
    this.#release();
    if (!this.#finished) this.#problem ??= new RestoreError("the checksum pass was stopped");
    this.#finished = true;
  }

  /** Opens every file. */
  #open(): FileCheck[] {
    const files: FileCheck[] = [];
    try {
      for (const f of this.#toOpen) {
        // (A directory's "size" from lseek is not a length to read.)
        if (!Deno.statSync(f.path).isFile) throw new Error(`${f.path} is not a regular file`);
        const fd = openRawFd(f.path, false);
        let size: number;
        try {
          size = Number(syscall(SYS.lseek, fd, 0, 2 /* SEEK_END */));
        } catch (e) {
          closeRawFd(fd);
          throw e;
        }
        const bulk = size >= FOLD_MIN ? size - (size % 16) : 0;
        files.push({
          ...f,
          fd,
          size,
          bulk,
          out: new Uint8Array(16),
          tail: new Uint8Array(size - bulk),
        });
      }
    } catch (e) {
      for (const f of files) closeRawFd(f.fd);
      throw e;
    }
    return files;
  }

  /**
   * The runs' tables, each made when the run before it is done (an image of
   * gigabytes is not planned in one go before the restore's plan).
   */
  *#runs(files: FileCheck[]): Generator<SyscallTable> {
    const buf = this.#buf;
    // Addresses once (one bigint each), not an addressOf per entry.
    const base = addressOf(buf);
    const chunk = base + 16n;
    let table = new SyscallTable(256);
    let bytes = 0;
    let left = files.reduce((n, f) => n + f.bulk, 0);
    const read = (file: FileCheck, to: bigint | Uint8Array<ArrayBuffer>, n: number, at: number) => {
      const entry = table.syscall(SYS.pread64, file.fd, to, n, at);
      this.#reads.push({ file, table, entry, bytes: n });
    };
    table.keep(buf);
    for (const file of files) {
      for (const p of piecesOf(file)) {
        if (bytes >= this.#runBytes && left >= this.#runBytes / 4) {
          yield table;
          table = new SyscallTable(256);
          table.keep(buf);
          bytes = 0;
        }
        read(file, chunk, p.length, p.offset);
        const out = p.last ? file.out : base; // buf, kept with the table
        if (p.first) table.fold(chunk, p.length, 0xffffffff, out);
        else table.fold(base, 16 + p.length, 0, out);
        bytes += p.length;
        left -= p.length;
      }
      if (file.tail.length) read(file, file.tail, file.tail.length, file.bulk);
    }
    if (table.length) yield table;
  }

  /**
   * Every read whole, every file as long as when it was opened, every
   * file's CRC as the manifest's; the first problem otherwise.
   */
  #results(): Error | undefined {
    for (const file of this.#files ?? []) {
      const now = Number(syscall(SYS.lseek, file.fd, 0, 2 /* SEEK_END */));
      // Made only when returned: an Error's stack is ~0.2 ms of cold code on cryo's main thread.
      const shrank = () =>
        new RestoreError(
          `cannot verify the image: the file shrank from ${file.size} to ${now} bytes while it was read`,
        );
      if (now < file.size) return shrank();
      for (const r of this.#reads) {
        if (r.file !== file) continue;
        if (r.table.resultNumber(r.entry) === r.bytes) continue;
        const got = r.table.result(r.entry);
        if (got < 0n) {
          return new RestoreError(
            `cannot verify the image: pread(${file.path}) failed: ${errnoName(Number(-got))}`,
          );
        }
        return shrank(); // a read fell short: the file was shorter then
      }
      const crc = file.bulk ? crc32AfterFold(file.out, file.tail) : crc32(file.tail);
      const got = formatChecksum(crc);
      if (got !== file.checksum) {
        return new ImageFormatError(
          file.path,
          `checksum ${got} differs from the manifest's ${file.checksum}`,
        );
      }
    }
    return undefined;
  }

  /** Waits for a run in flight (it reads into the buffer and the files), then closes the files. */
  #release(): void {
    const run = this.#inFlight;
    if (run) {
      while (!run.done()) sleepSync(0.2);
      this.#inFlight = undefined;
    }
    for (const f of this.#files ?? []) {
      if (f.fd >= 0) closeRawFd(f.fd);
      f.fd = -1;
    }
  }
}
