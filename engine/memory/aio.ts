/**
 * Native AIO contexts (io_setup): at dump, each context is found by its
 * ring mapping ("/[aio] (deleted)"; the mapping's address is the
 * aio_context_t the program holds) and recorded with its ring; at restore
 * the program sets it up again at the same address, and the engine puts
 * back the completed events that were not reaped.
 *
 * The kernel's side of a context is its ring (user memory: header and
 * events), its private tail (which the ring's tail mirrors), and the count
 * of free slots (`reqs_available`, spread over per-CPU caches moved in
 * batches of `req_batch`), which is how requests in flight show, and
 * nothing shows them otherwise. cryo counts them: with the process frozen,
 * it submits 1-byte reads of a memfd (they complete at once, each
 * filling one event slot) from each online CPU in turn until the kernel
 * refuses more; what could not be taken, less the events in the ring and
 * the remainder `(nr - 1) mod req_batch` that always stays in the shared
 * counter, is in flight. The ring is then put back exactly: more reads
 * until the kernel's tail has gone once round the ring (keeping the
 * unreaped events accounted as such), then the saved bytes. A context with
 * requests in flight is refused; so is a ring mapping without a context in
 * the process (the kernel does not pass contexts across fork, only the
 * mapping).
 *
 * At restore the program reserves every recorded ring address, calls
 * io_setup in the order of the kernel's ids (a context destroyed before
 * the dump leaves a gap, filled by a placeholder destroyed afterwards) with
 * the smallest count that makes a ring of the same size, and moves each
 * ring to its address with mremap (the kernel follows: aio_ring_mremap),
 * then gives it its madvise flags.
 * The engine then completes such reads until the kernel's tail is the recorded
 * one with the recorded number of events unreaped, writes the saved ring
 * over them and checks the header.
 *
 * @module
 */

import {
  AIO_RING_COMPAT_FEATURES,
  AIO_RING_HEAD_OFFSET,
  AIO_RING_HEADER_BYTES,
  AIO_RING_INCOMPAT_FEATURES,
  AIO_RING_MAGIC,
  type AioRingHeader,
  decodeAioRingHeader,
  encodeIocbPread,
  IO_EVENT_BYTES,
} from "../../ffi/aio.ts";
import { processVmReadFully, processVmWriteFully } from "../../ffi/process_vm.ts";
import { getAffinity, setAffinity } from "../../ffi/sched.ts";
import { SYS } from "../../ffi/sysno.ts";
import { errnoName } from "../../ffi/errno.ts";
import { decodeBase64, encodeBase64 } from "../base64.ts";
import { CryoError, UnsupportedError } from "../errors.ts";
import type { AioRing, Mapping, ProcessImage } from "../model.ts";
import { type MapEntry, readMapsMatching } from "../proc/maps.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";
import type { Refusals } from "../support.ts";
import { parseCpuList } from "../task/sched.ts";
import { emitVmFlags } from "./flags.ts";

const PAGE = 4096;
const EVENTS_PER_PAGE = PAGE / IO_EVENT_BYTES;
const EAGAIN = -11n;
const EINVAL = -22n;
const MFD_CLOEXEC = 1;

/** Syscalls and memory of one stopped process, for the ring work. */
export interface AioInjector {
  /** pid of the process. */
  pid: number;
  /** The thread the syscalls run in. */
  tid: number;
  /** Runs one syscall in `tid`; returns its raw result. */
  call(nr: number, ...args: (number | bigint)[]): bigint;
  /** At least 4096 bytes of the process's memory cryo may use. */
  scratch: bigint;
}

// Scratch layout: the read request, a zero timespec, the byte read, the memfd's name, the pointers.
const IOCB_AT = 0n;
const TIMESPEC_AT = 64n;
const BUF_AT = 80n;
const NAME_AT = 88n;
const POINTERS_AT = 128n;
const MAX_BATCH = (PAGE - Number(POINTERS_AT)) / 8;

