/**
 * System V shared memory segments attached by the tree.
 *
 * Dump: every "/SYSV<key> (deleted)" mapping (its inode is the shmid) is
 * an attachment; each segment is described from /proc/sysvipc/shm (key,
 * size, mode, owner, creator, SHM_DEST once marked for removal — its key
 * then reads as IPC_PRIVATE) and its content, read through cryo's own
 * read-only shmat, is written into the image directory as
 * `sysvshm-<shmid>.data`. The pages are not saved in the process images.
 * A SHM_HUGETLB segment (its huge page size read from cryo's own attach:
 * smaps KernelPageSize) is made again with SHM_HUGETLB and that size.
 *
 * Restore: before the launch the engine re-creates each segment with its
 * id (the id written to /proc/sys/kernel/shm_next_id is used by the next
 * shmget of this IPC namespace, then reset to -1), key, size and mode,
 * writes its content back, and sets its owner; the restore programs
 * attach it with shmat at the recorded address (compile.ts), and segments
 * that were marked for removal are marked again once the tree runs.
 *
 * @module
 */

import { crc32 } from "../image/crc32.ts";
import {
  IPC_CREAT,
  IPC_EXCL,
  shmGet,
  shmRemove,
  shmSetOwner,
  withShmAttached,
} from "../../ffi/sysvshm.ts";
import type { Mapping, ProcessImage, SysvShmSegment } from "../model.ts";
import { formatChecksum } from "../image/checksum.ts";
import { RestoreError } from "../errors.ts";
import type { Refusals } from "../support.ts";
import type { ProgramBuilder } from "../program/builder.ts";
import { SYS } from "../../ffi/sysno.ts";
import { readSmaps } from "../proc/smaps.ts";

const PAGE = 4096;
const SHM_DEST = 0o1000;
const SHM_LOCKED = 0o2000;
const NEXT_ID = "/proc/sys/kernel/shm_next_id";
const CHUNK = 16 << 20;

/** One line of /proc/sysvipc/shm. */
export interface SysvShmEntry {
  key: number;
  shmid: number;
  /** Mode word: permission bits plus SHM_DEST / SHM_LOCKED. */
  perms: number;
  size: number;
  nattch: number;
  uid: number;
  gid: number;
  cuid: number;
  cgid: number;
}

/** Every segment of this IPC namespace, by shmid. */
export function readSysvShm(): Map<number, SysvShmEntry> {
  const out = new Map<number, SysvShmEntry>();
  let text = "";
  try {
    text = Deno.readTextFileSync("/proc/sysvipc/shm");
  } catch { /* no SysV IPC */ }
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 11) continue;
    const [key, shmid, perms, size, , , nattch, uid, gid, cuid, cgid] = f;
    out.set(Number(shmid), {
      key: Number(key),
      shmid: Number(shmid),
      perms: parseInt(perms, 8),
      size: Number(size),
      nattch: Number(nattch),
      uid: Number(uid),
      gid: Number(gid),
      cuid: Number(cuid),
      cgid: Number(cgid),
    });
  }
  return out;
}

/** The shmid of a maps line that is a SysV attachment, or undefined. */
export function sysvShmidOf(path: string, inode: number): number | undefined {
  return path.startsWith("/SYSV") ? inode : undefined;
}

const roundUp = (n: number) => Math.ceil(n / PAGE) * PAGE;

/**
 * Refuses attachments that are not whole: shmat maps a segment from its
 * start, so the mappings of one attachment must be contiguous from offset
 * 0 to the segment's (page-rounded) size.
 */
function checkWhole(
  p: ProcessImage,
  segments: Map<number, SysvShmEntry>,
  refusals: Refusals,
): void {
  let chain: { shmid: number; next: bigint; offset: bigint; first: Mapping } | null = null;
  const close = () => {
    if (!chain) return;
    const seg = segments.get(chain.shmid);
    if (seg && chain.offset !== BigInt(roundUp(seg.size))) {
      refusals.use(
        "memory.sysv-shm-partial",
        `process ${p.pid} mapping ${chain.first.start} (${chain.first.name})`,
        `attachment of shmid ${chain.shmid} covers ${chain.offset} of ${roundUp(seg.size)} bytes`,
      );
    }
    chain = null;
  };
  for (const m of p.mappings) {
    const start = BigInt(m.start), end = BigInt(m.end), offset = BigInt(m.offset);
    if (
      chain && m.sysvShm === chain.shmid && start === chain.next && offset === chain.offset &&
      offset !== 0n
    ) {
      chain.next = end;
      chain.offset += end - start;
      continue;
    }
    close();
    if (m.sysvShm === undefined) continue;
    if (offset !== 0n) {
      refusals.use(
        "memory.sysv-shm-partial",
        `process ${p.pid} mapping ${m.start}-${m.end} (${m.name})`,
        `attachment of shmid ${m.sysvShm} starts at offset ${m.offset}`,
      );
      continue;
    }
    chain = { shmid: m.sysvShm, next: end, offset: end - start, first: m };
  }
  close();
}

