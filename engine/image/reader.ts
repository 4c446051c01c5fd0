/**
 * Reader and validator of `<pid>.elf` checkpoint images.
 *
 * {@link readImageFile} reads only the headers and the notes (never the
 * page data), checks everything a restore relies on and throws
 * {@link ImageFormatError} with a one-line reason for anything corrupt,
 * truncated or of another format version. Page data is read on demand with
 * {@link readPageRun}.
 *
 * @module
 */

import { mappingsInNoteSchema, processImageSchema, schemaProblem } from "./schema.ts";
import { IMAGE_FORMAT_VERSION, type Mapping, type PageRun, type ProcessImage } from "../model.ts";
import {
  decodeEhdr,
  decodeNotes,
  decodePhdr,
  decodeShdr,
  EHDR_SIZE,
  EM_X86_64,
  ET_EXEC,
  EV_CURRENT,
  PAGE_SIZE,
  PHDR_SIZE,
  type ProgramHeader,
  PT_LOAD,
  PT_NOTE,
  type SectionHeader,
  SHDR_SIZE,
  stringAt,
} from "./elf.ts";
import { ImageFormatError } from "./errors.ts";
import { type HexNum, hexNum, hexPlus } from "./hexnum.ts";
import { sharedFlagList } from "./flag_lists.ts";
import { type MappingColumns, setMappingColumns } from "./mapping_columns.ts";
import {
  decodeMappingNote,
  MappingNoteError,
  type MappingsInNote,
  type RunPlace,
} from "./mapping_note.ts";
import {
  noteTypeName,
  NT_CRYO_MAPPINGS,
  NT_CRYO_PROCESS,
  NT_CRYO_VERSION,
  NT_PRSTATUS,
  NT_X86_XSTATE,
  OWNER_CORE,
  OWNER_CRYO,
  OWNER_LINUX,
  PRSTATUS_SIZE,
} from "./notes.ts";

/** Offset of pr_pid in NT_PRSTATUS (engine/image/notes.ts `encodePrstatus`). */
const PRSTATUS_PID_OFFSET = 32;

/** One note of an image, decoded from the PT_NOTE segment. */
export interface ImageNote {
  /** Owner name ("CORE", "LINUX", "CRYO"). */
  owner: string;
  /** n_type. */
  type: number;
  /** Symbolic type ("NT_PRSTATUS", "NT_CRYO_PROCESS", or hex). */
  name: string;
  /** File offset of the note header. */
  offset: number;
  /** File offset of the descriptor. */
  descOffset: number;
  /** Descriptor size in bytes. */
  size: number;
  /** Descriptor bytes. */
  desc: Uint8Array;
}

/** A section of an image, by name. */
export interface ImageSection {
  name: string;
  type: number;
  flags: number;
  addr: bigint;
  offset: number;
  size: number;
}

/** Everything {@link readImageFile} learns from an image without reading its page data. */
export interface ImageInfo {
  /** Path that was read. */
  path: string;
  /** File size in bytes. */
  size: number;
  /** The process description (CRYO note 1). */
  process: ProcessImage;
  /** CRYO note 2. */
  formatVersion: number;
  /** e_entry: the restore stub's standalone entry. */
  entry: bigint;
  /** The PT_LOAD of the bootstrap blob. */
  bootstrap: { vaddr: bigint; offset: number; filesz: number; memsz: number };
  /** The page-data region (.cryo.pages). */
  pagesSection: { offset: number; size: number };
  /** Every section but the null one, in header order. */
  sections: ImageSection[];
  /** Every note of the PT_NOTE segment, in file order. */
  notes: ImageNote[];
}

async function readExact(file: Deno.FsFile, offset: number, length: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  await file.seek(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < length) {
    const n = await file.read(buf.subarray(done));
    if (n === null) break;
    done += n;
  }
  return done === length ? buf : buf.subarray(0, done);
}

