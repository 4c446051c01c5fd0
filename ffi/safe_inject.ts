/**
 * Crash-safe syscall injection: whatever instant the tracer dies at, the
 * thread resumes in its original state.
 *
 * Per thread (once per injection session) an `rt_sigframe` holding its
 * original registers, signal mask, sigaltstack and XSAVE area is written
 * below its stack pointer (below the red zone; the ABI lets a signal
 * handler overwrite that space at any time), with the address of an
 * `rt_sigreturn` sequence found in the target (`mov $15, %rax; syscall`,
 * libc's signal restorer) as its return address. Each injected syscall runs
 * at a `syscall; ret` found in the target, with rsp at the frame: a thread
 * let go before, during or after the syscall runs it once, returns into
 * the restorer and rt_sigreturn puts everything back. The syscall is run
 * with PTRACE_SYSCALL (entry and exit stops: ptrace notifications with
 * PTRACE_O_TRACESYSGOOD, which a dead tracer leaves without a signal to
 * deliver), with every signal blocked (the frame has the mask to go back
 * to). Between two syscalls in the same thread it stays at the exit stop;
 * {@link CrashSafeThread.close} takes it back to an interrupt stop (inside
 * signal handling, where the freeze stopped it) and then puts the original
 * mask and registers back, in that order, so that from then on a dying
 * tracer lets it resume exactly where it was, with the kernel's own
 * syscall-restart handling.
 *
 * rt_sigreturn disables syscall restarting, so the frame holds the
 * registers as the kernel would have restarted them (an interrupted
 * syscall is issued again; one interrupted with ERESTART_RESTARTBLOCK, e.g.
 * a relative sleep, is issued again with its original arguments).
 *
 * The frame's `uc_stack` is left zero: rt_sigreturn hands it to
 * do_sigaltstack and ignores every error but EFAULT, and a zero stack_t
 * (mode 0, size 0) always fails (ENOMEM, or EPERM on the alternate stack),
 * so a thread let go at any instant keeps its sigaltstack as it is. The
 * injected syscalls only read it; no syscall is needed to fill the frame.
 *
 * A syscall that changes something can be paired with its undo
 * ({@link CrashSafeThread.armUndo}): a second frame whose registers run the
 * undo syscall and then return through the first frame.
 *
 * @module
 */

import { processVmRead, processVmReadFully, processVmWriteFully } from "./process_vm.ts";
import { rawSyscall } from "./libc.ts";
import { SYS } from "./sysno.ts";
import { PTRACE_EVENT } from "./wait.ts";
import {
  cont,
  getRegs,
  getSigmask,
  getSyscallInfo,
  getXstate,
  interrupt,
  resumeToSyscall,
  setRegs,
  setSigmask,
  waitStop,
} from "./ptrace.ts";
import { signed, syscallRegs, type UserRegs } from "./regs.ts";
import { encodeSigframe, FRAME_UC_STACK, sigframeFpstate, sigframeSize } from "./sigframe.ts";
import { executableMapsLines, InjectionError } from "./inject.ts";
import { BATCH_AFTER_SYSCALL } from "./syscall_batch.ts";
import type { VmPiece } from "./process_vm_pieces.ts";

const ALL_SIGNALS = 0xffffffffffffffffn;
const SYSGOOD_TRAP = 5 | 0x80;
const MAX_STOPS = 64;
/** Size of the undo frame (a frame without its own XSAVE area). */
const UNDO_FRAME = 320;
/** XCR0 bit of AMX tile data, whose size the kernel gives a signal frame only on request. */
const XFEATURE_TILEDATA = 1n << 18n;

/** The code sequences crash-safe injection needs in the target. */
export interface SafeSites {
  /** `syscall; ret` (0f 05 c3). */
  call: bigint;
  /** `mov $15, %rax; syscall` or `mov $15, %eax; syscall` (rt_sigreturn). */
  restorer: bigint;
}