/**
 * Whether this engine may give segments their ids (write shm_next_id of
 * its IPC namespace): not in a rootless dump of a tree in the host's IPC
 * namespace (its user namespace does not own that one).
 */
function shmIdsSettable(): boolean {
  try {
    Deno.openSync("/proc/sys/kernel/shm_next_id", { write: true }).close();
    return true;
  } catch {
    return false;
  }
}

/** The kernel page size of cryo's own mapping at `addr` (smaps KernelPageSize), bytes. */
function ownPageSize(addr: bigint): number {
  const e = readSmaps(Deno.pid).find((x) => x.start === addr);
  return e?.sizes["KernelPageSize"] ?? PAGE;
}

/**
 * Copies a segment's content into `path` in chunks; returns its CRC-32 and
 * its page size (a SHM_HUGETLB segment's huge page size: nothing else shows
 * it, so it is read from cryo's own attach).
 */
function saveContent(seg: SysvShmEntry, path: string): { crc: number; pageSize: number } {
  using out = Deno.openSync(path, { write: true, createNew: true, mode: 0o600 });
  return withShmAttached(seg.shmid, seg.size, false, (v, addr) => {
    const pageSize = ownPageSize(addr);
    let crc = 0;
    for (let at = 0; at < v.length; at += CHUNK) {
      const chunk = v.subarray(at, Math.min(v.length, at + CHUNK));
      crc = crc32(chunk, crc);
      for (let w = 0; w < chunk.length;) w += out.writeSync(chunk.subarray(w));
    }
    return { crc, pageSize };
  });
}

/**
 * Dump: describes every segment the tree has attached and writes its
 * content into `dir`. What cannot be restored is reported to `refusals`.
 */
export function collectSysvShm(
  images: readonly ProcessImage[],
  dir: string,
  refusals: Refusals,
): SysvShmSegment[] {
  const attached = images.some((p) => p.mappings.some((m) => m.sysvShm !== undefined));
  if (!attached) return [];
  if (!shmIdsSettable()) {
    for (const p of images) {
      for (const m of p.mappings) {
        if (m.sysvShm === undefined) continue;
        refusals.use("memory.sysv-shm-rootless", `process ${p.pid} mapping ${m.start}-${m.end}`);
      }
    }
    return [];
  }
  const segments = readSysvShm();
  // Every mapping of a segment counts one attach (splits included): more means holders outside.
  const inTree = new Map<number, number>();
  for (const p of images) {
    for (const m of p.mappings) {
      if (m.sysvShm !== undefined) inTree.set(m.sysvShm, (inTree.get(m.sysvShm) ?? 0) + 1);
    }
  }
  const out = new Map<number, SysvShmSegment>();
  for (const p of images) {
    checkWhole(p, segments, refusals);
    for (const m of p.mappings) {
      if (m.sysvShm === undefined) continue;
      const where = `process ${p.pid} mapping ${m.start}-${m.end} (${m.name})`;
      const seg = segments.get(m.sysvShm);
      if (!seg) {
        refusals.use(
          "memory.sysv-shm-partial",
          where,
          `shmid ${m.sysvShm} is not in this IPC namespace's /proc/sysvipc/shm`,
        );
        continue;
      }
      if (seg.perms & SHM_LOCKED) {
        refusals.use("memory.sysv-shm-locked", where, `shmid ${seg.shmid} is SHM_LOCKed`);
        continue;
      }
      const ours = inTree.get(seg.shmid) ?? 0;
      if (seg.nattch > ours) {
        refusals.use(
          "memory.sysv-shm-outside",
          where,
          `shmid ${seg.shmid} has ${seg.nattch} attaches, ${ours} of them in the tree`,
        );
        continue;
      }
      refusals.use("memory.sysv-shm", where);
      if (out.has(seg.shmid)) continue;
      out.set(seg.shmid, saveSysvShmSegment(seg, dir));
    }
  }
  return [...out.values()];
}