function readRing(pid: number, at: bigint, length: number): Uint8Array<ArrayBuffer> {
  const buf = new Uint8Array(length);
  processVmReadFully(pid, at, buf);
  return buf;
}

function header(pid: number, at: bigint): AioRingHeader {
  return decodeAioRingHeader(readRing(pid, at, AIO_RING_HEADER_BYTES));
}

function writeHead(pid: number, at: bigint, head: number): void {
  const bytes = new Uint8Array(new Uint32Array([head]).buffer);
  processVmWriteFully(pid, at + BigInt(AIO_RING_HEAD_OFFSET), bytes);
}

/** Event slots of a ring of `pages` pages (what the kernel writes in the header's nr). */
export function ringSlots(pages: number): number {
  return (pages * PAGE - AIO_RING_HEADER_BYTES) / IO_EVENT_BYTES;
}

/** Pages of the ring io_setup(`nrEvents`) makes on a host with `cpus` possible CPUs (fs/aio.c). */
export function ringPagesFor(nrEvents: number, cpus: number): number {
  const slots = Math.max(nrEvents, cpus * 4) * 2 + 2;
  return Math.ceil((AIO_RING_HEADER_BYTES + slots * IO_EVENT_BYTES) / PAGE);
}

/** The smallest io_setup count whose ring has `pages` pages on a host with `cpus` possible CPUs. */
export function nrEventsFor(pages: number, cpus: number): number {
  return ringPagesFor(1, cpus) >= pages ? 1 : (pages - 1) * (EVENTS_PER_PAGE / 2) - 1;
}

function possibleCpus(): number[] {
  return [...parseCpuList(Deno.readTextFileSync("/sys/devices/system/cpu/possible"))];
}

function onlineCpus(): number[] {
  return [...parseCpuList(Deno.readTextFileSync("/sys/devices/system/cpu/online"))];
}

/** The kernel's batch of free slots moved between the shared counter and a CPU's cache. */
function reqBatch(nr: number, cpus: number): number {
  return Math.max(1, Math.floor((nr - 1) / (cpus * 4)));
}

/**
 * Puts a 1-byte read request and `MAX_BATCH` pointers to it in the scratch
 * area; the file read is a memfd made for it (no path is needed: the
 * process may be in a chroot). Returns the memfd's number.
 */
function prepareRequests(inj: AioInjector): number {
  processVmWriteFully(inj.pid, inj.scratch + NAME_AT, new TextEncoder().encode("cryo-aio\0"));
  processVmWriteFully(inj.pid, inj.scratch + TIMESPEC_AT, new Uint8Array(16));
  const fd = inj.call(SYS.memfd_create, inj.scratch + NAME_AT, MFD_CLOEXEC);
  if (fd < 0n) throw new CryoError(`memfd_create in process ${inj.pid}: ${errnoName(Number(-fd))}`);
  const r = inj.call(SYS.ftruncate, fd, PAGE);
  if (r < 0n) {
    inj.call(SYS.close, fd);
    throw new CryoError(`ftruncate of a memfd in process ${inj.pid}: ${errnoName(Number(-r))}`);
  }
  const iocb = encodeIocbPread(Number(fd), inj.scratch + BUF_AT, 1);
  processVmWriteFully(inj.pid, inj.scratch + IOCB_AT, iocb);
  const pointers = new BigUint64Array(MAX_BATCH).fill(inj.scratch + IOCB_AT);
  processVmWriteFully(inj.pid, inj.scratch + POINTERS_AT, new Uint8Array(pointers.buffer));
  return Number(fd);
}

/**
 * Submits up to `max` reads on context `ctx` (each completes at once into
 * the ring); before each batch, with `keep` given, reaps every event but
 * the last `keep` (ring head = tail - keep). Stops at the first EAGAIN;
 * returns how many were submitted.
 */
