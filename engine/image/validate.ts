/**
 * Semantic validation of an image, past its shape: everything a restore
 * would act on must make sense before anything is created. Pids and tids
 * in range and unique, a real tree, mappings sorted, page aligned, inside
 * user space and clear of the bootstrap range, fd numbers in range, paths
 * absolute and without NUL bytes, registers complete, ghost files sane.
 * A hostile or damaged image is refused here with one line, instead of
 * failing half-way through a restore (or worse, restoring something else).
 *
 * @module
 */

import { USER_REGS_FIELDS } from "../../ffi/regs.ts";
import type { GhostFile, Manifest, ProcessImage } from "../model.ts";
import { ImageFormatError } from "./errors.ts";
import { hexAligned, type HexNum, hexNum } from "./hexnum.ts";
import { isHex64 } from "./mapping_fast.ts";
import { columnAt, mappingColumns } from "./mapping_columns.ts";

/** The end of user space on x86-64 (47-bit addresses). */
const USER_END = 0x800000000000n;
/** {@link USER_END} as a number (exact). */
const USER_END_N = 0x800000000000;
const PAGE = 4096n;
/** The largest pid Linux can hand out (PID_MAX_LIMIT). */
const PID_MAX = 4 * 1024 * 1024;
/** Above any real fd table (fs.nr_open is at most 2^30, but cryo's transfer fds must fit too). */
const FD_MAX = 1 << 24;
/** The largest bootstrap range cryo reserves. */
const BOOTSTRAP_MAX = 1 << 30;
const PERMS = /^[r-][w-][x-][ps]$/;

/** The text naming mapping `m` in a problem (made on failure only). */
const where = (m: { start: string; end: string }) => `mapping ${m.start}-${m.end}`;

/** `PERMS.test(perms)`, without a regular expression run per mapping. */
function permsFit(perms: string): boolean {
  if (typeof perms !== "string" || perms.length !== 4) return PERMS.test(perms);
  const r = perms[0], w = perms[1], x = perms[2], p = perms[3];
  return (r === "r" || r === "-") && (w === "w" || w === "-") && (x === "x" || x === "-") &&
    (p === "p" || p === "s");
}

function pathProblem(what: string, p: unknown, absolute = true): string | undefined {
  if (typeof p !== "string") return `${what} is not a string`;
  if (p.includes("\0")) return `${what} contains a NUL byte`;
  if (absolute && !p.startsWith("/")) return `${what} is not an absolute path`;
  if (p.length > 4096) return `${what} is longer than PATH_MAX`;
  return undefined;
}

/**
 * The first problem of the mappings (bounds, order, user space, the
 * bootstrap range `[boot, bootEnd)`, permissions, offsets, file paths), or
 * undefined. A function of its own: its loop runs once per mapping, long
 * enough for V8 to compile it optimized while it runs (on-stack
 * replacement), and that compile takes the whole function it sits in.
 */
function mappingsProblem(
  mappings: ProcessImage["mappings"],
  boot: bigint,
  bootEnd: bigint,
): string | undefined {
  // The same bounds as numbers (exact: at most USER_END, 2^47), compared with a
  // mapping's bounds when they are numbers (every address below 2^52): a number
  // compared with a bigint takes V8's slow path, three times for each of 10,000 mappings.
  const bootN = Number(boot), bootEndN = Number(bootEnd);
  let prevEnd: HexNum = 0;
  let problem: string | undefined;
  const stop = (why: string): boolean => {
    problem = why;
    return true;
  };
  // (By findIndex, which visits every index as an indexed loop does: a loop of 10,000
  // rounds in this function would be compiled for on-stack replacement on V8's workers.)
  // A list read from an NT_CRYO_MAPPINGS note has its texts' values remembered
  // (engine/image/mapping_columns.ts): used where the record still holds the text decoded
  // (-1 otherwise: the text is parsed).
  const cols = mappingColumns(mappings);
  const starts = cols?.start, ends = cols?.end, startTexts = cols?.startText;
  const endTexts = cols?.endText;
  mappings.findIndex((m, i) => {
    if (m.kind === "vsyscall") return false; // the kernel's, above user space
    const s = columnAt(starts, startTexts, i, m.start), e = columnAt(ends, endTexts, i, m.end);
    const start = s >= 0 ? s : hexNum(m.start);
    const end = e >= 0 ? e : hexNum(m.end);
    if (!hexAligned(start, 4096) || !hexAligned(end, 4096) || start >= end) {
      return stop(`${where(m)} is malformed`);
    }
    if (typeof start === "number" && typeof end === "number") {
      if (end > USER_END_N) return stop(`${where(m)} lies beyond user space`);
      if (start < prevEnd) {
        return stop(`${where(m)} overlaps the previous mapping`);
      }
      if (start < bootEndN && bootN < end) {
        return stop(`${where(m)} overlaps the bootstrap range`);
      }
    } else {
      if (end > USER_END) return stop(`${where(m)} lies beyond user space`);
      if (start < prevEnd) {
        return stop(`${where(m)} overlaps the previous mapping`);
      }
      if (start < bootEnd && boot < end) {
        return stop(`${where(m)} overlaps the bootstrap range`);
      }
    }
    if (!permsFit(m.perms)) {
      return stop(`${where(m)} has bad permissions ${m.perms}`);
    }
    // ("0x0", the offset of every anonymous mapping, is aligned: nothing to parse.)
    if (m.offset !== "0x0" && !hexAligned(hexNum(m.offset), 4096)) {
      return stop(`${where(m)} has an unaligned file offset`);
    }
    const bad = m.kind.charCodeAt(0) === 102 /* "f" */ && m.kind.startsWith("file")
      ? pathProblem(`${where(m)} file`, m.file?.path ?? m.name)
      : undefined;
    if (bad) return stop(bad);
    prevEnd = end;
    return false;
  });
  return problem;
}

