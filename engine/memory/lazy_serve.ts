/**
 * Lazy restore, the engine's side: takes each process's userfaultfd
 * (pidfd_getfd, then closes the process's own copy by injection, while
 * the tree still waits to be released), starts the watchdog that kills
 * the tree if cryo dies (engine/memory/lazy_watchdog.ts), and once the
 * tree runs serves its memory from the image:
 *
 * - a fault on a saved page is answered first (UFFDIO_COPY of the page and
 *   the next pending ones of its run, up to 64 KiB);
 * - a fault on a page the image does not hold (never touched before the
 *   dump), or one the program dropped since (MADV_DONTNEED), gets a zero
 *   page (UFFDIO_ZEROPAGE);
 * - between faults a background pass copies every other saved page in
 *   address order;
 * - the program's own changes are followed: munmap (EVENT_UNMAP) and
 *   madvise (EVENT_REMOVE) drop pages from the plan, mremap (EVENT_REMAP)
 *   moves them; a fork (EVENT_FORK) makes a new space, served alike
 *   (the child has the parent's memory with the same pages missing).
 *
 * When every saved page is in, the userfaultfds are closed (their ranges
 * unregistered: pages faulted later are zero-filled by the kernel, which
 * is what the image says of them) and the watchdog is told to exit.
 * A failure to serve (an error of the kernel, a fork) kills the tree:
 * it never runs with memory the image does not hold.
 *
 * @module
 */

import { readdirSync, readlinkSync } from "node:fs";
import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { injectSyscall } from "../../ffi/inject.ts";
import { processVmWriteFully } from "../../ffi/process_vm.ts";
import { type FileAction, posixSpawn } from "../../ffi/spawn.ts";
import { schedGetattr, schedSetattr } from "../../ffi/sched.ts";
import { __WALL, waitPid } from "../../ffi/wait.ts";
import { errnoName } from "../../ffi/errno.ts";
import {
  pidfdGetfd,
  pollIn,
  UFFD_EVENT,
  uffdCopy,
  type UffdMsg,
  uffdRead,
  uffdWake,
  uffdZeropage,
} from "../../ffi/uffd.ts";
import { RestoreError } from "../errors.ts";
import { decodeBase64, encodeBase64 } from "../base64.ts";
import { pausePoint } from "../pause.ts";
import type { CompiledProcess } from "../restore/compile.ts";
import { hotPages, type LazyRegion } from "./lazy.ts";
import { ScanBuffer } from "../../ffi/pagemap_scan.ts";
import { PAGE_IS } from "../../ffi/probe.ts";
import type { ProcessImage } from "../model.ts";

const PAGE = 4096;
const PAGE_N = 4096n;
/** Pages copied for one fault (the faulting one and the pending ones after it). */
const FAULT_PAGES = 16;
/** Pages copied per step of the background pass. */
const CHUNK_PAGES = 128;
const EEXIST = 17n;
const EAGAIN = 11n;
const ENOENT = 2n;
const ESRCH = 3n;
const SIGKILL = 9;
const SCHED_IDLE = 5;

/** One process being served: its userfaultfd (in cryo), pidfd, image and page states. */
interface Space {
  pid: number;
  uffd: number;
  pidfd: number;
  image: number;
  regions: Region[];
  /** Saved pages not yet in. */
  remaining: number;
  /** Next page of the background pass: region index and page index. */
  cursor: { r: number; i: number };
}

/**
 * Page states of one range: where each saved page is in the image, and
 * whether it is in. `base[i] + i * PAGE` is page i's file offset (NaN: not
 * saved); constant over a run, so a run is one native fill.
 */
interface Region {
  start: bigint;
  pages: number;
  base: Float64Array;
  done: Uint8Array;
}

/** The state {@link LazyServer.handOff} passes to the background server (fd numbers are cryo's). */
interface DetachedState {
  from: number;
  watchdog: { pid: number; pipe: number };
  faults: number;
  spaces: {
    pid: number;
    uffd: number;
    pidfd: number;
    image: number;
    remaining: number;
    regions: { start: string; pages: number; base: string; done: string }[];
  }[];
}

