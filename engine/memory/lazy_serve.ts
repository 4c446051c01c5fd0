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
 * The plan is a list of extents (engine/memory/lazy_extents.ts): one per
 * saved run, whatever the memory size, so taking over costs the same for
 * 64 MiB as for 2 GiB; nothing per page is done before the tree runs
 * except for the few pages already present ({@link LazyServer.startWork}).
 *
 * When every saved page is in, the userfaultfds are closed (their ranges
 * unregistered: pages faulted later are zero-filled by the kernel, which
 * is what the image says of them) and the watchdog is told to exit.
 * A failure to serve (an error of the kernel, a fork) kills the tree:
 * it never runs with memory the image does not hold.
 *
 * @module
 */

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
import { pausePoint } from "../pause.ts";
import type { CompiledProcess } from "../restore/compile.ts";
import { hotPages } from "./lazy.ts";
import { PendingPages } from "./lazy_extents.ts";
import { ScanBuffer } from "../../ffi/pagemap_scan.ts";
import { PAGE_IS } from "../../ffi/probe.ts";
import type { PageBlocks, ProcessImage } from "../model.ts";
import { BlockChecker, type BlockCheckerState } from "./lazy_blocks.ts";
import { sourceURL } from "../modules.ts";

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

/** One process being served: its userfaultfd (in cryo), pidfd, image and pending pages. */
interface Space {
  pid: number;
  uffd: number;
  pidfd: number;
  image: number;
  /** Saved pages not yet in. */
  pending: PendingPages;
  /** Per-block checks of the image's page data (absent: not checked here). */
  blocks?: BlockChecker;
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
    /** {@link PendingPages.toFlat}. */
    pending: number[];
    blocks?: BlockCheckerState;
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
  /**
   * The manifest's per-block checksums of its image: each block is checked
   * the first time any page of it is read (engine/memory/lazy_blocks.ts).
   */
  blocks?: PageBlocks;
}

/**
 * Work done by {@link LazyServer.take} before the tree runs: none of it
 * may grow with the memory size (tests/restore_lazy_test.ts checks).
 */
export interface LazyStartWork {
  /** Extents of the plans built (one per saved run). */
  planEntries: number;
  /** Present pages found by the take-over scan (hot pages and their neighbours). */
  presentPages: number;
  /** Pages copied in before the tree runs (image data into present pages, hot pages served). */
  pagesCopied: number;
}

/** Progress of a lazy restore. */
export interface LazyProgress {
  /** Saved pages not yet in, over every process. */
  remaining: number;
  /** Faults served so far. */
  faults: number;
}