function submitReads(inj: AioInjector, ctx: bigint, max: number, keep?: number): number {
  let done = 0;
  let refused = 0;
  while (done < max) {
    if (keep !== undefined) {
      const h = header(inj.pid, ctx);
      writeHead(inj.pid, ctx, (h.tail - keep + h.nr) % h.nr);
    }
    const r = inj.call(
      SYS.io_submit,
      ctx,
      Math.min(MAX_BATCH, max - done),
      inj.scratch + POINTERS_AT,
    );
    if (r === EAGAIN || r === 0n) {
      // With events reaped just before, one refusal may come from a CPU cache: try once more.
      if (keep === undefined || ++refused > 1) break;
      continue;
    }
    if (r < 0n) {
      throw new CryoError(
        `io_submit on AIO context 0x${ctx.toString(16)}: ${errnoName(Number(-r))}`,
      );
    }
    refused = 0;
    done += Number(r);
  }
  return done;
}

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** What is wrong with a ring header for a mapping of `length` bytes, or null. */
function oddHeader(h: AioRingHeader, length: number): string | null {
  if (h.magic !== AIO_RING_MAGIC) return `ring magic 0x${h.magic.toString(16)}`;
  if (
    h.compatFeatures !== AIO_RING_COMPAT_FEATURES ||
    h.incompatFeatures !== AIO_RING_INCOMPAT_FEATURES || h.headerLength !== AIO_RING_HEADER_BYTES
  ) {
    return "unknown ring features or header length";
  }
  if (length % PAGE !== 0 || h.nr !== ringSlots(length / PAGE)) {
    return `ring of ${h.nr} events in a mapping of ${length} bytes (partly unmapped?)`;
  }
  if (h.head >= h.nr || h.tail >= h.nr) return `head ${h.head} or tail ${h.tail} out of the ring`;
  return null;
}

/**
 * Dump: records every AIO context of frozen process `pid` (by its ring's
 * address), counting requests in flight through `inj` (see the module
 * comment); refuses what cannot come back. The ring is left as it was.
 */
export function collectAioRings(
  inj: AioInjector,
  refusals: Refusals,
  /** The process's mappings read at this freeze, if the caller has them (else maps is read). */
  areas?: readonly MapEntry[],
): Map<bigint, AioRing> {
  const out = new Map<bigint, AioRing>();
  const list = areas ?? readMapsMatching(inj.pid, "/[aio]");
  // By filter: no loop of 10,000 rounds for V8 to compile (engine/find_from.ts).
  const rings = list.filter((m) => m.path !== "" && m.path.startsWith("/[aio]"));
  if (rings.length === 0) return out;
  let fd: number | undefined;
  try {
    for (const m of rings) {
      const where = `process ${inj.pid} AIO context ${hex(m.start)} (ring ${hex(m.start)}-${
        hex(m.end)
      })`;
      const length = Number(m.end - m.start);
      const bytes = readRing(inj.pid, m.start, length);
      const h = decodeAioRingHeader(bytes);
      const odd = m.perms !== "rw-s" ? `ring mapping with permissions ${m.perms}` : oddHeader(
        h,
        length,
      );
      if (odd) {
        refusals.use("memory.aio-other", where, odd);
        continue;
      }
      // A context of this process? (io_getevents for no event consumes nothing.)
      const live = inj.call(SYS.io_getevents, m.start, 0, 0, 0, inj.scratch + TIMESPEC_AT);
      if (live === EINVAL) {
        refusals.use("memory.aio-orphan", where);
        continue;
      }
      if (live < 0n) throw new CryoError(`io_getevents on ${where}: ${errnoName(Number(-live))}`);
      fd ??= prepareRequests(inj);
      const inFlight = countInFlight(inj, m.start, h, bytes);
      if (inFlight !== 0) {
        refusals.use(
          "memory.aio-inflight",
          where,
          inFlight > 0
            ? `${inFlight} request(s) submitted and not completed`
            : "requests in flight cannot be ruled out (free slots may sit in the cache of a CPU the process cannot run on)",
        );
        continue;
      }
      refusals.use("memory.aio", where);
      out.set(m.start, {
        id: h.id,
        nr: h.nr,
        nrEvents: nrEventsFor(length / PAGE, possibleCpus().length),
        head: h.head,
        tail: h.tail,
        ring: encodeBase64(bytes),
      });
    }
  } finally {
    if (fd !== undefined) inj.call(SYS.close, fd);
  }
  return out;
}

