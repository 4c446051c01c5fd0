/**
 * `export-core`: turns a cryo image into a standard ELF core file (ET_CORE)
 * that gdb, readelf and other core tools load like a kernel core dump.
 *
 * Layout: Ehdr, program headers (PT_NOTE first, then one PT_LOAD per
 * mapping in address order), the standard core notes (cryo's own notes
 * are left out; XSAVE areas in the standard layout gdb expects), then the
 * memory of each segment at page-aligned offsets.
 * Unsaved anonymous memory stays a hole in a sparse file; unsaved parts of
 * file mappings are filled from the backing file when it is still there and
 * unchanged; mappings with nothing saved get p_filesz = 0, except [vdso]
 * when the image directory's manifest shows the dump ran on this very
 * kernel (same vDSO SHA-256): then our own vDSO bytes are written, so gdb
 * can unwind through it.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { Mapping } from "../model.ts";
import {
  alignUp,
  EHDR_SIZE,
  EM_X86_64,
  encodeEhdr,
  encodePhdr,
  encodeShdr,
  ET_CORE,
  PAGE_SIZE,
  PF_R,
  PF_W,
  PF_X,
  PHDR_SIZE,
  PN_XNUM,
  type ProgramHeader,
  PT_LOAD,
  PT_NOTE,
  SHDR_SIZE,
  SHT_NULL,
} from "./elf.ts";
import { coreNoteSpecs, encodeNotes, hexToBigInt, isFileMapping } from "./notes.ts";
import { readImageFile } from "./reader.ts";
import { readManifest } from "./manifest.ts";
import { ImageFormatError } from "./errors.ts";

/** Mapping names that never become PT_LOAD segments (not readable memory). */
const SKIPPED_NAMES = new Set(["[vvar]", "[vvar_vclock]", "[vsyscall]"]);

/** What {@link exportCore} wrote. */
export interface CoreSummary {
  /** Path of the core file. */
  path: string;
  /** Apparent size in bytes (the file is sparse). */
  size: number;
  /** Number of PT_LOAD segments. */
  loads: number;
  /** Bytes copied from the image's saved pages. */
  savedBytes: number;
  /** Bytes filled from backing files. */
  fileBytes: number;
  /** Backing files that are gone or changed since the dump (their parts are zero). */
  unavailableFiles: string[];
  /** True when [vdso] was filled from this host's identical vDSO. */
  vdsoFilled: boolean;
}

/** True for mappings that get a PT_LOAD in an exported core. */
export function isCoreMapping(m: Mapping): boolean {
  return m.kind !== "vsyscall" && !SKIPPED_NAMES.has(m.name);
}

/** p_flags for a "rwxp" permission string. */
export function permsToFlags(perms: string): number {
  return (perms[0] === "r" ? PF_R : 0) | (perms[1] === "w" ? PF_W : 0) |
    (perms[2] === "x" ? PF_X : 0);
}