function readExactSync(file: Deno.FsFile, offset: number, length: number): Uint8Array {
  const buf = new Uint8Array(length);
  file.seekSync(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < length) {
    const n = file.readSync(buf.subarray(done));
    if (n === null) break;
    done += n;
  }
  return done === length ? buf : buf.subarray(0, done);
}

/**
 * Reads and validates an image's headers and notes. Throws
 * {@link ImageFormatError} when the file is not a cryo image of this format
 * version, is truncated, or has inconsistent contents.
 */
export async function readImageFile(path: string): Promise<ImageInfo> {
  return await Promise.resolve().then(() => readImageFileSync(path));
}

/**
 * {@link readImageFile} with synchronous reads: a few small reads (headers,
 * notes) that each cost a round trip through Deno's blocking pool when
 * asynchronous (the restore's plan, issue 10).
 */
export function readImageFileSync(path: string): ImageInfo {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new ImageFormatError(path, "no such file");
    throw e;
  }
  try {
    const size = file.statSync().size;
    const fail = (reason: string): never => {
      throw new ImageFormatError(path, reason);
    };
    const within = (what: string, offset: number, length: number) => {
      if (offset + length > size) {
        fail(`${what} [${offset}, +${length}) beyond end of file (${size} bytes): truncated?`);
      }
    };

    const eh = decodeEhdr(readExactSync(file, 0, EHDR_SIZE), path);
    if (eh.ident[6] !== EV_CURRENT || eh.version !== EV_CURRENT) fail("unknown ELF version");
    if (eh.type !== ET_EXEC) fail(`not a cryo image (e_type=${eh.type}, expected ET_EXEC)`);
    if (eh.machine !== EM_X86_64) fail(`not x86-64 (e_machine=${eh.machine})`);
    if (eh.ehsize !== EHDR_SIZE || eh.phentsize !== PHDR_SIZE) fail("unexpected header sizes");
    if (eh.phnum === 0) fail("no program headers");
    within("program header table", eh.phoff, eh.phnum * PHDR_SIZE);
    const phBytes = readExactSync(file, eh.phoff, eh.phnum * PHDR_SIZE);
    const phdrs: ProgramHeader[] = [];
    for (let i = 0; i < eh.phnum; i++) {
      phdrs.push(decodePhdr(phBytes.subarray(i * PHDR_SIZE, (i + 1) * PHDR_SIZE), path));
    }
    const loads = phdrs.filter((p) => p.type === PT_LOAD);
    const noteSegs = phdrs.filter((p) => p.type === PT_NOTE);
    if (loads.length !== 1) fail(`expected 1 PT_LOAD (bootstrap), found ${loads.length}`);
    if (noteSegs.length !== 1) fail(`expected 1 PT_NOTE, found ${noteSegs.length}`);
    const load = loads[0];
    within("bootstrap segment", load.offset, load.filesz);
    if (load.filesz > load.memsz) fail("bootstrap segment p_filesz > p_memsz");
    if (load.vaddr % BigInt(PAGE_SIZE) !== 0n || load.offset % PAGE_SIZE !== 0) {
      fail("bootstrap segment not page aligned");
    }
    if (eh.entry < load.vaddr || eh.entry >= load.vaddr + BigInt(load.memsz)) {
      fail(`entry 0x${eh.entry.toString(16)} outside the bootstrap segment`);
    }

    if (eh.shnum === 0) fail("no section headers");
    if (eh.shentsize !== SHDR_SIZE) fail(`unexpected section header size ${eh.shentsize}`);
    within("section header table", eh.shoff, eh.shnum * SHDR_SIZE);
    const shBytes = readExactSync(file, eh.shoff, eh.shnum * SHDR_SIZE);
    const shdrs: SectionHeader[] = [];
    for (let i = 0; i < eh.shnum; i++) {
      shdrs.push(decodeShdr(shBytes.subarray(i * SHDR_SIZE, (i + 1) * SHDR_SIZE), path));
    }
    if (eh.shstrndx === 0 || eh.shstrndx >= eh.shnum) fail(`bad e_shstrndx ${eh.shstrndx}`);
    const strSec = shdrs[eh.shstrndx];
    within("section name table", strSec.offset, strSec.size);
    const strtab = readExactSync(file, strSec.offset, strSec.size);
    const sections: ImageSection[] = shdrs.slice(1).map((s, i) => {
      const name = stringAt(strtab, s.name);
      if (name === undefined) fail(`section ${i + 1} has a bad name offset`);
      within(`section ${name}`, s.offset, s.size);
      return {
        name: name!,
        type: s.type,
        flags: s.flags,
        addr: s.addr,
        offset: s.offset,
        size: s.size,
      };
    });
    const byName = (n: string): ImageSection => {
      const s = sections.find((x) => x.name === n);
      return s ?? fail(`missing section ${n}`);
    };
    const pages = byName(".cryo.pages");
    byName(".note.core");
    byName(".note.cryo");

    const noteSeg = noteSegs[0];
    within("notes segment", noteSeg.offset, noteSeg.filesz);
    const area = readExactSync(file, noteSeg.offset, noteSeg.filesz);
    const notes: ImageNote[] = decodeNotes(area, path).map((n) => ({
      owner: n.owner,
      type: n.type,
      name: noteTypeName(n.owner, n.type),
      offset: noteSeg.offset + n.offset,
      descOffset: noteSeg.offset + n.descOffset,
      size: n.desc.length,
      desc: n.desc,
    }));

    const cryo = (type: number): ImageNote => {
      const found = notes.filter((n) => n.owner === OWNER_CRYO && n.type === type);
      if (found.length !== 1) {
        fail(`expected one CRYO ${noteTypeName(OWNER_CRYO, type)} note, found ${found.length}`);
      }
      return found[0];
    };
    const versionNote = cryo(NT_CRYO_VERSION);
    if (versionNote.size !== 4) fail(`NT_CRYO_VERSION has ${versionNote.size} bytes, expected 4`);
    const formatVersion = new DataView(
      versionNote.desc.buffer,
      versionNote.desc.byteOffset,
      4,
    ).getUint32(0, true);
    if (formatVersion !== IMAGE_FORMAT_VERSION) {
      fail(
        `image format version ${formatVersion}, this cryo reads version ${IMAGE_FORMAT_VERSION}`,
      );
    }
    const processNote = cryo(NT_CRYO_PROCESS);
    let parsed: unknown;
    try {
      parsed = JSON.parse(decodeUtf8(processNote.desc));
    } catch (e) {
      fail(
        `NT_CRYO_PROCESS is not valid UTF-8 JSON (${(e as Error).message.replace(/\s+/g, " ")})`,
      );
    }
    const shapeError = processImageShapeError(parsed);
    if (shapeError) fail(`NT_CRYO_PROCESS: ${shapeError}`);
    const proc = parsed as ProcessImage;
    const place = { offset: pages.offset, end: Math.min(pages.offset + pages.size, size) };
    const read = mappingsOf(proc.mappings, notes, place, fail);
    proc.mappings = read.mappings;
    // (validate and the restore's compile read these numbers, not the texts made of them.)
    if (read.columns) setMappingColumns(read.mappings, read.columns);
    if (read.unchecked === undefined) checkMappingRuns(proc.mappings, pages, size, fail);
    else checkSomeMappingRuns(proc.mappings, read.unchecked, pages, size, fail);

    const prstatus = notes.filter((n) => n.owner === OWNER_CORE && n.type === NT_PRSTATUS);
    if (prstatus.some((n) => n.size !== PRSTATUS_SIZE)) fail("NT_PRSTATUS note of the wrong size");
    if (prstatus.length !== proc.threads.length) {
      fail(`${prstatus.length} NT_PRSTATUS notes for ${proc.threads.length} threads`);
    }
    attachXstates(proc, notes, fail);

    return {
      path,
      size,
      process: proc,
      formatVersion,
      entry: eh.entry,
      bootstrap: { vaddr: load.vaddr, offset: load.offset, filesz: load.filesz, memsz: load.memsz },
      pagesSection: { offset: pages.offset, size: pages.size },
      sections,
      notes,
    };
  } finally {
    file.close();
  }
}