/**
 * Pre-flight: every segment's id (and key) must be free on this host, and
 * its creator must be cryo's own user and group (shmget records the
 * caller's), unless the id holds the image's own segment left behind by
 * the killed tree (see {@link leftoverMismatch}), which the restore then
 * attaches as it is. Returns the ids of those leftovers. Throws a one-line
 * RestoreError; never touches another segment.
 */
export function checkSysvShmFree(segments: readonly SysvShmSegment[]): ReadonlySet<number> {
  const leftovers = new Set<number>();
  if (segments.length === 0) return leftovers;
  const present = readSysvShm();
  const keys = new Map([...present.values()].map((s) => [s.key, s.shmid]));
  for (const s of segments) {
    const live = present.get(s.shmid);
    if (live) {
      const why = leftoverMismatch(s, live);
      if (why) {
        throw new RestoreError(
          `cannot restore: System V shm id ${s.shmid} is in use on this host (${why})`,
        );
      }
      leftovers.add(s.shmid);
      continue;
    }
    if (!s.removed && s.key !== 0 && keys.has(s.key)) {
      throw new RestoreError(
        `cannot restore: System V shm key 0x${
          (s.key >>> 0).toString(16)
        } is in use on this host (shmid ${keys.get(s.key)})`,
      );
    }
    if (s.cuid !== Deno.uid() || s.cgid !== Deno.gid()) {
      throw new RestoreError(
        `cannot restore: System V shm id ${s.shmid} was created by uid ${s.cuid} gid ${s.cgid}, ` +
          `which this restorer (uid ${Deno.uid()} gid ${Deno.gid()}) cannot re-create`,
      );
    }
  }
  return leftovers;
}

/**
 * Why the live segment `live` with the id of the image's segment `s` is
 * not the image's own segment as the dump left it, or undefined when it
 * is: a segment not marked for removal outlives the tree the dump killed
 * (PostgreSQL's), and it is taken back only when nothing has it attached
 * and its key, size, mode, owner, creator and content (the manifest's
 * checksum) are all the image's, so the restored tree finds exactly the
 * recorded state.
 */
function leftoverMismatch(s: SysvShmSegment, live: SysvShmEntry): string | undefined {
  if (s.removed) return "the image's segment was marked for removal";
  if (live.nattch !== 0) return `attached ${live.nattch} times`;
  if (live.perms & (SHM_DEST | SHM_LOCKED)) return "marked for removal or locked";
  const same = live.key === s.key && live.size === s.size && (live.perms & 0o777) === s.mode &&
    live.uid === s.uid && live.gid === s.gid && live.cuid === s.cuid && live.cgid === s.cgid;
  if (!same) return "another segment than the image's";
  const crc = withShmAttached(live.shmid, live.size, false, (v) => {
    let crc = 0;
    for (let at = 0; at < v.length; at += CHUNK) {
      crc = crc32(v.subarray(at, Math.min(v.length, at + CHUNK)), crc);
    }
    return formatChecksum(crc);
  });
  if (crc !== s.checksum) return "its content changed since the dump";
  return undefined;
}

/** The segments the engine created for one restore. */
export class CreatedSysvShm {
  /** The segments as the image lists them. */
  readonly segments: readonly SysvShmSegment[];
  #created: number[] = [];

  private constructor(segments: readonly SysvShmSegment[]) {
    this.segments = segments;
  }

  /**
   * Re-creates every segment of `dir` with its id, key, size, mode, owner
   * and content (checksum verified), but for the `leftovers` that
   * {@link checkSysvShmFree} found still in place, which are used as they
   * are. Throws a RestoreError having removed what it created.
   */
  static create(
    segments: readonly SysvShmSegment[],
    dir: string,
    leftovers: ReadonlySet<number> = new Set(),
  ): CreatedSysvShm {
    const out = new CreatedSysvShm(segments);
    try {
      for (const s of segments) if (!leftovers.has(s.shmid)) out.#createOne(s, dir);
    } catch (e) {
      out.discard();
      throw e;
    }
    return out;
  }

