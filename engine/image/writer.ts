/**
 * Streaming writer of `<pid>.elf` checkpoint images.
 *
 * The dumper creates the writer with the bootstrap blob (restore stub +
 * restore program), reserves page-data space and writes pages while it
 * reads the target's memory, then calls {@link ImageWriter.finish} with the
 * complete {@link ProcessImage}: that writes the notes, the section headers
 * and the ELF header, fsyncs and renames the file into place.
 *
 * File layout (docs/IMAGE-FORMAT.md):
 *
 * ```
 * 0x0000  Elf64_Ehdr, 3 x Elf64_Phdr (PT_LOAD, PT_NOTE, PT_GNU_STACK)
 * 0x1000  bootstrap blob (.cryo.stub, PT_LOAD at the bootstrap address)
 * P       page data (.cryo.pages), page aligned, P = align(0x1000 + blob)
 *         (further on after a pre-copy: a hole separates blob and pages)
 * N       notes: .note.core (CORE/LINUX) then .note.cryo (CRYO); one PT_NOTE
 *         .shstrtab, then the section header table (8-aligned)
 * ```
 *
 * @module
 */

import { crc32 } from "./crc32.ts";
import type { PageRun, ProcessImage } from "../model.ts";
import { findFrom } from "../find_from.ts";
import {
  alignUp,
  EHDR_SIZE,
  EM_X86_64,
  encodeEhdr,
  encodePhdr,
  encodeShdr,
  ET_EXEC,
  PAGE_SIZE,
  PF_R,
  PF_W,
  PF_X,
  PHDR_SIZE,
  PT_GNU_STACK,
  PT_LOAD,
  PT_NOTE,
  type SectionHeader,
  SHDR_SIZE,
  SHF_ALLOC,
  SHF_EXECINSTR,
  SHF_WRITE,
  SHT_NOTE,
  SHT_NULL,
  SHT_PROGBITS,
  SHT_STRTAB,
  StringTable,
} from "./elf.ts";
import { encodeCryoNotes, hexToBigInt } from "./notes.ts";
import { encodeCoreNotes } from "./core_notes.ts";

/** File offset of the bootstrap blob in every image. */
export const BOOTSTRAP_FILE_OFFSET = 0x1000;

/** Section names of an image, in section-header order (index 0 is the null section). */
export const IMAGE_SECTIONS = [
  ".cryo.stub",
  ".cryo.pages",
  ".note.core",
  ".note.cryo",
  ".shstrtab",
] as const;

/** What {@link ImageWriter.create} needs to know up front. */
export interface ImageWriterOptions {
  /** Page-aligned virtual address where the kernel maps the blob. */
  bootstrapStart: bigint;
  /** Bytes reserved at `bootstrapStart` (p_memsz); at least `blob.length`. */
  bootstrapSize: number;
  /** Restore stub and restore program, loaded at `bootstrapStart`. */
  blob: Uint8Array;
  /** e_entry: the stub's standalone entry point (inside the bootstrap range). */
  entry: bigint;
  /**
   * Page data already in the file at [start, end) (a pre-copy,
   * engine/dump/precopy.ts): the file is kept instead of truncated, and the
   * page region starts there. The blob must end before `start`.
   */
  pages?: { start: number; end: number };
}

/** Options of {@link ImageWriter.finish}. */
export interface FinishOptions {
  /** Compute the checksum of the finished file (default true; reads the file back). */
  checksum?: boolean;
  /** fdatasync the file and fsync its directory (default true; false for throw-away images). */
  sync?: boolean;
  /**
   * The core notes, when the caller encoded them already: `encodeCoreNotes(proc)`
   * (engine/image/core_notes.ts) of this very `proc`, nothing they record changed since
   * (its threads, auxv, file mappings, ids, creds, comm and command line).
   */
  coreNotes?: Uint8Array<ArrayBuffer>;
}

/** What {@link ImageWriter.finish} produced. */
export interface ImageSummary {
  /** Final path of the image. */
  path: string;
  /** Size in bytes. */
  size: number;
  /** {@link checksumFile} of the file ("" when not computed). */
  checksum: string;
  /** Bytes of the page-data region (.cryo.pages). */
  pagesBytes: number;
  /**
   * Everything after the page data (notes, string table, section headers),
   * as {@link ImageWriter.finish} wrote it in one piece up to the file's
   * end: its CRC-32 (engine/image/crc32.ts) and length, so that the dump's
   * checksum need not read it back (engine/image/checksum.ts
   * `checksumAround`). Only with `checksum: false`.
   */
  tail?: { crc: number; length: number };
}