/**
 * The mapping records of a process whose note's `mappings` (shape checked)
 * is `listed`: that list itself when it is one (images written before
 * NT_CRYO_MAPPINGS, or with it turned off), else the rows of the one
 * NT_CRYO_MAPPINGS note with the records kept whole in JSON in their
 * places (engine/image/mapping_note.ts). A damaged note is refused by name.
 */
function mappingsOf(
  listed: Mapping[] | MappingsInNote,
  notes: readonly ImageNote[],
  place: RunPlace,
  fail: (reason: string) => never,
): { mappings: Mapping[]; unchecked?: number[]; columns?: MappingColumns } {
  let note: ImageNote | undefined;
  for (let i = 0; i < notes.length; i++) {
    const n = notes[i];
    if (n.owner !== OWNER_CRYO || n.type !== NT_CRYO_MAPPINGS) continue;
    if (note !== undefined) fail("more than one CRYO NT_CRYO_MAPPINGS note");
    note = n;
  }
  if (Array.isArray(listed)) {
    if (note !== undefined) fail("an NT_CRYO_MAPPINGS note beside a mapping list in JSON");
    return { mappings: listed };
  }
  if (note === undefined) {
    fail("NT_CRYO_PROCESS keeps its mappings in an NT_CRYO_MAPPINGS note, found none");
  }
  try {
    return decodeMappingNote(note!.desc, listed.whole, place);
  } catch (e) {
    if (e instanceof MappingNoteError) fail(e.message);
    throw e;
  }
}