const CALL = [0x0f, 0x05, 0xc3];
const RESTORERS = [
  [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05],
  [0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05],
];

/** Whether `pat` is at `at` in the first `n` bytes of `buf`. */
function matchAt(buf: Uint8Array, n: number, at: number, pat: readonly number[]): boolean {
  if (at < 0 || at + pat.length > n) return false;
  for (let j = 0; j < pat.length; j++) if (buf[at + j] !== pat[j]) return false;
  return true;
}

/**
 * The first `syscall; ret` and the first restorer in the first `n` bytes of
 * `buf` (-1 when absent). Every sequence ends with or starts at a `syscall`
 * (0f 05): one native search for its second byte anchors all of them.
 */
function scanSites(buf: Uint8Array, n: number, wantCall: boolean, wantRestorer: boolean) {
  let call = -1;
  let restorer = -1;
  for (let i = buf.indexOf(0x05, 1); i >= 0 && i < n; i = buf.indexOf(0x05, i + 1)) {
    if (buf[i - 1] !== 0x0f) continue;
    const at = i - 1; // the syscall instruction
    if (wantCall && call < 0 && matchAt(buf, n, at, CALL)) call = at;
    if (wantRestorer && restorer < 0) {
      for (const pat of RESTORERS) {
        if (matchAt(buf, n, at + 2 - pat.length, pat)) {
          restorer = at + 2 - pat.length;
          break;
        }
      }
    }
    if ((!wantCall || call >= 0) && (!wantRestorer || restorer >= 0)) break;
  }
  return { call, restorer };
}

/**
 * Finds the sequences of {@link SafeSites} in the executable mappings of
 * `pid` ([vdso] and libc first), or undefined when one is missing.
 */
export function findSafeSites(
  pid: number,
  /** The text of /proc/<pid>/maps if the caller just read it. */
  mapsText?: string,
  /**
   * Where the sites probably are (found in another process mapping the same
   * files: engine/dump/site_memo.ts): used only once {@link stillThere}
   * confirmed them, as a remembered pair; else the search runs.
   */
  hint?: SafeSites,
): SafeSites | undefined {
  // Only the executable lines are split: a process may have 10,000s of mappings.
  const ranges = executableMapsLines(mapsText ?? Deno.readTextFileSync(`/proc/${pid}/maps`))
    .map((l) => {
      const f = l.split(/\s+/);
      const [s, e] = f[0].split("-").map((x) => BigInt(`0x${x}`));
      return { start: s, end: e, perms: f[1], name: f.slice(5).join(" ") };
    })
    .filter((m) => m.perms[0] === "r" && m.perms[2] === "x" && m.name !== "[vsyscall]");
  const inside = (a: bigint, n: number) =>
    ranges.some((m) => a >= m.start && a + BigInt(n) <= m.end);
  const known = foundSites.get(pid);
  if (known && stillThere(pid, known, inside)) return known;
  foundSites.delete(pid);
  if (hint && stillThere(pid, hint, inside)) {
    const sites = { call: hint.call, restorer: hint.restorer };
    foundSites.set(pid, sites);
    return sites;
  }
  // The vdso and libc (which has the restorer) first: a large executable is read last.
  const rank = (name: string) => name === "[vdso]" ? 0 : /\/libc[.-]/.test(name) ? 1 : 2;
  ranges.sort((x, y) => rank(x.name) - rank(y.name));
  let call: bigint | undefined;
  let restorer: bigint | undefined;
  const chunk = 1 << 16;
  const buf = new Uint8Array(chunk + 16);
  for (const m of ranges) {
    for (
      let a = m.start;
      a < m.end && (call === undefined || restorer === undefined);
      a += BigInt(chunk)
    ) {
      const want = m.end - a < BigInt(buf.length) ? Number(m.end - a) : buf.length;
      let n: number;
      try {
        n = processVmRead(pid, a, buf.subarray(0, want));
      } catch {
        break;
      }
      const found = scanSites(buf, n, call === undefined, restorer === undefined);
      if (found.call >= 0) call = a + BigInt(found.call);
      if (found.restorer >= 0) restorer = a + BigInt(found.restorer);
    }
    if (call !== undefined && restorer !== undefined) {
      const sites = { call, restorer };
      foundSites.set(pid, sites);
      return sites;
    }
  }
  return undefined;
}