  #createOne(s: SysvShmSegment, dir: string): void {
    let src: Deno.FsFile;
    try {
      src = Deno.openSync(`${dir}/${s.file}`, { read: true });
    } catch (e) {
      throw new RestoreError(`cannot restore: ${s.file}: ${(e as Error).message}`);
    }
    using _ = src;
    if (src.statSync().size !== s.size) {
      throw new RestoreError(`cannot restore: ${s.file} does not hold ${s.size} bytes`);
    }
    Deno.writeTextFileSync(NEXT_ID, `${s.shmid}\n`);
    const key = s.removed ? 0 : s.key;
    const id = shmGet(key, s.size, IPC_CREAT | IPC_EXCL | (s.mode & 0o777) | hugeShmFlags(s));
    if (id < 0) {
      try {
        Deno.writeTextFileSync(NEXT_ID, "-1\n");
      } catch { /* best effort */ }
      throw new RestoreError(
        `cannot restore: System V shm id ${s.shmid} cannot be re-created (errno ${-id})`,
      );
    }
    this.#created.push(id);
    if (id !== s.shmid) {
      throw new RestoreError(
        `cannot restore: System V shm id ${s.shmid} was re-created as ${id}`,
      );
    }
    const crc = withShmAttached(id, s.size, true, (v) => {
      let crc = 0;
      for (let at = 0; at < v.length;) {
        const n = src.readSync(v.subarray(at, Math.min(v.length, at + CHUNK)));
        if (n === null || n === 0) break;
        crc = crc32(v.subarray(at, at + n), crc);
        at += n;
      }
      return formatChecksum(crc);
    });
    if (crc !== s.checksum) {
      throw new RestoreError(
        `cannot restore: ${s.file}: checksum ${crc} differs from the manifest's ${s.checksum}`,
      );
    }
    shmSetOwner(id, s.uid, s.gid, s.mode);
  }

  /**
   * Once every restored task has attached its segments (before they run):
   * marks the removed ones again.
   */
  finish(): void {
    for (const s of this.segments) if (s.removed) shmRemove(s.shmid);
  }

  /** After a failed restore: removes every segment created. */
  discard(): void {
    for (const id of this.#created) shmRemove(id);
    this.#created = [];
  }
}

const SHM_RDONLY_FLAG = 0o10000;
const SHM_EXEC = 0o100000;
const PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4;

function protOf(perms: string): number {
  return (perms[0] === "r" ? PROT_READ : 0) | (perms[1] === "w" ? PROT_WRITE : 0) |
    (perms[2] === "x" ? PROT_EXEC : 0);
}

/**
 * Restore program: attaches the segment of mapping `m` at its address
 * (the mapping at offset 0 of an attachment; the following ones are
 * covered by that shmat) read-only unless it may be written ("mw"), then
 * gives the mapping its own protection when it differs.
 */
export function emitSysvShmAttach(p: ProgramBuilder, m: Mapping): void {
  const start = BigInt(m.start);
  const prot = protOf(m.perms);
  const writable = m.vmFlags.includes("mw");
  const exec = (prot & PROT_EXEC) !== 0;
  const attachProt = PROT_READ | (writable ? PROT_WRITE : 0) | (exec ? PROT_EXEC : 0);
  if (BigInt(m.offset) === 0n) {
    p.op(SYS.shmat, [m.sysvShm!, start, (writable ? 0 : SHM_RDONLY_FLAG) | (exec ? SHM_EXEC : 0)], {
      comment: `${m.start}-${m.end} ${m.perms} SysV shmid ${m.sysvShm}`,
    });
  }
  if (prot !== attachProt) p.op(SYS.mprotect, [start, BigInt(m.end) - start, prot]);
}

/**
 * Dump of a private IPC namespace (engine/pidns/ipc.ts): describes segment
 * `seg` (attached or not) and writes its content into `dir`, as
 * {@link collectSysvShm} does for an attached one.
 */
export function saveSysvShmSegment(seg: SysvShmEntry, dir: string): SysvShmSegment {
  const file = `sysvshm-${seg.shmid}.data`;
  const { crc, pageSize } = saveContent(seg, `${dir}/${file}`);
  return {
    ...(pageSize > PAGE ? { hugePageSize: pageSize } : {}),
    shmid: seg.shmid,
    key: seg.key,
    size: seg.size,
    mode: seg.perms & 0o777,
    uid: seg.uid,
    gid: seg.gid,
    cuid: seg.cuid,
    cgid: seg.cgid,
    removed: (seg.perms & SHM_DEST) !== 0,
    file,
    checksum: formatChecksum(crc),
  };
}

const SHM_HUGETLB = 0o4000;
const SHM_HUGE_SHIFT = 26;

/** The shmget flags that make segment `s` of huge pages again (0 for others). */
export function hugeShmFlags(s: SysvShmSegment): number {
  return s.hugePageSize ? SHM_HUGETLB | (Math.log2(s.hugePageSize) << SHM_HUGE_SHIFT) : 0;
}

/** Whether a segment is SHM_LOCKed (refused). */
export function sysvShmLocked(seg: SysvShmEntry): boolean {
  return (seg.perms & SHM_LOCKED) !== 0;
}