/**
 * Problems of one process description; returns the first, or undefined.
 * `pidOne`: the process is the root of a tree in its own pid namespace
 * (engine/pidns/), which is pid 1 there.
 */
export function processProblem(p: ProcessImage, pidOne = false): string | undefined {
  for (const [k, v] of [["pid", p.pid], ["ppid", p.ppid], ["pgid", p.pgid], ["sid", p.sid]]) {
    // ppid, pgid and sid are 0 when that process is outside cryo's pid
    // namespace or is the kernel (a tree started by pid 1 without setsid).
    if (typeof v !== "number" || v < (k === "pid" ? 1 : 0) || v > PID_MAX) {
      return `${k} ${v} is out of range`;
    }
  }
  if (p.pid <= 1 && !(pidOne && p.pid === 1)) return `pid ${p.pid} cannot be restored`;
  const boot = BigInt(p.bootstrap.start);
  const bootEnd = boot + BigInt(p.bootstrap.size);
  if (boot % PAGE !== 0n || p.bootstrap.size <= 0 || p.bootstrap.size > BOOTSTRAP_MAX) {
    return "bad bootstrap range";
  }
  if (bootEnd > USER_END) return "bootstrap range beyond user space";
  const mappingProblem = mappingsProblem(p.mappings, boot, bootEnd);
  if (mappingProblem) return mappingProblem;
  const tids = new Set<number>();
  for (const t of p.threads) {
    if (
      !Number.isSafeInteger(t.tid) || t.tid < (pidOne && t.tid === p.pid ? 1 : 2) || t.tid > PID_MAX
    ) {
      return `tid ${t.tid} is out of range`;
    }
    if (tids.has(t.tid)) return `tid ${t.tid} appears twice`;
    tids.add(t.tid);
    // (isHex64: the verdict of `/^0x[0-9a-fA-F]{1,16}$/` without running it, 27 times a thread.)
    for (const f of USER_REGS_FIELDS) {
      if (!isHex64(t.regs[f])) {
        return `thread ${t.tid}: register ${f} is missing or not a 64-bit hex value`;
      }
    }
  }
  if (!tids.has(p.pid)) return `the main thread ${p.pid} is missing`;
  const fds = new Set<number>();
  for (const f of p.fds ?? []) {
    if (!Number.isSafeInteger(f.fd) || f.fd < 0 || f.fd >= FD_MAX) {
      return `fd ${f.fd} is out of range`;
    }
    if (fds.has(f.fd)) return `fd ${f.fd} appears twice`;
    fds.add(f.fd);
    if (f.sameAs !== undefined && !p.fds.some((g) => g.fd === f.sameAs && g.fd !== f.fd)) {
      return `fd ${f.fd} shares a description with a missing fd ${f.sameAs}`;
    }
    const bad = pathProblem(`fd ${f.fd} target`, f.target, false);
    if (bad) return bad;
  }
  for (const [what, path] of [["cwd", p.cwd], ["root", p.root], ["exe", p.exe?.path ?? "/"]]) {
    const bad = pathProblem(what, path);
    if (bad) return bad;
  }
  if (p.sigactions.length !== 64) return `${p.sigactions.length} signal actions, expected 64`;
  for (const r of p.rlimits) {
    if (!Number.isSafeInteger(r.resource) || r.resource < 0 || r.resource > 15) {
      return `rlimit resource ${r.resource} is out of range`;
    }
  }
  return undefined;
}