/**
 * The sites last found in each process: a dump opens several injection
 * sessions in the same process (the pre-copy's first freeze, the collect's
 * rehearsal, the dump's freeze), and the search reads and scans up to
 * megabytes of code (~1 to 7 ms each). A remembered pair is used only once
 * {@link stillThere} confirmed it, so a changed process, or another one
 * with the same pid, is searched again.
 */
const foundSites = new Map<number, SafeSites>();

/**
 * The sites {@link findSafeSites} last found in `pid`, if they still lie
 * in readable executable areas (`inside(addr, bytes)`: whether those bytes
 * lie in one such area, [vsyscall] aside; a caller with the frozen areas
 * looks one up instead of listing the executable ones) and still hold
 * their code sequences (read back); else undefined (then
 * {@link findSafeSites} searches).
 */
export function rememberedSites(
  pid: number,
  inside: (addr: bigint, bytes: number) => boolean,
): SafeSites | undefined {
  const known = foundSites.get(pid);
  return known && stillThere(pid, known, inside) ? known : undefined;
}

/**
 * Whether both remembered sites of `pid` still lie in readable executable
 * areas (`inside`) and still hold their code sequences (read back).
 */
function stillThere(
  pid: number,
  sites: SafeSites,
  inside: (addr: bigint, bytes: number) => boolean,
): boolean {
  const longest = Math.max(...RESTORERS.map((r) => r.length));
  if (!inside(sites.call, CALL.length)) return false;
  const call = new Uint8Array(CALL.length);
  const rest = new Uint8Array(longest);
  try {
    if (processVmRead(pid, sites.call, call) !== call.length) return false;
    const n = processVmRead(pid, sites.restorer, rest.subarray(0, longest));
    if (!matchAt(call, call.length, 0, CALL)) return false;
    return RESTORERS.some((pat) => inside(sites.restorer, pat.length) && matchAt(rest, n, 0, pat));
  } catch {
    return false;
  }
}

/** Status files read by {@link CrashSafeThread.open} (no status given for the thread), for tests. */
export const safeInjectStats = { statusReads: 0 };

/** Whether thread `tid` uses a user shadow stack (rt_sigreturn would want a token on it). */
function usesShadowStack(tid: number): boolean {
  safeInjectStats.statusReads++;
  try {
    const m = Deno.readTextFileSync(`/proc/${tid}/status`).match(/^x86_Thread_features:\s*(.*)$/m);
    return m !== null && /\bshstk\b/.test(m[1]);
  } catch {
    return true;
  }
}

/**
 * The registers a thread stopped in signal handling would resume with: an
 * interrupted syscall (-ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND,
 * -ERESTART_RESTARTBLOCK) is set up to be issued again.
 */
export function resumedRegs(o: UserRegs): UserRegs {
  const rax = signed(o.rax);
  if (signed(o.orig_rax) < 0n) return o;
  if (rax === -512n || rax === -513n || rax === -514n || rax === -516n) {
    return { ...o, rax: o.orig_rax, rip: o.rip - 2n };
  }
  return o;
}

/** Called at the points a test may stop cryo at (engine/pause.ts). */
export type PhaseHook = (phase: string) => void;