/**
 * Gives each thread record without a base64 `xsave` its XSAVE area: the
 * descriptor of the `NT_X86_XSTATE` note that follows the thread's
 * `NT_PRSTATUS` (pr_pid = its tid) in the core notes
 * (engine/image/thread_xsave.ts). A record that has `xsave` keeps it
 * (images written before the area moved to the note carry both). A record
 * with neither is refused: cryo writes every area one way or the other,
 * and restoring a thread without its floating-point and vector state
 * would run it on with registers the image did not record.
 */
function attachXstates(
  proc: ProcessImage,
  notes: readonly ImageNote[],
  fail: (reason: string) => never,
): void {
  const threads = proc.threads;
  let all = true;
  for (let i = 0; i < threads.length; i++) {
    if (threads[i].xsave === undefined) all = false;
    else delete threads[i].xstate; // (not the image's to give: never read when xsave is there)
  }
  if (all) return;
  const byTid = new Map<number, Uint8Array>();
  let tid: number | undefined;
  for (let i = 0; i < notes.length; i++) {
    const n = notes[i];
    if (n.type === NT_PRSTATUS && n.owner === OWNER_CORE) {
      tid = new DataView(n.desc.buffer, n.desc.byteOffset, n.desc.length).getInt32(
        PRSTATUS_PID_OFFSET,
        true,
      );
    } else if (n.type === NT_X86_XSTATE && n.owner === OWNER_LINUX) {
      if (tid === undefined) fail("NT_X86_XSTATE note before any NT_PRSTATUS");
      if (byTid.has(tid!)) fail(`two NT_X86_XSTATE notes for thread ${tid}`);
      byTid.set(tid!, n.desc);
    }
  }
  for (let i = 0; i < threads.length; i++) {
    const t = threads[i];
    if (t.xsave !== undefined) continue;
    const xstate = byTid.get(t.tid);
    if (xstate === undefined) {
      fail(`thread ${t.tid} has no XSAVE area: no xsave in its record, no NT_X86_XSTATE note`);
    }
    Object.defineProperty(t, "xstate", {
      value: xstate,
      enumerable: false,
      writable: true,
      configurable: true,
    });
  }
}