/** Writes the ELF core for `imagePath` to `outPath` (via `<outPath>.partial`, then rename). */
export async function exportCore(imagePath: string, outPath: string): Promise<CoreSummary> {
  const info = await readImageFile(imagePath);
  const proc = info.process;
  const vdso = await sameKernelVdso(imagePath);
  const notes = encodeNotes(coreNoteSpecs(proc, { standardXsave: true }));
  const mappings = [...proc.mappings].filter(isCoreMapping).sort((a, b) =>
    hexToBigInt(a.start) < hexToBigInt(b.start) ? -1 : 1
  );
  const phnum = 1 + mappings.length;
  const extended = phnum >= PN_XNUM;
  const shoff = EHDR_SIZE + phnum * PHDR_SIZE;
  const notesOff = shoff + (extended ? SHDR_SIZE : 0);
  let cursor = alignUp(notesOff + notes.length, PAGE_SIZE);

  const phdrs: ProgramHeader[] = [{
    type: PT_NOTE,
    flags: 0,
    offset: notesOff,
    vaddr: 0n,
    paddr: 0n,
    filesz: notes.length,
    memsz: 0,
    align: 0,
  }];
  const placed: { mapping: Mapping; offset: number }[] = [];
  for (const m of mappings) {
    const start = hexToBigInt(m.start);
    const size = Number(hexToBigInt(m.end) - start);
    const vdsoFill = m.name === "[vdso]" && m.pages.length === 0 && vdso?.length === size;
    const saved = m.pages.length > 0 || vdsoFill;
    phdrs.push({
      type: PT_LOAD,
      flags: permsToFlags(m.perms),
      offset: cursor,
      vaddr: start,
      paddr: 0n,
      filesz: saved ? size : 0,
      memsz: size,
      align: PAGE_SIZE,
    });
    if (saved) {
      placed.push({ mapping: m, offset: cursor });
      cursor += size;
    }
  }

  const head = new Uint8Array(notesOff);
  head.set(encodeEhdr({
    type: ET_CORE,
    machine: EM_X86_64,
    entry: 0n,
    phoff: EHDR_SIZE,
    shoff: extended ? shoff : 0,
    flags: 0,
    phnum: extended ? PN_XNUM : phnum,
    shnum: extended ? 1 : 0,
    shstrndx: 0,
  }));
  phdrs.forEach((p, i) => head.set(encodePhdr(p), EHDR_SIZE + i * PHDR_SIZE));
  if (extended) {
    head.set(
      encodeShdr({
        name: 0,
        type: SHT_NULL,
        flags: 0,
        addr: 0n,
        offset: 0,
        size: 0,
        link: 0,
        info: phnum,
        addralign: 0,
        entsize: 0,
      }),
      shoff,
    );
  }

  const partial = `${outPath}.partial`;
  const summary: CoreSummary = {
    path: outPath,
    size: cursor,
    loads: mappings.length,
    savedBytes: 0,
    fileBytes: 0,
    unavailableFiles: [],
    vdsoFilled: false,
  };
  const out = await Deno.open(partial, { write: true, create: true, truncate: true });
  const image = await Deno.open(imagePath, { read: true });
  try {
    await writeAt(out, 0, head);
    await writeAt(out, notesOff, notes);
    const buf = new Uint8Array(8 << 20);
    for (const { mapping, offset } of placed) {
      if (mapping.name === "[vdso]" && mapping.pages.length === 0 && vdso) {
        await writeAt(out, offset, vdso);
        summary.vdsoFilled = true;
        continue;
      }
      const start = hexToBigInt(mapping.start);
      for (const run of mapping.pages) {
        if (run.parent !== undefined) {
          throw new Error(
            `${imagePath}: its pages are partly in a parent image; flatten the chain first (cryo image flatten)`,
          );
        }
        const at = offset + Number(hexToBigInt(run.addr) - start);
        await copyRange(image, run.fileOffset, out, at, run.length, buf);
        summary.savedBytes += run.length;
      }
      if (isFileMapping(mapping)) {
        summary.fileBytes += await fillFromBackingFile(mapping, offset, out, buf, summary);
      }
    }
    await out.truncate(cursor);
    await out.syncData();
  } catch (e) {
    out.close();
    image.close();
    await Deno.remove(partial).catch(() => {});
    throw e;
  }
  out.close();
  image.close();
  await Deno.rename(partial, outPath);
  return summary;
}

/**
 * {@link exportCore} for process `pid` of the image directory `dir` (the
 * file name comes from the manifest). Throws {@link ImageFormatError} when
 * the image has no such process.
 */
export async function exportCoreFromDir(
  dir: string,
  pid: number,
  outPath: string,
): Promise<CoreSummary> {
  const manifest = await readManifest(dir);
  const entry = manifest.processes.find((p) => p.pid === pid);
  if (!entry) {
    const pids = manifest.processes.map((p) => p.pid).join(", ");
    throw new ImageFormatError(dir, `no process ${pid} in this image (it has ${pids})`);
  }
  return await exportCore(`${dir}/${entry.file}`, outPath);
}