/**
 * Called before the server reads bytes [fileOffset, fileOffset + length)
 * of the image of `pid`: returns once they are written there (a receiver
 * still merging the image, engine/migrate/stream_flatten.ts), or throws
 * (the tree is then killed).
 */
export type LazyEnsure = (pid: number, fileOffset: number, length: number) => void;

/** What the caller needs of a process to take its userfaultfd. */
export interface LazyUnit {
  pid: number;
  /** Its image file (the source of the pages). */
  path: string;
  image: ProcessImage;
  compiled: CompiledProcess;
}

/** Progress of a lazy restore. */
export interface LazyProgress {
  /** Saved pages not yet in, over every process. */
  remaining: number;
  /** Faults served so far. */
  faults: number;
}

function toRegion(l: LazyRegion): Region {
  const pages = Number((l.end - l.start) / PAGE_N);
  const base = new Float64Array(pages).fill(NaN);
  for (const run of l.runs) {
    const first = Number((run.addr - l.start) / PAGE_N);
    base.fill(run.fileOffset - first * PAGE, first, first + run.length / PAGE);
  }
  return { start: l.start, pages, base, done: new Uint8Array(pages) };
}

/** Whether page `i` of `r` is saved in the image. */
function saved(r: Region, i: number): boolean {
  return !Number.isNaN(r.base[i]);
}

/** The image file offset of saved page `i` of `r`. */
function offsetOf(r: Region, i: number): number {
  return r.base[i] + i * PAGE;
}