function ghostProblem(g: GhostFile): string | undefined {
  if (g.kind === "dir" || g.kind === "symlink") {
    if (g.kind === "symlink" && typeof g.linkTarget !== "string") {
      return `ghost ${g.id}: a symlink without its content`;
    }
    return pathProblem(`ghost ${g.id} name`, g.name, true);
  }
  if (g.kind === "linked") {
    const h = g.handle;
    if (!h || !/^([0-9a-f]{2}){1,128}$/.test(h.hex) || !Number.isSafeInteger(h.type)) {
      return `ghost ${g.id}: a linked file without a valid file handle`;
    }
    return pathProblem(`ghost ${g.id} mount`, h.mount) ??
      pathProblem(`ghost ${g.id} name`, g.name, true);
  }
  if (typeof g.file !== "string" || !/^ghost-[0-9]+-[0-9]+\.data$/.test(g.file)) {
    return `ghost file ${JSON.stringify(g.file)} has a bad name`;
  }
  if (!Number.isSafeInteger(g.size) || g.size < 0) return `ghost ${g.file}: bad size`;
  if (g.kind !== "memfd" && g.kind !== "deleted") return `ghost ${g.file}: bad kind`;
  const bad = pathProblem(`ghost ${g.file} name`, g.name, g.kind === "deleted");
  if (bad) return bad;
  let prev = 0;
  for (const e of g.extents ?? []) {
    if (!Array.isArray(e) || !Number.isSafeInteger(e[0]) || !Number.isSafeInteger(e[1])) {
      return `ghost ${g.file}: malformed extent`;
    }
    if (e[0] < prev || e[1] <= 0 || e[0] + e[1] > g.size) return `ghost ${g.file}: bad extent`;
    prev = e[0] + e[1];
  }
  return undefined;
}

/**
 * Checks a whole image: every process (see {@link processProblem}), that
 * pids and tids are unique across the tree, that the processes form one
 * tree rooted at the manifest's root whose parent links agree, and the
 * ghost files. Throws {@link ImageFormatError} naming the first problem.
 */
export function validateImage(
  dir: string,
  manifest: Manifest,
  images: readonly ProcessImage[],
): void {
  const fail = (reason: string): never => {
    throw new ImageFormatError(`${dir}/manifest.json`, reason);
  };
  const byPid = new Map<number, ProcessImage>();
  const allTids = new Set<number>();
  for (const p of images) {
    const problem = processProblem(
      p,
      manifest.pidNamespace === "own" && p.pid === manifest.rootPid,
    );
    if (problem) fail(`process ${p.pid}: ${problem}`);
    if (byPid.has(p.pid)) fail(`process ${p.pid} appears twice`);
    byPid.set(p.pid, p);
    for (const t of p.threads) {
      if (allTids.has(t.tid)) fail(`tid ${t.tid} appears in two processes`);
      allTids.add(t.tid);
    }
  }
  for (const p of images) {
    for (const z of p.zombies ?? []) {
      if (allTids.has(z.pid)) fail(`zombie ${z.pid} of process ${p.pid} reuses a pid of the tree`);
      allTids.add(z.pid);
    }
  }
  const root = byPid.get(manifest.rootPid) ?? fail(`root ${manifest.rootPid} has no image`);
  const seen = new Set<number>();
  const walk = (p: ProcessImage): void => {
    if (seen.has(p.pid)) fail(`process ${p.pid} is reached twice: the tree has a cycle`);
    seen.add(p.pid);
    for (const c of p.children) {
      const child = byPid.get(c) ?? fail(`process ${p.pid} has a child ${c} without an image`);
      if (child.ppid !== p.pid) fail(`process ${c} names ${child.ppid} as parent, not ${p.pid}`);
      walk(child);
    }
  };
  walk(root);
  if (seen.size !== images.length) fail("some processes are not in the root's tree");
  // An fd owner gets signals: it must be a thread, process or group of the tree.
  const groups = new Set(images.map((p) => p.pgid));
  for (const p of images) {
    for (const f of p.fds ?? []) {
      const o = f.owner;
      if (o && o.pid !== 0 && !(o.type === 2 ? groups.has(o.pid) : allTids.has(o.pid))) {
        fail(`process ${p.pid} fd ${f.fd}: owner ${o.pid} is not in the tree`);
      }
    }
  }
  const names = new Set<string>();
  for (const g of manifest.ghosts ?? []) {
    const problem = ghostProblem(g);
    if (problem) fail(problem);
    if (names.has(g.id)) fail(`ghost ${g.id} appears twice`);
    names.add(g.id);
  }
}