/**
 * Requests in flight on context `ctx` (header `h`, ring bytes `saved`),
 * or -1 when they cannot be ruled out (a CPU whose cache cryo cannot
 * drain, or a count the kernel's accounting as read here cannot give).
 * Leaves the ring as `saved` has it.
 */
function countInFlight(inj: AioInjector, ctx: bigint, h: AioRingHeader, saved: Uint8Array): number {
  const unreaped = (h.tail - h.head + h.nr) % h.nr;
  const possible = possibleCpus();
  const online = new Set(onlineCpus());
  const remainder = (h.nr - 1) % reqBatch(h.nr, possible.length);
  const affinity = getAffinity(inj.tid);
  let taken = 0;
  let unreachable = false;
  try {
    for (const cpu of possible) {
      if (!online.has(cpu) || setAffinity(inj.tid, [cpu]) !== 0n) {
        unreachable = true;
        continue;
      }
      taken += submitReads(inj, ctx, h.nr - 1 - unreaped - taken);
    }
    const after = header(inj.pid, ctx);
    const moved = (after.tail - h.tail + h.nr) % h.nr;
    // Round the ring once: the kernel's tail comes back to where it was.
    const rest = (h.nr - moved) % h.nr;
    if (submitReads(inj, ctx, rest, unreaped) !== rest) {
      throw new CryoError(`AIO context ${hex(ctx)}: the ring could not be put back`);
    }
    const end = header(inj.pid, ctx);
    if (end.tail !== h.tail) {
      throw new CryoError(`AIO context ${hex(ctx)}: events completed while the process was frozen`);
    }
    processVmWriteFully(inj.pid, ctx, saved);
    if (moved !== taken) {
      throw new CryoError(`AIO context ${hex(ctx)}: events completed while the process was frozen`);
    }
  } finally {
    setAffinity(inj.tid, affinity);
  }
  const inFlight = h.nr - 1 - remainder - unreaped - taken;
  // Below zero, the kernel does not count as fs/aio.c is read here: rule nothing out.
  if (inFlight < 0 || (inFlight > 0 && unreachable)) return -1;
  return inFlight;
}

/**
 * Restore (program): every AIO context at its recorded address, in the
 * order of the kernel's ids. `scratchSlot` is a slot the program may use.
 * With `examine` (mapping indices), only those mappings can be rings (the
 * members of an anonymous run never are: engine/restore/anon_runs.ts).
 */