/** Streaming writer of one process image; see the module doc for the layout. */
export class ImageWriter {
  /** Final path of the image (written by {@link finish}). */
  readonly path: string;
  /** Path being written until {@link finish} renames it to {@link path}. */
  readonly partialPath: string;
  /** The open file (write). Pages may be written to it directly at reserved offsets. */
  readonly file: Deno.FsFile;
  /** File offset where the page-data region starts. */
  readonly pagesStart: number;
  readonly #opts: ImageWriterOptions;
  #pagesEnd: number;
  #closed = false;

  private constructor(path: string, file: Deno.FsFile, opts: ImageWriterOptions) {
    this.path = path;
    this.partialPath = `${path}.partial`;
    this.file = file;
    this.#opts = opts;
    this.pagesStart = opts.pages?.start ??
      alignUp(BOOTSTRAP_FILE_OFFSET + opts.blob.length, PAGE_SIZE);
    this.#pagesEnd = opts.pages?.end ?? this.pagesStart;
  }

  /**
   * Creates `<path>.partial` (mode 0700: images are exec'd, and private), writes the
   * bootstrap blob into it and returns the writer. Throws RangeError on an
   * unaligned bootstrap or a blob larger than its reservation.
   */
  static async create(path: string, opts: ImageWriterOptions): Promise<ImageWriter> {
    if (opts.bootstrapStart % BigInt(PAGE_SIZE) !== 0n) {
      throw new RangeError(
        `bootstrap start 0x${opts.bootstrapStart.toString(16)} not page aligned`,
      );
    }
    if (opts.blob.length > opts.bootstrapSize) {
      throw new RangeError(
        `bootstrap blob (${opts.blob.length} bytes) larger than its reservation (${opts.bootstrapSize})`,
      );
    }
    const end = opts.bootstrapStart + BigInt(opts.bootstrapSize);
    if (opts.entry < opts.bootstrapStart || opts.entry >= end) {
      throw new RangeError(`entry 0x${opts.entry.toString(16)} outside the bootstrap range`);
    }
    if (opts.pages && BOOTSTRAP_FILE_OFFSET + opts.blob.length > opts.pages.start) {
      throw new RangeError(`bootstrap blob overlaps the page data already written`);
    }
    // Synchronous calls for these few small operations: an async file op
    // costs a thread hand-off, more than the syscall in a fresh Deno.
    const file = Deno.openSync(`${path}.partial`, {
      read: true,
      write: true,
      create: true,
      truncate: !opts.pages,
      mode: 0o700,
    });
    // Private (it holds the process's memory) and executable by its owner, whatever the umask.
    try {
      Deno.chmodSync(`${path}.partial`, 0o700);
    } catch (e) {
      file.close();
      throw e;
    }
    const w = new ImageWriter(path, file, opts);
    try {
      w.#writeAtSync(BOOTSTRAP_FILE_OFFSET, opts.blob);
    } catch (e) {
      await w.abort();
      throw e;
    }
    return w;
  }

  /** Bytes of page data reserved so far. */
  get pagesBytes(): number {
    return this.#pagesEnd - this.pagesStart;
  }

  /**
   * Reserves `length` bytes of page data and returns their file offset
   * (page aligned). Successive reservations do not overlap.
   */
  reservePages(length: number): number {
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new RangeError(`bad page-data length ${length}`);
    }
    const at = alignUp(this.#pagesEnd, PAGE_SIZE);
    this.#pagesEnd = at + length;
    return at;
  }

  /** File offset where the next {@link appendPages} lands (page aligned while appends are page multiples). */
  pagesPosition(): number {
    return this.#pagesEnd;
  }

  /**
   * Appends page data at {@link pagesPosition} (reserving it first, before
   * any await, so the offset is fixed at call time). `bytes.length` must be
   * a multiple of the page size. Do not call again before the previous
   * append resolved.
   */
  async appendPages(bytes: Uint8Array): Promise<void> {
    if (bytes.length % PAGE_SIZE !== 0) {
      throw new RangeError(`page data of ${bytes.length} bytes is not a page multiple`);
    }
    const at = this.#pagesEnd;
    this.#pagesEnd += bytes.length;
    await this.writePagesAt(at, bytes);
  }

  /**
   * A sequential sink over {@link pagesPosition}/{@link appendPages}:
   * `position()` is the offset the next `write()` lands at.
   */
  pageSink(): { position(): number; write(bytes: Uint8Array): Promise<void> } {
    return { position: () => this.pagesPosition(), write: (b) => this.appendPages(b) };
  }