/** One stopped thread under crash-safe injection; see the module doc. */
export class CrashSafeThread {
  /** The thread. */
  readonly tid: number;
  /** Base of the area below its stack pointer that this uses (64-byte aligned). */
  readonly area: bigint;
  /** Bytes of that area. */
  readonly areaBytes: number;
  /** Signals taken from the thread while it ran injected syscalls, sent again on close. */
  readonly stolen: number[] = [];
  readonly #sites: SafeSites;
  readonly #frame: bigint;
  readonly #undo: bigint;
  readonly #orig: UserRegs;
  readonly #mask: bigint;
  readonly #xstate: Uint8Array;
  readonly #hook: PhaseHook;
  #home: bigint;
  /** Whether its registers are the injected ones (at an exit stop) rather than its own. */
  #injected = false;
  /**
   * Whether its stop is one inside signal handling (the freeze's interrupt
   * stop, or the signal-delivery stop a batch ends with), where its own
   * registers and mask can be put back without resuming it: let go from
   * there, the kernel's syscall-restart handling still runs. False at the
   * exit stop of an injected syscall.
   */
  #inSignalStop = true;
  #saved: Uint8Array;

  private constructor(
    tid: number,
    sites: SafeSites,
    area: bigint,
    regs: UserRegs,
    mask: bigint,
    xstate: Uint8Array,
    hook: PhaseHook,
  ) {
    this.tid = tid;
    this.#sites = sites;
    this.area = area;
    this.areaBytes = CrashSafeThread.bytesFor(xstate.length);
    this.#undo = area;
    this.#frame = area + BigInt(UNDO_FRAME);
    this.#home = this.#frame;
    this.#orig = regs;
    this.#mask = mask;
    this.#xstate = xstate;
    this.#hook = hook;
    this.#saved = new Uint8Array(this.areaBytes);
  }

  /** Bytes the area of a thread takes, for an XSAVE area of `xstateSize` bytes. */
  static bytesFor(xstateSize: number): number {
    return UNDO_FRAME + sigframeSize(xstateSize);
  }