/** The fd number of the one userfaultfd in `pid`'s table. */
function findUffd(pid: number): number {
  const found: number[] = [];
  for (const name of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${name}`) === "anon_inode:[userfaultfd]") {
        found.push(Number(name));
      }
    } catch { /* closed meanwhile */ }
  }
  if (found.length !== 1) {
    throw new RestoreError(
      `lazy restore of process ${pid}: expected one userfaultfd, found ${found.length}`,
    );
  }
  return found[0];
}

/** The children of every thread of `pid`. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      const text = Deno.readTextFileSync(`/proc/${pid}/task/${t}/children`).trim();
      if (text) out.push(...text.split(/\s+/).map(Number));
    }
  } catch { /* gone */ }
  return out;
}

function pidAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) [ZX] /.test(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return false;
  }
}

function must(what: string, r: bigint): number {
  if (r < 0n) throw new RestoreError(`lazy restore: ${what} failed: ${errnoName(Number(-r))}`);
  return Number(r);
}

/**
 * Serves the memory of a lazily restored tree. Created with
 * {@link LazyServer.take} before the tree is released; then
 * {@link LazyServer.serve} (or {@link LazyServer.step}) until done.
 */
export class LazyServer {
  readonly #spaces: Space[] = [];
  #watchdog: { pid: number; pipe: number; ours: boolean } | undefined;
  readonly #buf: Uint8Array;
  #faults = 0;
  #closed = false;
  /** Why the tree was killed, when it was. */
  failure: string | undefined;
  /** The image is still being written: asked before each read (see {@link LazyEnsure}). */
  #ensure: LazyEnsure | undefined;

  private constructor() {
    const raw = new Uint8Array((CHUNK_PAGES + 1) * PAGE);
    const addr = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(raw)));
    const skip = (PAGE - (addr % PAGE)) % PAGE;
    this.#buf = raw.subarray(skip, skip + CHUNK_PAGES * PAGE);
  }

  /**
   * Takes the userfaultfd of every lazily restored process of `units`
   * (stopped at the end of their programs) and starts the watchdog.
   * Undefined when no process has lazy memory.
   */
  static take(units: readonly LazyUnit[], ensure?: LazyEnsure): LazyServer | undefined {
    const lazy = units.filter((u) => (u.compiled.lazy?.length ?? 0) > 0);
    if (lazy.length === 0) return undefined;
    const s = new LazyServer();
    s.#ensure = ensure;
    try {
      for (const u of lazy) {
        const fd = findUffd(u.pid);
        const pidfd = must("pidfd_open", rawSyscall(SYS.pidfd_open, u.pid, 0));
        const space: Space = {
          pid: u.pid,
          pidfd,
          uffd: -1,
          image: -1,
          regions: u.compiled.lazy!.map(toRegion),
          remaining: 0,
          cursor: { r: 0, i: 0 },
        };
        s.#spaces.push(space);
        space.uffd = must("pidfd_getfd", pidfdGetfd(pidfd, fd));
        must(
          `close of the userfaultfd in ${u.pid}`,
          injectSyscall(u.pid, u.compiled.syscallGadget, SYS.close, fd),
        );
        const path = new TextEncoder().encode(u.path + "\0");
        space.image = must(`open ${u.path}`, rawSyscall(SYS.open, path, 0o2000000, 0));
        for (const l of u.compiled.lazy!) {
          for (const run of l.runs) space.remaining += run.length / PAGE;
        }
        s.#settlePresent(space, hotPages(u.image));
      }
      s.#startWatchdog();
    } catch (e) {
      s.#closeAll();
      throw e;
    }
    return s;
  }

  /**
   * Pages of lazy mappings already present when cryo takes over: the hot
   * pages the program read (they hold the image's data, and what the
   * kernel wrote since), and any other the program or the kernel touched
   * after the memory phase (or a huge page a hot page brought in): those
   * get the image's data written into them (a present page is not served
   * through the userfaultfd). Then the hot pages not present are served.
   */
  #settlePresent(s: Space, hot: Set<bigint>): void {
    // PAGEMAP_SCAN returns only the present runs: cheap however large the mappings.
    const pm = must(
      `open /proc/${s.pid}/pagemap`,
      rawSyscall(SYS.open, new TextEncoder().encode(`/proc/${s.pid}/pagemap\0`), 0o2000000, 0),
    );
    const scan = new ScanBuffer(256);
    try {
      for (const r of s.regions) {
        const end = r.start + BigInt(r.pages) * PAGE_N;
        let at = r.start;
        while (at < end) {
          const { n, walkEnd } = scan.scan(pm, at, end, {
            mask: PAGE_IS.PRESENT,
            returnMask: PAGE_IS.PRESENT,
          });
          if (n < 0) {
            throw new RestoreError(
              `lazy restore: PAGEMAP_SCAN of ${s.pid} failed: ${errnoName(-n)}`,
            );
          }
          for (let k = 0; k < n; k++) {
            for (let a = scan.vec[k * 3]; a < scan.vec[k * 3 + 1]; a += PAGE_N) {
              this.#settle(s, r, a, hot);
            }
          }
          if (walkEnd <= at) break;
          at = walkEnd;
        }
      }
    } finally {
      rawSyscall(SYS.close, pm);
    }
    for (const page of hot) if (this.#find(s, page)) this.#fault(s, page);
  }

  /** A page present at take-over: the image's data written in unless the program read it (hot). */
  #settle(s: Space, r: Region, addr: bigint, hot: Set<bigint>): void {
    const i = Number((addr - r.start) / PAGE_N);
    if (!hot.has(addr) && saved(r, i) && !r.done[i]) {
      const page = this.#buf.subarray(0, PAGE);
      this.#ensure?.(s.pid, offsetOf(r, i), PAGE);
      const got = rawSyscall(SYS.pread64, s.image, page, PAGE, offsetOf(r, i));
      if (got !== BigInt(PAGE)) {
        throw new RestoreError(`lazy restore: reading the image of ${s.pid} failed`);
      }
      processVmWriteFully(s.pid, addr, page);
    }
    this.#mark(s, r, i, 1);
  }

  /** Progress so far. */
  get progress(): LazyProgress {
    return { remaining: this.#spaces.reduce((n, s) => n + s.remaining, 0), faults: this.#faults };
  }

  /** Whether every saved page is in (or the server stopped). */
  get finished(): boolean {
    return this.#closed;
  }

  /** Serves until every saved page is in (or the tree is gone or killed). */
  serve(): void {
    while (!this.step(50)) { /* serving */ }
  }

  /**
   * Serves faults and copies pages for about `budgetMs`; true once done
   * (every page in, or the tree gone or killed; then everything is closed).
   */
  step(budgetMs: number): boolean {
    if (this.#closed) return true;
    const until = performance.now() + budgetMs;
    try {
      do {
        this.#handleEvents(0);
        const busy = this.#spaces.filter((s) => s.remaining > 0);
        if (busy.length === 0) break;
        for (const s of busy) this.#backgroundChunk(s);
      } while (performance.now() < until);
    } catch (e) {
      this.#fail(e instanceof Error ? e.message : String(e));
      return true;
    }
    if (this.#spaces.every((s) => s.remaining === 0)) {
      this.#closeAll();
      return true;
    }
    return false;
  }

  /** Kills the tree (its memory cannot be served) and closes everything. */
  #fail(why: string): void {
    this.failure = why;
    for (const s of this.#spaces) rawSyscall(SYS.pidfd_send_signal, s.pidfd, SIGKILL, 0, 0);
    this.#closeAll();
  }

  /** Stops serving: kills the tree (for an engine failure before it ran, too). */
  abort(why = "aborted"): void {
    if (!this.#closed) this.#fail(why);
  }

  #startWatchdog(): void {
    const fds = new Int32Array(2);
    must("pipe2", rawSyscall(SYS.pipe2, fds, 0o2000000));
    const [r, w] = fds;
    // Sources above every target first, so no dup2 overwrites a later source.
    const self = must("pidfd_open(cryo)", rawSyscall(SYS.pidfd_open, Deno.pid, 0));
    const sources = [
      r,
      self,
      ...this.#spaces.map((s) => s.uffd),
      ...this.#spaces.map((s) => s.pidfd),
    ]
      .map((fd) => must("fcntl(F_DUPFD_CLOEXEC)", rawSyscall(SYS.fcntl, fd, 1030, 100)));
    rawSyscall(SYS.close, r);
    rawSyscall(SYS.close, self);
    // Not cryo's stdio: a pipe reader of cryo's output must not wait for the watchdog.
    const actions: FileAction[] = [0, 1, 2].map((fd) => ({
      kind: "open",
      fd,
      path: "/dev/null",
      flags: fd === 0 ? 0 : 1,
    }));
    sources.forEach((fd, i) => actions.push({ kind: "dup2", fd, newFd: 3 + i }));
    actions.push({ kind: "closefrom", fd: 3 + sources.length });
    const script = new URL("./lazy_watchdog.ts", import.meta.url).href;
    let pid: number;
    try {
      pid = posixSpawn(Deno.execPath(), [
        "deno",
        "run",
        "--allow-ffi",
        "--no-lock",
        "--quiet",
        script,
        String(this.#spaces.length),
        String(this.#spaces.length),
      ], { fileActions: actions, newProcessGroup: true, closeFrom: null });
    } finally {
      for (const fd of sources) rawSyscall(SYS.close, fd);
    }
    this.#watchdog = { pid, pipe: w, ours: true };
    // It holds the descriptors from its exec on; its start-up must not take CPU from the restore.
    schedSetattr(pid, { ...schedGetattr(pid), policy: SCHED_IDLE });
  }

  #closeAll(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#spaces) {
      if (s.uffd >= 0) rawSyscall(SYS.close, s.uffd);
      if (s.image >= 0) rawSyscall(SYS.close, s.image);
      rawSyscall(SYS.close, s.pidfd);
    }
    const w = this.#watchdog;
    if (w) {
      rawSyscall(SYS.write, w.pipe, new Uint8Array([0x44]), 1);
      rawSyscall(SYS.close, w.pipe);
      if (w.ours) {
        try {
          waitPid(w.pid, __WALL);
        } catch { /* already reaped */ }
      }
    }
  }

  /**
   * `--detach`: hands the serving over to a new background process
   * (engine/memory/lazy_detached.ts) and closes everything here without
   * telling the watchdog (the new server holds its pipe now). The new
   * process takes every descriptor from this one with pidfd_getfd before
   * it says it is ready; until then no fault is served. Returns its pid.
   */
  handOff(): number {
    if (this.#closed) throw new RestoreError("lazy restore: nothing left to hand over");
    if (this.#ensure) throw new RestoreError("lazy restore: the image is still being written");
    const w = this.#watchdog!;
    const state: DetachedState = {
      from: Deno.pid,
      watchdog: { pid: w.pid, pipe: w.pipe },
      faults: this.#faults,
      spaces: this.#spaces.map((s) => ({
        pid: s.pid,
        uffd: s.uffd,
        pidfd: s.pidfd,
        image: s.image,
        remaining: s.remaining,
        regions: s.regions.map((r) => ({
          start: r.start.toString(),
          pages: r.pages,
          base: encodeBase64(new Uint8Array(r.base.buffer)),
          done: encodeBase64(r.done),
        })),
      })),
    };
    const file = Deno.makeTempFileSync({ prefix: "cryo-lazy-", suffix: ".json" });
    Deno.writeTextFileSync(file, JSON.stringify(state));
    const fds = new Int32Array(2);
    must("pipe2", rawSyscall(SYS.pipe2, fds, 0o2000000));
    let pid: number;
    try {
      const script = new URL("./lazy_detached.ts", import.meta.url).href;
      pid = posixSpawn(
        Deno.execPath(),
        ["deno", "run", "-A", "--no-lock", "--quiet", script, file],
        {
          fileActions: [
            { kind: "open", fd: 0, path: "/dev/null", flags: 0 },
            { kind: "dup2", fd: fds[1], newFd: 1 },
            { kind: "open", fd: 2, path: "/dev/null", flags: 1 },
            { kind: "closefrom", fd: 3 },
          ],
          closeFrom: null,
          newProcessGroup: true,
        },
      );
      rawSyscall(SYS.close, fds[1]);
      const ok = new Uint8Array(1);
      const r = rawSyscall(SYS.read, fds[0], ok, 1);
      if (r !== 1n || ok[0] !== 0x52 /* "R" */) {
        throw new RestoreError("lazy restore: the background server did not start");
      }
    } catch (e) {
      Deno.removeSync(file);
      throw e;
    } finally {
      rawSyscall(SYS.close, fds[0]);
    }
    // It holds everything now: close this side's copies, the watchdog keeps waiting.
    this.#closed = true;
    for (const s of this.#spaces) {
      for (const fd of [s.uffd, s.image, s.pidfd]) if (fd >= 0) rawSyscall(SYS.close, fd);
    }
    rawSyscall(SYS.close, w.pipe);
    return pid;
  }

  /**
   * The background server's side of {@link handOff}: takes every
   * descriptor named in `file` from the process that wrote it (which waits)
   * and goes on serving from the same state.
   */
  static resume(file: string): LazyServer {
    const st = JSON.parse(Deno.readTextFileSync(file)) as DetachedState;
    Deno.removeSync(file);
    const from = must("pidfd_open", rawSyscall(SYS.pidfd_open, st.from, 0));
    const take = (fd: number) => must("pidfd_getfd", pidfdGetfd(from, fd));
    const s = new LazyServer();
    try {
      s.#faults = st.faults;
      s.#watchdog = { pid: st.watchdog.pid, pipe: take(st.watchdog.pipe), ours: false };
      for (const sp of st.spaces) {
        s.#spaces.push({
          pid: sp.pid,
          uffd: take(sp.uffd),
          pidfd: take(sp.pidfd),
          image: take(sp.image),
          remaining: sp.remaining,
          cursor: { r: 0, i: 0 },
          regions: sp.regions.map((r) => ({
            start: BigInt(r.start),
            pages: r.pages,
            base: new Float64Array(decodeBase64(r.base).buffer),
            done: decodeBase64(r.done),
          })),
        });
      }
    } finally {
      rawSyscall(SYS.close, from);
    }
    return s;
  }

  /** Reads and handles every queued message (waiting up to `timeoutMs` for the first). */
  #handleEvents(timeoutMs: number): void {
    const live = this.#spaces.filter((s) => s.uffd >= 0);
    if (live.length === 0) return;
    const ready = pollIn(live.map((s) => s.uffd), timeoutMs);
    for (const i of ready) {
      const s = live[i];
      for (;;) {
        const msgs = uffdRead(s.uffd);
        if (typeof msgs === "bigint") {
          throw new Error(`reading the userfaultfd of ${s.pid}: ${errnoName(Number(-msgs))}`);
        }
        if (msgs.length === 0) break;
        for (const m of msgs) this.#handle(s, m);
      }
    }
  }

  #handle(s: Space, m: UffdMsg): void {
    switch (m.event) {
      case UFFD_EVENT.PAGEFAULT:
        this.#faults++;
        return this.#fault(s, m.b & ~(PAGE_N - 1n));
      case UFFD_EVENT.REMOVE:
        return this.#drop(s, m.a, m.b, false);
      case UFFD_EVENT.UNMAP:
        return this.#drop(s, m.a, m.b, true);
      case UFFD_EVENT.REMAP:
        return this.#remap(s, m.a, m.b, m.c);
      case UFFD_EVENT.FORK:
        return this.#forked(s, Number(m.a & 0xffffffffn));
      default:
        throw new Error(`unexpected userfaultfd event 0x${m.event.toString(16)}`);
    }
  }

  /**
   * `s` forked: the child's memory is the parent's at that moment, with the
   * same pages missing, registered with the new userfaultfd `uffd`. Its
   * pages are served like the parent's, and the watchdog gets copies of
   * its userfaultfd and pidfd.
   */
  #forked(s: Space, uffd: number): void {
    const pid = this.#findChild(s);
    if (pid === undefined) {
      rawSyscall(SYS.close, uffd);
      throw new Error(`process ${s.pid} forked and its child could not be found`);
    }
    const child: Space = {
      pid,
      uffd,
      pidfd: -1,
      image: must("fcntl(F_DUPFD_CLOEXEC)", rawSyscall(SYS.fcntl, s.image, 1030, 0)),
      regions: s.regions.map((r) => ({ ...r, base: r.base.slice(), done: r.done.slice() })),
      remaining: s.remaining,
      cursor: { r: 0, i: 0 },
    };
    this.#spaces.push(child);
    child.pidfd = must(`pidfd_open(${pid})`, rawSyscall(SYS.pidfd_open, pid, 0));
    const msg = new Uint8Array(9);
    msg[0] = 0x46; // "F"
    new DataView(msg.buffer).setUint32(1, uffd, true);
    new DataView(msg.buffer).setUint32(5, child.pidfd, true);
    if (this.#watchdog) rawSyscall(SYS.write, this.#watchdog.pipe, msg, msg.length);
  }

  /**
   * The child `s` just forked: its child whose memory is registered with a
   * userfaultfd ("um" in smaps) and that cryo does not serve yet. The fork
   * goes on once its event is read: wait a moment for the child to appear.
   */
  #findChild(s: Space): number | undefined {
    const known = new Set(this.#spaces.map((x) => x.pid));
    const deadline = performance.now() + 5000;
    while (performance.now() < deadline) {
      for (const pid of childrenOf(s.pid)) {
        if (known.has(pid)) continue;
        try {
          if (/^VmFlags:.*\bum\b/m.test(Deno.readTextFileSync(`/proc/${pid}/smaps`))) return pid;
        } catch { /* gone */ }
      }
      if (!pidAlive(s.pid)) return undefined;
    }
    return undefined;
  }

  /** The region and page index of `addr`, if it is in one. */
  #find(s: Space, addr: bigint): { r: Region; i: number } | undefined {
    for (const r of s.regions) {
      if (addr >= r.start && addr < r.start + BigInt(r.pages) * PAGE_N) {
        return { r, i: Number((addr - r.start) / PAGE_N) };
      }
    }
    return undefined;
  }

  #fault(s: Space, addr: bigint): void {
    const at = this.#find(s, addr);
    if (at && !at.r.done[at.i] && saved(at.r, at.i)) {
      this.#copy(s, at.r, at.i, FAULT_PAGES);
      return;
    }
    // Not saved, dropped since, or new memory (a grown heap): zero.
    const z = uffdZeropage(s.uffd, addr, PAGE_N);
    if (z === -EEXIST) uffdWake(s.uffd, addr, PAGE_N);
    else if (z === -EAGAIN) this.#handleEvents(0), this.#fault(s, addr);
    else if (z === -ESRCH || z === -ENOENT) this.#gone(s, z);
    else if (z < 0n) throw new Error(`UFFDIO_ZEROPAGE in ${s.pid}: ${errnoName(Number(-z))}`);
    if (at && !saved(at.r, at.i)) at.r.done[at.i] = 1;
  }

  /** The process's memory is gone (it exited or exec'd): nothing left to serve. */
  #gone(s: Space, _why: bigint): void {
    s.remaining = 0;
    for (const r of s.regions) r.done.fill(1);
  }

  /** Copies up to `max` pending saved pages from page `i` of `r` (contiguous in the file). */
  #copy(s: Space, r: Region, i: number, max: number): void {
    let n = 1;
    while (
      n < max && i + n < r.pages && !r.done[i + n] && r.base[i + n] === r.base[i]
    ) n++;
    const len = n * PAGE;
    this.#ensure?.(s.pid, offsetOf(r, i), len);
    const got = rawSyscall(SYS.pread64, s.image, this.#buf, len, offsetOf(r, i));
    if (got !== BigInt(len)) {
      throw new Error(
        `reading the image of ${s.pid}: ${got < 0n ? errnoName(Number(-got)) : "short read"}`,
      );
    }
    const dst = r.start + BigInt(i) * PAGE_N;
    const { r: res, copied } = uffdCopy(s.uffd, dst, this.#buf, len);
    let inPages = n;
    if (res < 0n) {
      if (res === -ESRCH) return this.#gone(s, res);
      const k = copied > 0n ? Number(copied) / PAGE : 0;
      if (res === -EEXIST || res === -ENOENT) {
        // The page at k is there already (read eagerly) or no longer mapped.
        if (res === -EEXIST) uffdWake(s.uffd, dst + BigInt(k) * PAGE_N, PAGE_N);
        inPages = k + 1;
      } else if (res === -EAGAIN) {
        inPages = k; // the memory layout is changing: events first, then again
        this.#mark(s, r, i, inPages);
        this.#handleEvents(0);
        return;
      } else throw new Error(`UFFDIO_COPY in ${s.pid}: ${errnoName(Number(-res))}`);
    }
    this.#mark(s, r, i, inPages);
  }

  #mark(s: Space, r: Region, i: number, n: number): void {
    for (let k = i; k < i + n; k++) {
      if (!r.done[k]) {
        r.done[k] = 1;
        if (saved(r, k)) s.remaining--;
      }
    }
  }

  #backgroundChunk(s: Space): void {
    pausePoint("lazy-serve");
    const c = s.cursor;
    while (c.r < s.regions.length) {
      const r = s.regions[c.r];
      while (c.i < r.pages && (r.done[c.i] || !saved(r, c.i))) c.i++;
      if (c.i < r.pages) {
        this.#copy(s, r, c.i, CHUNK_PAGES);
        return;
      }
      c.r++;
      c.i = 0;
    }
    // The cursor passed every region: what is left came back through a remap.
    if (s.remaining > 0) c.r = 0;
  }

  /** Pages of [start, end) are gone (unmapped) or dropped (read as zeros from now on). */
  #drop(s: Space, start: bigint, end: bigint, unmapped: boolean): void {
    for (let a = start & ~(PAGE_N - 1n); a < end; a += PAGE_N) {
      const at = this.#find(s, a);
      if (!at) continue;
      if (!at.r.done[at.i] && saved(at.r, at.i)) s.remaining--;
      at.r.base[at.i] = NaN;
      at.r.done[at.i] = unmapped ? 1 : 0;
    }
  }

  /** mremap moved [from, from+len) to `to`: the plan moves with it. */
  #remap(s: Space, from: bigint, to: bigint, len: bigint): void {
    const pages = Number(len / PAGE_N);
    const moved = toRegion({ start: to, end: to + len, runs: [] });
    for (let k = 0; k < pages; k++) {
      const at = this.#find(s, from + BigInt(k) * PAGE_N);
      if (!at) continue;
      moved.base[k] = offsetOf(at.r, at.i) - k * PAGE;
      moved.done[k] = at.r.done[at.i];
      at.r.base[at.i] = NaN;
      at.r.done[at.i] = 1;
    }
    // The destination was unmapped by mremap: drop any old plan there first.
    for (const r of s.regions) {
      for (let k = 0; k < pages; k++) {
        const a = to + BigInt(k) * PAGE_N;
        if (a >= r.start && a < r.start + BigInt(r.pages) * PAGE_N) {
          const i = Number((a - r.start) / PAGE_N);
          if (!r.done[i] && saved(r, i)) s.remaining--;
          r.base[i] = NaN;
          r.done[i] = 1;
        }
      }
    }
    s.regions.unshift(moved);
    s.cursor = { r: 0, i: 0 };
  }
}