export function emitAioRings(
  p: ProgramBuilder,
  proc: ProcessImage,
  slotsAddress: bigint,
  scratchSlot: number,
  examine?: readonly number[],
): void {
  // (A loop, not a filter with a closure: 10,000 mappings have no ring.)
  let rings: (Mapping & { aio: AioRing })[] | undefined;
  const mappings = proc.mappings;
  const n = examine ? examine.length : mappings.length;
  for (let k = 0; k < n; k++) {
    const m = mappings[examine ? examine[k] : k];
    if (m.aio !== undefined) (rings ??= []).push(m as Mapping & { aio: AioRing });
  }
  if (!rings) return;
  rings.sort((a, b) => a.aio.id - b.aio.id);
  const cpus = possibleCpus().length;
  for (const m of rings) {
    const pages = (Number(BigInt(m.end) - BigInt(m.start))) / PAGE;
    if (ringPagesFor(m.aio.nrEvents, cpus) !== pages) {
      throw new UnsupportedError(`process ${proc.pid}`, [
        `AIO context ${m.start}: a ring of ${pages} page(s) cannot be made on a host with ${cpus} possible CPUs`,
      ]);
    }
  }
  const MAP_PRIVATE_ANON_FIXED = 0x02 | 0x20 | 0x10;
  const MREMAP_MAYMOVE_FIXED = 1 | 2;
  const slotAddr = slotsAddress + BigInt(scratchSlot * 8);
  // New rings must not land where a recorded one goes.
  for (const m of rings) {
    const len = BigInt(m.end) - BigInt(m.start);
    p.op(SYS.mmap, [BigInt(m.start), len, 0, MAP_PRIVATE_ANON_FIXED, -1, 0], {
      comment: `reserve the AIO ring at ${m.start}`,
    });
  }
  const placeholders: bigint[] = [];
  let next = 0;
  for (const m of rings) {
    for (; next < m.aio.id; next++) {
      const word = p.reserve(8);
      p.op(SYS.io_setup, [1, word], { comment: `AIO context id ${next} (placeholder)` });
      placeholders.push(word);
    }
    const word = p.reserve(8);
    const len = BigInt(m.end) - BigInt(m.start);
    p.op(SYS.io_setup, [m.aio.nrEvents, word], { comment: `AIO context id ${m.aio.id}` });
    p.copy(slotAddr, word, 8);
    p.op(SYS.mremap, [slot(scratchSlot), len, len, MREMAP_MAYMOVE_FIXED, BigInt(m.start)], {
      comment: `AIO ring to ${m.start}`,
    });
    emitVmFlags(p, m);
    next++;
  }
  for (const word of placeholders) {
    p.copy(slotAddr, word, 8);
    p.op(SYS.io_destroy, [slot(scratchSlot)], { comment: "AIO placeholder context" });
  }
}

/**
 * Restore (engine, before the scheduling is set: this pins the thread):
 * the completed events not reaped, then the saved ring; checks the header.
 */
export function restoreAioRings(image: ProcessImage, inj: AioInjector): void {
  // (Indexed, no closure: this runs after the stub, over every mapping of the image.)
  const mappings = image.mappings;
  let rings: (Mapping & { aio: AioRing })[] | undefined;
  for (let k = 0; k < mappings.length; k++) {
    const m = mappings[k];
    if (m.aio !== undefined) (rings ??= []).push(m as Mapping & { aio: AioRing });
  }
  if (rings === undefined) return;
  const where = (m: Mapping) => `process ${image.pid} AIO context ${m.start}`;
  setAffinity(inj.tid, [getAffinity(inj.tid)[0]]);
  const fd = prepareRequests(inj);
  try {
    for (const m of rings) {
      const ctx = BigInt(m.start);
      const rec = m.aio;
      const h = header(inj.pid, ctx);
      if (h.nr !== rec.nr || h.id !== rec.id || h.head !== 0 || h.tail !== 0) {
        throw new CryoError(
          `${where(m)}: new ring has id ${h.id}, ${h.nr} events (recorded ${rec.id}, ${rec.nr})`,
        );
      }
      const unreaped = (rec.tail - rec.head + rec.nr) % rec.nr;
      const reaped = rec.tail >= unreaped ? rec.tail - unreaped : rec.tail + rec.nr - unreaped;
      if (submitReads(inj, ctx, reaped, 0) !== reaped) {
        throw new CryoError(`${where(m)}: the kernel refused requests`);
      }
      writeHead(inj.pid, ctx, header(inj.pid, ctx).tail);
      if (submitReads(inj, ctx, unreaped) !== unreaped) {
        throw new CryoError(`${where(m)}: the kernel refused requests`);
      }
      const filled = header(inj.pid, ctx);
      if (filled.tail !== rec.tail) {
        throw new CryoError(`${where(m)}: ring tail ${filled.tail} (recorded ${rec.tail})`);
      }
      processVmWriteFully(inj.pid, ctx, decodeBase64(rec.ring));
      const end = header(inj.pid, ctx);
      if (end.head !== rec.head || end.tail !== rec.tail || end.id !== rec.id) {
        throw new CryoError(
          `${where(m)}: ring head ${end.head} tail ${end.tail} (recorded ${rec.head} ${rec.tail})`,
        );
      }
    }
  } finally {
    inj.call(SYS.close, fd);
  }
}