/**
 * Checks the parts of a ProcessImage that readers and restore rely on
 * (ids, mappings with page runs, threads with registers, bootstrap: all
 * of them in the schema, engine/image/schema.ts); returns a reason, or
 * undefined when the shape is fine. A `mappings` object (the records in an
 * NT_CRYO_MAPPINGS note) is checked after the rest: its records kept whole.
 */
export function processImageShapeError(x: unknown): string | undefined {
  if (typeof x !== "object" || x === null || Array.isArray(x)) return "not an object";
  const listed = (x as { mappings?: unknown }).mappings;
  if (typeof listed !== "object" || listed === null || Array.isArray(listed)) {
    return schemaProblem(processImageSchema, x);
  }
  // The records in NT_CRYO_MAPPINGS: the rest of the process, then the records kept whole.
  const rest = { ...x, mappings: [] };
  return schemaProblem(processImageSchema, rest) ?? schemaProblem(mappingsInNoteSchema, x);
}

/**
 * The UTF-8 text of `bytes`, refusing invalid UTF-8 as a fatal decoder
 * does: the replacing decode is the cheaper one (~2 MB of note for 10,000
 * mappings), and its text has no U+FFFD unless the bytes were invalid or
 * encoded one; only then is the fatal decode run, for its verdict.
 */
export function decodeUtf8(bytes: Uint8Array): string {
  const text = new TextDecoder().decode(bytes);
  if (text.indexOf("\uFFFD") < 0) return text;
  return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
}

/**
 * The reader's pass over the mappings (each VmFlags list shared, each page
 * run inside its mapping and inside `.cryo.pages`), in a function of its
 * own: its loop runs 10,000 times for 10,000 mappings, long enough for V8
 * to compile it optimized while it runs (on-stack replacement), and that
 * compile takes the whole function it sits in (the reader's: tens of ms
 * of CPU on V8's worker threads, beside the plan on 2 vCPUs; this one:
 * a few).
 */
function checkMappingRuns(
  mappings: ProcessImage["mappings"],
  pages: { offset: number; size: number },
  size: number,
  fail: (reason: string) => never,
): void {
  mappings.findIndex((m) => {
    m.vmFlags = sharedFlagList(m.vmFlags); // (the plan's list tests by identity: flag_lists.ts)
    if (m.pages.length === 0) return false; // (most of 10,000 small mappings: nothing to parse)
    const start = hexNum(m.start);
    const end = hexNum(m.end);
    if (m.pages.length === 1) {
      // (The common case: one run, no array of addresses made for it.)
      const r = m.pages[0];
      const addr = r.addr === m.start ? start : hexNum(r.addr);
      if (addr < start || hexPlus(addr, r.length) > end) {
        fail(`${runWhere(r, m)} lies outside its mapping`);
      }
      checkRunPlace(r, m, pages, size, fail);
      return false;
    }
    checkRuns(m, start, end, pages, size, fail);
    return false;
  });
}

/**
 * {@link checkMappingRuns} of the records at `indexes` only: the records of
 * an NT_CRYO_MAPPINGS note whose runs its decode did not find in place
 * (engine/image/mapping_note.ts `DecodedMappings.unchecked`); the others
 * were checked there, and their VmFlags lists are shared already.
 */
function checkSomeMappingRuns(
  mappings: ProcessImage["mappings"],
  indexes: readonly number[],
  pages: { offset: number; size: number },
  size: number,
  fail: (reason: string) => never,
): void {
  for (let i = 0; i < indexes.length; i++) {
    checkMappingRuns([mappings[indexes[i]]], pages, size, fail);
  }
}