  /**
   * Prepares stopped thread `tid` (in an interrupt stop): reads its state
   * and writes its frame in the area `placeArea(rsp, bytes)` chooses
   * (undefined: no room); nothing runs in the thread yet. Undefined when
   * the thread cannot be handled this way (no room, a shadow stack, AMX
   * state). `shadowStack`: whether it uses a user shadow stack, when the
   * caller read its status already. With `io`, the area is not read nor the
   * frame written here: their pieces are added to `io.reads` and
   * `io.writes`, which the caller must move (reads first) before it uses
   * the thread or puts its area back ({@link restoreArea}): several
   * threads' in one call each (ffi/process_vm_pieces.ts).
   */
  static open(
    tid: number,
    sites: SafeSites,
    placeArea: (rsp: bigint, bytes: number) => bigint | undefined,
    hook: PhaseHook,
    shadowStack?: boolean,
    io?: { reads: VmPiece[]; writes: VmPiece[] },
  ): CrashSafeThread | undefined {
    const regs = getRegs(tid);
    const xstate = getXstate(tid);
    const xcr0 = new DataView(xstate.buffer, xstate.byteOffset).getBigUint64(464, true);
    if ((xcr0 & XFEATURE_TILEDATA) !== 0n || (shadowStack ?? usesShadowStack(tid))) {
      return undefined;
    }
    const area = placeArea(regs.rsp, CrashSafeThread.bytesFor(xstate.length));
    if (area === undefined || (area & 63n) !== 0n) return undefined;
    const t = new CrashSafeThread(tid, sites, area, regs, getSigmask(tid), xstate, hook);
    const frame = encodeSigframe(t.#frame, {
      regs: resumedRegs(regs),
      mask: t.#mask,
      xstate,
      restorer: sites.restorer,
    });
    if (io) {
      io.reads.push({ addr: area, buf: t.#saved });
      io.writes.push({ addr: t.#frame, buf: frame });
      return t;
    }
    processVmReadFully(tid, area, t.#saved);
    processVmWriteFully(tid, t.#frame, frame);
    return t;
  }

  /** Runs syscall `nr` in the thread; returns the raw result (-errno on failure). */
  call(nr: number, ...args: (number | bigint)[]): bigint {
    this.begin(nr, ...args);
    return this.finish();
  }

  /** The syscall {@link begin} started and the stops it took so far. */
  #pending = { nr: -1, stops: 0 };

  /**
   * Starts syscall `nr` in the thread and returns once it entered it (let
   * go past its entry stop: it runs meanwhile); {@link finish} awaits its
   * result. Nothing else may be done with the thread in between.
   */
  begin(nr: number, ...args: (number | bigint)[]): void {
    setRegs(this.tid, syscallRegs(this.#orig, nr, args, this.#sites.call, this.#home));
    if (!this.#injected) setSigmask(this.tid, ALL_SIGNALS);
    this.#injected = true;
    this.#hook("inject-mid");
    this.#inSignalStop = false;
    const p = this.#pending = { nr, stops: 0 };
    while (p.stops < MAX_STOPS) {
      resumeToSyscall(this.tid, 0);
      p.stops++;
      if (this.#syscallStop(waitStop(this.tid))) {
        resumeToSyscall(this.tid, 0); // (its entry stop: the syscall runs)
        return;
      }
    }
    throw new InjectionError(`thread ${this.tid}: injected syscall ${nr} did not complete`);
  }

  /** The raw result (-errno on failure) of the syscall {@link begin} started. */
  finish(): bigint {
    const p = this.#pending;
    while (p.stops < MAX_STOPS) {
      p.stops++;
      if (this.#syscallStop(waitStop(this.tid))) {
        const info = getSyscallInfo(this.tid);
        if (info.op !== 2 || info.ip !== this.#sites.call + 2n) {
          throw new InjectionError(
            `thread ${this.tid}: injected syscall ${p.nr} stopped at 0x${
              info.ip.toString(16)
            } (op ${info.op})`,
          );
        }
        return info.rval;
      }
      resumeToSyscall(this.tid, 0);
    }
    throw new InjectionError(`thread ${this.tid}: injected syscall ${p.nr} did not complete`);
  }

  /**
   * Whether stop `st` is a syscall stop (entry or exit); other stops are
   * noted (only SIGSTOP gets through the mask: taken now, sent again on
   * close; PTRACE_EVENT_STOP, a group stop or an interrupt: nothing).
   */
  #syscallStop(st: ReturnType<typeof waitStop>): boolean {
    if (st.event === 0 && st.signal === SYSGOOD_TRAP) return true;
    if (st.event === 0 && st.signal === 5) {
      // A syscall stop without PTRACE_O_TRACESYSGOOD: a dead tracer would leave a SIGTRAP.
      throw new InjectionError(`thread ${this.tid}: traced without PTRACE_O_TRACESYSGOOD`);
    }
    if (st.event === 0) this.stolen.push(st.signal);
    return false;
  }

  /** The `syscall; ret` its injected syscalls run at (a batch issues its stop's tgkill there). */
  get site(): bigint {
    return this.#sites.call;
  }

  /** The thread's own signal mask (as it was when it was opened). */
  get mask(): bigint {
    return this.#mask;
  }

  /** The thread's own registers (as they were when it was opened; put back on close). */
  get regs(): UserRegs {
    return this.#orig;
  }

  /** The thread's own XSAVE area (as it was when it was opened; never changed by injection). */
  get xstate(): Uint8Array {
    return this.#xstate;
  }

  /**
   * Points the stopped, injected-into thread at the `ret` after the
   * injected `syscall` with its stack at its frame (the undo frame when
   * armed), as at the exit stop of an injected syscall: let go, it returns
   * through that frame. Changes registers only.
   */
  park(): void {
    setRegs(this.tid, {
      ...syscallRegs(this.#orig, 0, [], this.#sites.call + 2n, this.#home),
    });
    if (!this.#injected) setSigmask(this.tid, ALL_SIGNALS);
    this.#injected = true;
  }

  /**
   * Parks the thread like {@link park}, but with its stack pointer at
   * `slot`, the word just below its home frame, whose content the caller
   * wrote (and writes again): let go, the thread returns to the address
   * held there with rsp at its frame and rbx = `table`. Holding the `ret`
   * after the call site, it goes back through its frame as from
   * {@link park}; holding a batch's code, it runs the batch of `table`
   * (then {@link startParked} starts it with no register change).
   */
  parkAt(slot: bigint, table: bigint): void {
    if (slot !== this.#home - 8n) throw new InjectionError(`thread ${this.tid}: bad park slot`);
    setRegs(this.tid, {
      ...syscallRegs(this.#orig, 0, [], this.#sites.call + 2n, slot),
      rbx: table,
    });
    if (!this.#injected) setSigmask(this.tid, ALL_SIGNALS);
    this.#injected = true;
  }

  /**
   * Starts a batch in a thread parked by {@link parkAt} whose slot now
   * holds the batch code's address: resumes it without waiting (see
   * {@link startBatch}).
   */
  startParked(): void {
    this.#hook("batch-mid");
    this.#inSignalStop = false;
    cont(this.tid, 0);
  }

  /**
   * Runs the syscall batch whose code (ffi/syscall_batch.ts) is at `code` in
   * the target and whose table (ffi/syscall_batch.ts) is at `table`, ending
   * with `signal`, with a single resume: the thread stops once, when it
   * takes that signal. A thread let go at any instant runs the rest of the
   * table, the signal is discarded (its action is the default, ignore) and
   * it returns through its own frame to its own state, as after any
   * injected syscall. Afterwards the thread is where {@link call} leaves it.
   */
  runBatch(code: bigint, table: bigint, signal: number): void {
    this.startBatch(code, table);
    this.finishBatch(code, signal);
  }

  /**
   * The first half of {@link runBatch}: points the thread at the batch and
   * resumes it, without waiting (several threads can run their batches at
   * once; each must run its own copy of the code, see engine/dump/injected.ts).
   */
  startBatch(code: bigint, table: bigint): void {
    setRegs(this.tid, {
      ...this.#orig,
      rip: code,
      rbx: table,
      rsp: this.#home,
      orig_rax: -1n & 0xffffffffffffffffn,
      eflags: this.#orig.eflags & ~0x100n,
    });
    if (!this.#injected) setSigmask(this.tid, ALL_SIGNALS);
    this.#injected = true;
    this.#hook("batch-mid");
    this.#inSignalStop = false;
    cont(this.tid, 0);
  }

  /**
   * The second half of {@link runBatch}: waits for the batch's end (its stop
   * by `signal`). The thread stops at the `ret` of the call site, out of the
   * batch code, with `signal` unblocked; unless `closeNext` (the caller
   * closes it before anything else is injected: {@link close} puts its own
   * mask back) every signal is blocked again.
   */
  finishBatch(code: bigint, signal: number, closeNext = false): void {
    const early = code + BigInt(BATCH_AFTER_SYSCALL);
    for (let i = 0; i < MAX_STOPS; i++) {
      if (i > 0) cont(this.tid, 0);
      const st = waitStop(this.tid);
      if (st.event === 0 && st.signal === signal) {
        const r = getRegs(this.tid);
        const atEnd = r.rip === this.#sites.call + 2n;
        if ((!atEnd && r.rip !== early) || r.rsp !== this.#home) {
          throw new InjectionError(
            `thread ${this.tid}: syscall batch stopped at 0x${r.rip.toString(16)}`,
          );
        }
        // Left in that signal-delivery stop (the next resume, with no signal,
        // discards it), at the `ret` to its frame. A signal sent from elsewhere
        // stops it in the code, once the last entry unblocked it: moved out.
        this.#inSignalStop = true;
        if (!atEnd || !closeNext) setSigmask(this.tid, ALL_SIGNALS);
        if (!atEnd) this.park();
        this.#hook("batch-end");
        return;
      }
      // Only SIGSTOP gets through the mask: taken now, sent again on close.
      if (st.event === 0) this.stolen.push(st.signal);
      // PTRACE_EVENT_STOP (a group stop, an interrupt): go on.
    }
    throw new InjectionError(`thread ${this.tid}: syscall batch did not end`);
  }

  /**
   * From now on, a thread let go runs syscall `nr` (`args`) before it
   * returns to its original state: the undo of a change the next syscalls
   * make. The undo must be harmless if that change was not made.
   */
  armUndo(nr: number, ...args: (number | bigint)[]): void {
    const { addr, buf } = this.undoPiece(nr, ...args);
    processVmWriteFully(this.tid, addr, buf);
    this.useUndo();
  }

  /**
   * The undo frame of {@link armUndo} as a piece to write (several
   * threads' in one call); {@link useUndo} once it is written.
   */
  undoPiece(nr: number, ...args: (number | bigint)[]): VmPiece {
    // Its uc_stack is zero as well: the sigaltstack is left as it is (see the module doc).
    return {
      addr: this.#undo,
      buf: encodeSigframe(this.#undo, {
        regs: syscallRegs(this.#orig, nr, args, this.#sites.call, this.#frame),
        mask: ALL_SIGNALS,
        xstate: this.#xstate,
        sharedFpstate: sigframeFpstate(this.#frame),
        restorer: this.#sites.restorer,
      }),
    };
  }

  /**
   * Address of eight zero bytes in the undo frame (its `uc_stack.ss_sp`,
   * always left zero): an `int` 0 that an undo syscall can point at. It
   * stays intact while the undo runs: the frame is below the stack pointer
   * then, with every signal blocked.
   */
  get undoZero(): bigint {
    return this.#undo + BigInt(FRAME_UC_STACK);
  }

  /** The second half of {@link armUndo}, once the piece of {@link undoPiece} is written. */
  useUndo(): void {
    this.#home = this.#undo;
  }

  /** The change is undone (or about to be, by the next syscall): no undo from now on. */
  disarmUndo(): void {
    this.#home = this.#frame;
  }

  /**
   * Takes the thread back to an interrupt stop with its own mask and
   * registers (see the module doc), and sends the signals it lost meanwhile.
   */
  close(): void {
    if (this.#injected && this.#inSignalStop) {
      // Already stopped inside signal handling (a batch's end): put its mask
      // and registers back where it is, without another round trip.
      this.#hook("inject-restore");
      setSigmask(this.tid, this.#mask);
      setRegs(this.tid, this.#orig);
      this.#injected = false;
    } else if (this.#injected) {
      interrupt(this.tid);
      let parked = false;
      for (let i = 0; i < MAX_STOPS && !parked; i++) {
        cont(this.tid, 0);
        const st = waitStop(this.tid);
        if (st.event === PTRACE_EVENT.STOP) parked = true;
        else if (st.event === 0 && (st.signal & 0x7f) !== 5) this.stolen.push(st.signal);
      }
      if (!parked) {
        throw new InjectionError(`thread ${this.tid}: did not stop again after injected syscalls`);
      }
      this.#hook("inject-restore");
      setSigmask(this.tid, this.#mask);
      setRegs(this.tid, this.#orig);
      this.#injected = false;
      this.#inSignalStop = true;
    }
    for (const sig of this.stolen.splice(0)) rawSyscall(SYS.kill, this.tid, sig);
  }

  /** What the area held before it was used (see {@link restoreArea}). */
  get savedArea(): Uint8Array {
    return this.#saved;
  }

  /** Puts back what the area held before (once the thread is closed). */
  restoreArea(): void {
    processVmWriteFully(this.tid, this.area, this.#saved);
  }
}