/** The parts of [start, end) not covered by the mapping's saved runs, as [addr, length] pairs. */
export function unsavedRanges(m: Mapping): [bigint, number][] {
  const runs = m.pages.map((r) => [hexToBigInt(r.addr), r.length] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : 1));
  const gaps: [bigint, number][] = [];
  let at = hexToBigInt(m.start);
  const end = hexToBigInt(m.end);
  for (const [addr, len] of runs) {
    if (addr > at) gaps.push([at, Number(addr - at)]);
    const runEnd = addr + BigInt(len);
    if (runEnd > at) at = runEnd;
  }
  if (end > at) gaps.push([at, Number(end - at)]);
  return gaps;
}

async function fillFromBackingFile(
  m: Mapping,
  segOffset: number,
  out: Deno.FsFile,
  buf: Uint8Array,
  summary: CoreSummary,
): Promise<number> {
  const path = m.name;
  let file: Deno.FsFile;
  try {
    const st = await Deno.stat(path);
    const changed = m.file &&
      (st.size !== m.file.size ||
        Math.floor(st.mtime?.getTime() ?? 0) !== Math.floor(m.file.mtimeMs));
    if (!st.isFile || changed) throw new Error("changed");
    file = await Deno.open(path, { read: true });
  } catch {
    if (!summary.unavailableFiles.includes(path)) summary.unavailableFiles.push(path);
    return 0;
  }
  let filled = 0;
  try {
    const fileSize = (await file.stat()).size;
    const start = hexToBigInt(m.start);
    const mapOffset = Number(hexToBigInt(m.offset));
    for (const [addr, len] of unsavedRanges(m)) {
      const delta = Number(addr - start);
      const from = mapOffset + delta;
      const n = Math.max(0, Math.min(len, fileSize - from));
      if (n > 0) {
        await copyRange(file, from, out, segOffset + delta, n, buf);
        filled += n;
      }
    }
  } finally {
    file.close();
  }
  return filled;
}

async function copyRange(
  src: Deno.FsFile,
  srcOff: number,
  dst: Deno.FsFile,
  dstOff: number,
  length: number,
  buf: Uint8Array,
): Promise<void> {
  let done = 0;
  while (done < length) {
    const want = Math.min(buf.length, length - done);
    await src.seek(srcOff + done, Deno.SeekMode.Start);
    let got = 0;
    while (got < want) {
      const n = await src.read(buf.subarray(got, want));
      if (n === null) break;
      got += n;
    }
    if (got === 0) break;
    await writeAt(dst, dstOff + done, buf.subarray(0, got));
    done += got;
    if (got < want) break;
  }
}

async function writeAt(file: Deno.FsFile, offset: number, bytes: Uint8Array): Promise<void> {
  await file.seek(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}

/**
 * This process's own [vdso] bytes, when `<image dir>/manifest.json` records
 * the same vDSO SHA-256 (dump taken on this kernel); otherwise undefined.
 */
async function sameKernelVdso(imagePath: string): Promise<Uint8Array | undefined> {
  const dir = imagePath.includes("/") ? imagePath.slice(0, imagePath.lastIndexOf("/")) : ".";
  let want: unknown;
  try {
    want = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`))?.host?.vdsoSha256;
  } catch {
    return undefined;
  }
  if (typeof want !== "string" || want === "") return undefined;
  try {
    const line = (await Deno.readTextFile("/proc/self/maps")).split("\n")
      .find((l) => l.endsWith(" [vdso]"));
    if (!line) return undefined;
    const [start, end] = line.split(" ")[0].split("-").map((x) => BigInt(`0x${x}`));
    const bytes = new Uint8Array(Number(end - start));
    using mem = await Deno.open("/proc/self/mem", { read: true });
    await mem.seek(start, Deno.SeekMode.Start);
    let done = 0;
    while (done < bytes.length) {
      const n = await mem.read(bytes.subarray(done));
      if (n === null) return undefined;
      done += n;
    }
    return createHash("sha256").update(bytes).digest("hex") === want ? bytes : undefined;
  } catch {
    return undefined;
  }
}