/** {@link checkMappingRuns} for a mapping of several page runs: in order, apart, inside it. */
function checkRuns(
  m: Mapping,
  start: HexNum,
  end: HexNum,
  pages: { offset: number; size: number },
  size: number,
  fail: (reason: string) => never,
): void {
  // Each address parsed once (a fragmented image has a run every few pages).
  const addrs = m.pages.length === 1
    ? [hexNum(m.pages[0].addr)]
    : m.pages.map((r) => hexNum(r.addr));
  if (addrs.length > 1) {
    const order = addrs.map((_, i) => i).sort((a, b) => (addrs[a] < addrs[b] ? -1 : 1));
    for (let k = 1; k < order.length; k++) {
      const [i, j] = [order[k - 1], order[k]];
      if (hexPlus(addrs[i], m.pages[i].length) > addrs[j]) {
        fail(
          `page runs ${m.pages[i].addr} and ${m.pages[j].addr} of mapping ${m.start} overlap`,
        );
      }
    }
  }
  for (let i = 0; i < m.pages.length; i++) {
    const r = m.pages[i];
    const addr = addrs[i];
    if (addr < start || hexPlus(addr, r.length) > end) {
      fail(`${runWhere(r, m)} lies outside its mapping`);
    }
    checkRunPlace(r, m, pages, size, fail);
  }
}

/** Checks that page run `r` of mapping `m` is page aligned and inside `.cryo.pages` of the file. */
function checkRunPlace(
  r: PageRun,
  m: { start: string; end: string },
  pages: { offset: number; size: number },
  size: number,
  fail: (reason: string) => never,
): void {
  if (r.fileOffset % PAGE_SIZE !== 0 || r.length % PAGE_SIZE !== 0) {
    fail(`${runWhere(r, m)} is not page aligned`);
  }
  if (r.parent !== undefined) return; // in a parent image (engine/image/chain.ts)
  if (r.fileOffset < pages.offset || r.fileOffset + r.length > pages.offset + pages.size) {
    fail(`${runWhere(r, m)} at file offset ${r.fileOffset} lies outside .cryo.pages`);
  }
  if (r.fileOffset + r.length > size) {
    fail(`${runWhere(r, m)} lies beyond end of file: truncated?`);
  }
}

/** The text naming page run `r` of mapping `m` in a refusal. */
function runWhere(r: PageRun, m: { start: string; end: string }): string {
  return `page run ${r.addr}+${r.length} of mapping ${m.start}-${m.end}`;
}

/** A run whose data is in a parent image is not in this file (engine/image/chain.ts). */
function refuseParentRun(path: string, run: PageRun): void {
  if (run.parent !== undefined) {
    throw new ImageFormatError(
      path,
      `page run ${run.addr} is in a parent image; flatten the chain first (cryo image flatten)`,
    );
  }
}

/** Reads the saved bytes of one page run (use for small runs; large ones stream). */
export async function readPageRun(file: Deno.FsFile | string, run: PageRun): Promise<Uint8Array> {
  refuseParentRun(typeof file === "string" ? file : "", run);
  const f = typeof file === "string" ? await Deno.open(file, { read: true }) : file;
  try {
    const bytes = await readExact(f, run.fileOffset, run.length);
    if (bytes.length !== run.length) {
      throw new ImageFormatError(
        typeof file === "string" ? file : "",
        `page run ${run.addr} at ${run.fileOffset}+${run.length} beyond end of file`,
      );
    }
    return bytes;
  } finally {
    if (typeof file === "string") f.close();
  }
}

/** Synchronous {@link readPageRun} on an open file. */
export function readPageRunSync(file: Deno.FsFile, run: PageRun): Uint8Array {
  refuseParentRun("", run);
  const bytes = readExactSync(file, run.fileOffset, run.length);
  if (bytes.length !== run.length) {
    throw new ImageFormatError(
      "",
      `page run ${run.addr} at ${run.fileOffset}+${run.length} beyond end of file`,
    );
  }
  return bytes;
}