  /** Writes page data at a reserved offset. */
  async writePagesAt(offset: number, bytes: Uint8Array): Promise<void> {
    this.#checkReserved(offset, bytes.length);
    await this.#writeAt(offset, bytes);
  }

  /** Synchronous {@link writePagesAt}, for the dumper's synchronous loops. */
  writePagesAtSync(offset: number, bytes: Uint8Array): void {
    this.#checkReserved(offset, bytes.length);
    this.file.seekSync(offset, Deno.SeekMode.Start);
    let done = 0;
    while (done < bytes.length) done += this.file.writeSync(bytes.subarray(done));
  }

  #checkReserved(offset: number, length: number): void {
    if (this.#closed) throw new Error(`${this.partialPath}: writer already finished`);
    if (offset < this.pagesStart || offset + length > this.#pagesEnd) {
      throw new RangeError(
        `page write [${offset}, +${length}) outside reserved page data [${this.pagesStart}, ${this.#pagesEnd})`,
      );
    }
  }

  #writeAtSync(offset: number, bytes: Uint8Array): void {
    this.file.seekSync(offset, Deno.SeekMode.Start);
    let done = 0;
    while (done < bytes.length) done += this.file.writeSync(bytes.subarray(done));
  }

  async #writeAt(offset: number, bytes: Uint8Array): Promise<void> {
    await this.file.seek(offset, Deno.SeekMode.Start);
    let done = 0;
    while (done < bytes.length) done += await this.file.write(bytes.subarray(done));
  }

  /**
   * Writes notes, string table, section headers and the ELF header, fsyncs,
   * closes and renames the file to {@link path}. Every PageRun of `proc`
   * must lie inside the reserved page data, and `proc.bootstrap` must match
   * the options given to {@link create}.
   */
  async finish(proc: ProcessImage, opts: FinishOptions = {}): Promise<ImageSummary> {
    this.#validate(proc);
    const o = this.#opts;
    const pagesEnd = alignUp(this.#pagesEnd, PAGE_SIZE);
    const coreNotes = opts.coreNotes ?? encodeCoreNotes(proc);
    const cryoNotes = encodeCryoNotes(proc);
    const coreOff = pagesEnd;
    const cryoOff = coreOff + coreNotes.length;
    const strtab = new StringTable();
    const names = IMAGE_SECTIONS.map((n) => strtab.add(n));
    const strtabBytes = strtab.bytes();
    const strtabOff = cryoOff + cryoNotes.length;
    const shoff = alignUp(strtabOff + strtabBytes.length, 8);

    const sections: SectionHeader[] = [
      section(0, SHT_NULL, 0, 0n, 0, 0, 0),
      section(
        names[0],
        SHT_PROGBITS,
        SHF_ALLOC | SHF_WRITE | SHF_EXECINSTR,
        o.bootstrapStart,
        BOOTSTRAP_FILE_OFFSET,
        o.blob.length,
        PAGE_SIZE,
      ),
      section(
        names[1],
        SHT_PROGBITS,
        0,
        0n,
        this.pagesStart,
        pagesEnd - this.pagesStart,
        PAGE_SIZE,
      ),
      section(names[2], SHT_NOTE, 0, 0n, coreOff, coreNotes.length, 4),
      section(names[3], SHT_NOTE, 0, 0n, cryoOff, cryoNotes.length, 4),
      section(names[4], SHT_STRTAB, 0, 0n, strtabOff, strtabBytes.length, 1),
    ];
    const shdrs = new Uint8Array(SHDR_SIZE * sections.length);
    sections.forEach((s, i) => shdrs.set(encodeShdr(s), i * SHDR_SIZE));

    const head = new Uint8Array(EHDR_SIZE + 3 * PHDR_SIZE);
    head.set(
      encodeEhdr({
        type: ET_EXEC,
        machine: EM_X86_64,
        entry: o.entry,
        phoff: EHDR_SIZE,
        shoff,
        flags: 0,
        phnum: 3,
        shnum: sections.length,
        shstrndx: sections.length - 1,
      }),
    );
    const phdrs = [
      {
        type: PT_LOAD,
        flags: PF_R | PF_W | PF_X,
        offset: BOOTSTRAP_FILE_OFFSET,
        vaddr: o.bootstrapStart,
        paddr: o.bootstrapStart,
        filesz: o.blob.length,
        memsz: o.bootstrapSize,
        align: PAGE_SIZE,
      },
      {
        type: PT_NOTE,
        flags: PF_R,
        offset: coreOff,
        vaddr: 0n,
        paddr: 0n,
        filesz: coreNotes.length + cryoNotes.length,
        memsz: 0,
        align: 4,
      },
      {
        type: PT_GNU_STACK,
        flags: PF_R | PF_W,
        offset: 0,
        vaddr: 0n,
        paddr: 0n,
        filesz: 0,
        memsz: 0,
        align: 16,
      },
    ];
    phdrs.forEach((p, i) => head.set(encodePhdr(p), EHDR_SIZE + i * PHDR_SIZE));

    // Everything after the page data in one buffer (the padding before the
    // section headers zero), written with one call; then the ELF header.
    const tail = new Uint8Array(shoff + shdrs.length - coreOff);
    tail.set(coreNotes, 0);
    tail.set(cryoNotes, cryoOff - coreOff);
    tail.set(strtabBytes, strtabOff - coreOff);
    tail.set(shdrs, shoff - coreOff);
    try {
      this.#writeAtSync(coreOff, tail);
      this.#writeAtSync(0, head);
      this.file.truncateSync(shoff + shdrs.length);
      if (opts.sync !== false) await this.file.syncData();
    } catch (e) {
      await this.abort();
      throw e;
    }
    this.file.close();
    this.#closed = true;
    const size = shoff + shdrs.length;
    const checksum = opts.checksum === false ? "" : await checksumFile(this.partialPath);
    Deno.renameSync(this.partialPath, this.path);
    if (opts.sync !== false) await syncDirectoryOf(this.path);
    return {
      path: this.path,
      size,
      checksum,
      pagesBytes: pagesEnd - this.pagesStart,
      // (The file ends with `tail`: truncated to its end above.)
      ...(opts.checksum === false ? { tail: { crc: crc32(tail), length: tail.length } } : {}),
    };
  }

  #validate(proc: ProcessImage): void {
    const o = this.#opts;
    if (
      hexToBigInt(proc.bootstrap?.start) !== o.bootstrapStart ||
      proc.bootstrap.size !== o.bootstrapSize
    ) {
      throw new Error(
        `process bootstrap ${JSON.stringify(proc.bootstrap)} differs from the writer's ` +
          `(0x${o.bootstrapStart.toString(16)}, ${o.bootstrapSize})`,
      );
    }
    // A run in a parent image (engine/image/chain.ts) is not in this file's page data.
    const outside = (r: PageRun) =>
      r.parent === undefined && (
        r.fileOffset % PAGE_SIZE !== 0 || r.length % PAGE_SIZE !== 0 ||
        r.fileOffset < this.pagesStart || r.fileOffset + r.length > this.#pagesEnd
      );
    // By findIndex: no loop of 10,000 mappings for V8 to compile (engine/find_from.ts).
    let bad: PageRun | undefined;
    const m =
      proc.mappings[findFrom(proc.mappings, (m) => (bad = m.pages.find(outside)) !== undefined)];
    if (m && bad) {
      throw new RangeError(
        `page run ${bad.addr}+${bad.length} at file offset ${bad.fileOffset} of mapping ${m.start} ` +
          `is not inside the reserved page data [${this.pagesStart}, ${this.#pagesEnd})`,
      );
    }
  }

  /** Closes and deletes the partial file (after a failed dump). Safe to call twice. */
  async abort(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.file.close();
      } catch { /* already closed */ }
    }
    await Deno.remove(this.partialPath).catch(() => {});
  }
}

function section(
  name: number,
  type: number,
  flags: number,
  addr: bigint,
  offset: number,
  size: number,
  addralign: number,
): SectionHeader {
  return { name, type, flags, addr, offset, size, link: 0, info: 0, addralign, entsize: 0 };
}

/**
 * The checksum of a file as the manifest records it: "crc32:<8 hex
 * digits>", CRC-32 (zlib's, hardware accelerated) over every byte, read
 * in 16 MiB chunks. Fast enough (~tens of GB/s plus the read) to check
 * multi-GiB images on every restore.
 */
export async function checksumFile(path: string): Promise<string> {
  using f = await Deno.open(path, { read: true });
  const buf = new Uint8Array(16 << 20);
  let crc = 0;
  for (;;) {
    const n = await f.read(buf);
    if (n === null) break;
    crc = crc32(buf.subarray(0, n), crc);
  }
  return `crc32:${(crc >>> 0).toString(16).padStart(8, "0")}`;
}

async function syncDirectoryOf(path: string): Promise<void> {
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
  try {
    using d = await Deno.open(dir, { read: true });
    await d.sync();
  } catch { /* best effort: some filesystems refuse fsync on directories */ }
}