/** The fd number of the one userfaultfd in `pid`'s table. */
function findUffd(pid: number): number {
  const found: number[] = [];
  for (const { name } of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      if (Deno.readLinkSync(`/proc/${pid}/fd/${name}`) === "anon_inode:[userfaultfd]") {
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
    for (const { name: t } of Deno.readDirSync(`/proc/${pid}/task`)) {
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
  readonly #start: LazyStartWork = { planEntries: 0, presentPages: 0, pagesCopied: 0 };
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
        const regions = u.compiled.lazy!;
        const space: Space = {
          pid: u.pid,
          pidfd,
          uffd: -1,
          image: -1,
          pending: PendingPages.fromRuns(regions.flatMap((l) => l.runs)),
          blocks: u.blocks && new BlockChecker(u.path, u.blocks),
        };
        s.#start.planEntries += space.pending.entries;
        s.#spaces.push(space);
        space.uffd = must("pidfd_getfd", pidfdGetfd(pidfd, fd));
        must(
          `close of the userfaultfd in ${u.pid}`,
          injectSyscall(u.pid, u.compiled.syscallGadget, SYS.close, fd),
        );
        const path = new TextEncoder().encode(u.path + "\0");
        space.image = must(`open ${u.path}`, rawSyscall(SYS.open, path, 0o2000000, 0));
        s.#settlePresent(space, regions, hotPages(u.image));
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
  #settlePresent(
    s: Space,
    regions: readonly { start: bigint; end: bigint }[],
    hot: Set<bigint>,
  ): void {
    // PAGEMAP_SCAN returns only the present runs: cheap however large the mappings.
    const pm = must(
      `open /proc/${s.pid}/pagemap`,
      rawSyscall(SYS.open, new TextEncoder().encode(`/proc/${s.pid}/pagemap\0`), 0o2000000, 0),
    );
    const scan = new ScanBuffer(256);
    try {
      for (const r of regions) {
        const end = r.end;
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
          for (let k = 0; k < n; k++) this.#settle(s, scan.vec[k * 3], scan.vec[k * 3 + 1], hot);
          if (walkEnd <= at) break;
          at = walkEnd;
        }
      }
    } finally {
      rawSyscall(SYS.close, pm);
    }
    for (const page of hot) {
      if (regions.some((r) => page >= r.start && page < r.end)) {
        const before = s.pending.pages;
        this.#fault(s, page);
        this.#start.pagesCopied += before - s.pending.pages;
      }
    }
  }

  /**
   * Pages [start, end) present at take-over: the image's data written into
   * the pending ones unless the program read them (hot).
   */
  #settle(s: Space, start: bigint, end: bigint, hot: Set<bigint>): void {
    this.#start.presentPages += Number((end - start) / PAGE_N);
    const page = this.#buf.subarray(0, PAGE);
    for (const piece of s.pending.within(Number(start), Number(end))) {
      for (let a = piece.start; a < piece.end; a += PAGE) {
        if (hot.has(BigInt(a))) continue;
        this.#ensure?.(s.pid, piece.fileOffset + (a - piece.start), PAGE);
        s.blocks?.check(s.image, piece.fileOffset + (a - piece.start), PAGE);
        const got = rawSyscall(
          SYS.pread64,
          s.image,
          page,
          PAGE,
          piece.fileOffset + (a - piece.start),
        );
        if (got !== BigInt(PAGE)) {
          throw new RestoreError(`lazy restore: reading the image of ${s.pid} failed`);
        }
        processVmWriteFully(s.pid, BigInt(a), page);
        this.#start.pagesCopied++;
      }
    }
    s.pending.remove(Number(start), Number(end));
  }

  /** What {@link take} did before the tree ran (sizes of the plans, pages copied). */
  get startWork(): LazyStartWork {
    return { ...this.#start };
  }

  /** Progress so far. */
  get progress(): LazyProgress {
    return {
      remaining: this.#spaces.reduce((n, s) => n + s.pending.pages, 0),
      faults: this.#faults,
    };
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
        const busy = this.#spaces.filter((s) => s.pending.pages > 0);
        if (busy.length === 0) break;
        for (const s of busy) this.#backgroundChunk(s);
      } while (performance.now() < until);
    } catch (e) {
      this.#fail(e instanceof Error ? e.message : String(e));
      return true;
    }
    if (this.#spaces.every((s) => s.pending.pages === 0)) {
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
    const script = sourceURL("engine/memory/lazy_watchdog.ts");
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
        pending: s.pending.toFlat(),
        ...(s.blocks ? { blocks: s.blocks.state() } : {}),
      })),
    };
    const file = Deno.makeTempFileSync({ prefix: "cryo-lazy-", suffix: ".json" });
    Deno.writeTextFileSync(file, JSON.stringify(state));
    const fds = new Int32Array(2);
    must("pipe2", rawSyscall(SYS.pipe2, fds, 0o2000000));
    let pid: number;
    try {
      const script = sourceURL("engine/memory/lazy_detached.ts");
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
          pending: PendingPages.fromFlat(sp.pending),
          blocks: sp.blocks && BlockChecker.fromState(sp.blocks),
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
      case UFFD_EVENT.UNMAP:
        return this.#drop(s, m.a, m.b);
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
      pending: s.pending.clone(),
      blocks: s.blocks, // the same file: blocks checked for the parent are checked
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

  #fault(s: Space, addr: bigint): void {
    if (s.pending.at(Number(addr), 1)) {
      this.#copy(s, Number(addr), FAULT_PAGES);
      return;
    }
    // Not saved, in already (a racing fault), dropped since, or new memory (a grown heap): zero.
    const z = uffdZeropage(s.uffd, addr, PAGE_N);
    if (z === -EEXIST) uffdWake(s.uffd, addr, PAGE_N);
    else if (z === -EAGAIN) this.#handleEvents(0), this.#fault(s, addr);
    else if (z === -ESRCH || z === -ENOENT) this.#gone(s, z);
    else if (z < 0n) throw new Error(`UFFDIO_ZEROPAGE in ${s.pid}: ${errnoName(Number(-z))}`);
  }

  /** The process's memory is gone (it exited or exec'd): nothing left to serve. */
  #gone(s: Space, _why: bigint): void {
    s.pending.clear();
  }

  /** Copies up to `max` pending saved pages from page `addr` on (contiguous in the file). */
  #copy(s: Space, addr: number, max: number): void {
    const at = s.pending.at(addr, max);
    if (!at) throw new Error(`page 0x${addr.toString(16)} of ${s.pid} is not in the plan`);
    // With block checks: within one block, copied from the checked block's buffer.
    if (s.blocks) {
      at.pages = Math.min(at.pages, (s.blocks.blockEnd(at.fileOffset) - at.fileOffset) / PAGE);
    }
    const len = at.pages * PAGE;
    this.#ensure?.(s.pid, at.fileOffset, len);
    const src = s.blocks?.view(s.image, at.fileOffset, len) ?? this.#buf;
    const got = src === this.#buf
      ? rawSyscall(SYS.pread64, s.image, this.#buf, len, at.fileOffset)
      : BigInt(len);
    if (got !== BigInt(len)) {
      throw new Error(
        `reading the image of ${s.pid}: ${got < 0n ? errnoName(Number(-got)) : "short read"}`,
      );
    }
    const dst = BigInt(addr);
    const { r: res, copied } = uffdCopy(s.uffd, dst, src, len);
    let inPages = at.pages;
    if (res < 0n) {
      if (res === -ESRCH) return this.#gone(s, res);
      const k = copied > 0n ? Number(copied) / PAGE : 0;
      if (res === -EEXIST || res === -ENOENT) {
        // The page at k is there already (read eagerly) or no longer mapped.
        if (res === -EEXIST) uffdWake(s.uffd, dst + BigInt(k) * PAGE_N, PAGE_N);
        inPages = k + 1;
      } else if (res === -EAGAIN) {
        // The memory layout is changing: events first, then again.
        s.pending.remove(addr, addr + k * PAGE);
        this.#handleEvents(0);
        return;
      } else throw new Error(`UFFDIO_COPY in ${s.pid}: ${errnoName(Number(-res))}`);
    }
    s.pending.remove(addr, addr + inPages * PAGE);
  }

  #backgroundChunk(s: Space): void {
    pausePoint("lazy-serve");
    const next = s.pending.first();
    if (next !== undefined) this.#copy(s, next, CHUNK_PAGES);
  }

  /** Pages of [start, end) are gone (unmapped) or dropped (read as zeros from now on). */
  #drop(s: Space, start: bigint, end: bigint): void {
    s.pending.remove(Number(start & ~(PAGE_N - 1n)), Number(end));
  }

  /** mremap moved [from, from+len) to `to`: the plan moves with it. */
  #remap(s: Space, from: bigint, to: bigint, len: bigint): void {
    const moved = s.pending.extract(Number(from), Number(from + len));
    // The destination was unmapped by mremap: drop any old plan there first.
    s.pending.remove(Number(to), Number(to + len));
    const by = Number(to) - Number(from);
    s.pending.insert(moved.map((e) => ({ ...e, start: e.start + by, end: e.end + by })));
  }
}
