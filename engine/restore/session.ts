/**
 * The restore session: drives every task of the tree from birth to the
 * moment they all run again.
 *
 * All tasks are traced (PTRACE_O_TRACEFORK|TRACEEXEC|EXITKILL) from the
 * launcher on, so nothing escapes the engine (threads and zombies are
 * created with CLONE_PTRACE: traced from birth, and their creator does not
 * stop at a clone event, a round trip per thread):
 *
 * - at each image's exec stop the engine prepares the process (replaces
 *   the file-backed bootstrap with anonymous memory holding the freshly
 *   compiled program; then the stub, from a small program, moves the
 *   kernel's vvar/vdso to the dumped addresses and unmaps what the kernel
 *   set up for the exec: exec_setup.ts) and starts the stub at its restore
 *   entry;
 * - child processes born from the program are let run (they exec their own
 *   image); threads are parked in their birth stop;
 * - when every process reached the program's END, the engine sets each
 *   thread's registers, XSAVE state and signal mask, runs each thread's
 *   own section of the program (thread_state.ts) and the remaining
 *   injections, unmaps the bootstrap, and detaches all tasks at once.
 *
 * Any failure kills every task created so far.
 *
 * @module
 */

import { finishInetSockets } from "../fds/inet_plan.ts";
import { readMaps } from "../proc/maps.ts";
import { readStatus } from "../proc/status.ts";
import { readStat } from "../proc/stat.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import {
  __WALL,
  napUntilSignal,
  parkStatus,
  PTRACE_EVENT,
  waitPid,
  WNOHANG,
  WUNTRACED,
} from "../../ffi/wait.ts";
import {
  cont,
  detach,
  getEventMsg,
  getRegs,
  getXstate,
  interrupt,
  PTRACE_O,
  seize,
  setFinalState,
  setRegs,
  stopInSignalHandling,
  waitStop,
} from "../../ffi/ptrace.ts";
import { findSyscallInstruction, injectSyscall } from "../../ffi/inject.ts";
import { processVmWriteFully } from "../../ffi/process_vm.ts";
import { xsaveXcr0 } from "../../ffi/structs.ts";
import { errnoName } from "../../ffi/errno.ts";
import { setThreadXsave, threadXsave } from "../image/thread_xsave.ts";
import { fitXsave } from "./xsave_fit.ts";
import type { ProcessImage } from "../model.ts";
import { RestoreError } from "../errors.ts";
import { describeFailedOp, describeFailure } from "../program/builder.ts";
import type { CompiledProcess } from "./compile.ts";
import type { Bootstrap } from "./stub.ts";
import { removeLauncher, spawnLauncher, writeLauncher } from "./launcher.ts";
import { foregroundGroupOf } from "../fds/tty.ts";
import type { ProvidedFds } from "./provided.ts";
import { restoreTaskState, restoreTaskStateAfterCredentials } from "../task/mod.ts";
import { checkTimerSlacks } from "../task/sched.ts";
import { checkSchedsReadInRuns } from "../task/sched_run.ts";
import { slacksOf } from "./thread_state.ts";
import { pausePoint } from "../pause.ts";
import { restoreCgroups } from "../task/placement.ts";
import { restoreCreds } from "../task/creds_restore.ts";
import { restoreAioRings } from "../memory/aio.ts";
import { startInheritedChild } from "./inherit_session.ts";
import { zombiePids } from "../task/zombies.ts";
import { awaitPlaceholder, endPlaceholder, placeholderPids } from "../task/groups.ts";
import { releaseTree } from "../task/stopped.ts";
import { restoreSigtrap } from "../task/sigtrap.ts";
import { handOverFds } from "../pidns/handover.ts";
import { execSetupProgram, runExecSetup } from "./exec_setup.ts";
import { syscallOutside } from "./unmap_gadget.ts";
import { FinalStates } from "./final_state.ts";
import { sigchldWakes, wakeOnSigchld } from "../../ffi/sigchld_wake.ts";

/** One process to restore: its description, image path and compiled program. */
export interface RestoreUnit {
  image: ProcessImage;
  path: string;
  compiled: CompiledProcess;
}

/**
 * A root process that exists already and waits to exec the root image
 * (pid 1 of a fresh pid namespace, engine/pidns/): the session seizes it
 * instead of spawning a launcher, then calls `go()`.
 */
export interface ExistingRoot {
  pid: number;
  go(): void;
}

/** Progress events of a restore. */
export type RestoreEvent =
  | { type: "launched"; launcher: number }
  | { type: "exec"; pid: number }
  | { type: "program-done"; pid: number }
  | { type: "running"; pids: number[] };

const PROT_RWX = 7;
const MAP_PRIVATE_FIXED_ANON = 0x02 | 0x10 | 0x20;
const SIGTRAP = 5;
const SIGSTOP = 19;
/**
 * The longest nap of the session's poll while nothing is left to do but
 * wait: each empty poll doubles the nap from 1 ms up to this, and an event
 * starts again from 1 ms. A tracee's stop ends a nap at once (its SIGCHLD,
 * ffi/sigchld_wake.ts); the nap's length only bounds how late a stop whose
 * SIGCHLD went to another thread of cryo's is seen. A 1 ms poll cost cryo's
 * thread ~70 to 100 us a round on this VM, 70 rounds and more while a
 * maps-10000 program ran (docs/PERFORMANCE.md, eighteenth pass, restore64).
 */
const MAX_NAP_MS = 4;
/** The PTRACE_O_* options every restored task is traced with. */
const TRACE_OPTIONS = PTRACE_O.TRACEFORK | PTRACE_O.TRACEEXEC | PTRACE_O.EXITKILL;

/** The mappings of `pid` with the names restore cares about. */
function mapsOf(pid: number): { start: bigint; end: bigint; name: string }[] {
  return readMaps(pid).map((m) => ({ start: m.start, end: m.end, name: m.path }));
}

function check(what: string, r: bigint): bigint {
  if (r < 0n) throw new RestoreError(`${what} failed: ${errnoName(Number(-r))}`);
  return r;
}

/** Restores the tree of `units` (root first). Returns when every task runs. */
export class RestoreSession {
  readonly #units = new Map<number, RestoreUnit>();
  readonly #rootPid: number;
  readonly #onEvent?: (e: RestoreEvent) => void;
  /** Every tid created so far (for cleanup). */
  readonly #tasks = new Set<number>();
  readonly #done = new Set<number>();
  readonly #parked = new Set<number>();
  readonly #expectedThreads = new Map<number, number>();
  #launcher: { pid: number; path: string } | undefined;
  #launcherExited = false;
  #launcherBoot: Bootstrap | undefined;
  /** Zombie children the programs re-create: their exits are expected. */
  readonly #zombies = new Set<number>();
  /** Placeholders of groups whose leader is gone, by pid, with the process that forks them. */
  readonly #placeholders = new Map<number, number>();
  /** Placeholders whose birth stop was seen (the drive waits for every one). */
  readonly #placeholdersBorn = new Set<number>();
  /** Processes whose birth stop was seen. */
  readonly #born = new Set<number>();
  /**
   * Children forked into their parent's fd table (engine/task/shared_tables.ts)
   * whose program is not done, with the parent held at that fork's event stop:
   * the two programs never work on the one table at once, and the transfer fds
   * the child's own children take are still there when it forks them.
   */
  readonly #heldForParent = new Map<number, number>();
  /** Each thread's final registers, XSAVE area and mask, decoded while the stubs run. */
  readonly #final: FinalStates;

  readonly #timeoutMs: number;
  readonly #existingRoot: ExistingRoot | undefined;

  /** Fds cryo made for the tree (closed once the tree runs or the restore fails). */
  readonly #provided: ProvidedFds | undefined;
  /** Work done while no task needs the engine (returns false when it has none left). */
  readonly #idle: (() => boolean) | undefined;
  /** The login uid the launcher writes before it creates the root (attrs.ts `loginuidToWrite`). */
  readonly #loginuid: number | undefined;

  /**
   * `timeoutMs` bounds the time until every restore program has finished;
   * `provided` are the fds the engine made for the tree (pty masters, ghost
   * files), handed over through the launcher; the session closes them.
   * `idle` is called instead of sleeping while every task is busy (the
   * restore's checksum pass); it returns false when it has nothing left.
   * `loginuid`: written by the launcher, so that the whole tree inherits it.
   */
  constructor(
    units: RestoreUnit[],
    onEvent?: (e: RestoreEvent) => void,
    timeoutMs = 120_000,
    provided?: ProvidedFds,
    idle?: () => boolean,
    existingRoot?: ExistingRoot,
    loginuid?: number,
  ) {
    this.#existingRoot = existingRoot;
    this.#loginuid = loginuid;
    this.#timeoutMs = timeoutMs;
    this.#provided = provided;
    this.#idle = idle;
    for (const u of units) {
      this.#units.set(u.image.pid, u);
      for (const t of u.image.threads) {
        if (t.tid !== u.image.pid) this.#expectedThreads.set(t.tid, u.image.pid);
      }
    }
    this.#rootPid = units[0].image.pid;
    this.#final = new FinalStates(units.map((u) => u.image));
    for (const z of zombiePids(units.map((u) => u.image))) this.#zombies.add(z);
    for (const { pid, host } of placeholderPids(units.map((u) => u.image))) {
      this.#placeholders.set(pid, host);
    }
    this.#onEvent = onEvent;
  }

  /** Runs the whole restore; on failure kills everything it created and throws. */
  run(): number[] {
    this.prepare();
    return this.release();
  }

  /**
   * Creates every task and runs every restore program, up to the point
   * where all tasks wait, stopped, for {@link release} (or {@link abort}).
   * On failure kills everything it created and throws.
   */
  prepare(): void {
    // The drive's naps end at each stop of a task (ffi/sigchld_wake.ts), not up to 1 ms later.
    const unwake = wakeOnSigchld();
    try {
      this.#launch();
      this.#drive(sigchldWakes() ? MAX_NAP_MS : 1);
    } catch (e) {
      this.#killAll();
      this.#provided?.close();
      throw e;
    } finally {
      unwake();
    }
    // (The launcher's file is gone already: #launch removes it as soon as posix_spawn returns.
    // A second removal here threw and caught NotFound on every restore, ~0.3 ms of cold error
    // path right after the last program's end: docs/PERFORMANCE.md, twelfth pass, smallrestore6.)
  }

  /** Sets the final state of every thread and lets the whole tree run. */
  release(): number[] {
    try {
      this.#finalize();
      return [...this.#units.keys()];
    } catch (e) {
      this.#killAll();
      throw e;
    } finally {
      this.#provided?.close();
    }
  }

  /** Kills every task created (nothing ran yet). */
  abort(): void {
    this.#killAll();
    this.#provided?.close();
  }

  #launch(): void {
    if (this.#existingRoot) return this.#adoptRoot(this.#existingRoot);
    const root = this.#units.get(this.#rootPid)!;
    const { path, bootstrap } = writeLauncher(this.#rootPid, root.path, this.#loginuid);
    let launcher: ReturnType<typeof spawnLauncher>;
    try {
      launcher = spawnLauncher(path, this.#provided?.fds);
    } finally {
      // posix_spawn returns once the child has exec'd the file (or says why it could not):
      // the file is no longer needed, and nothing is left of it if cryo dies from here on.
      removeLauncher({ path });
    }
    this.#launcher = launcher;
    this.#launcherBoot = bootstrap;
    this.#tasks.add(launcher.pid);
    pausePoint("spawned");
    const st = waitPid(launcher.pid, WUNTRACED);
    if (st.kind !== "stopped") {
      throw new RestoreError(`launcher ${launcher.pid} did not start (${st.kind})`);
    }
    seize(launcher.pid, TRACE_OPTIONS);
    waitStop(launcher.pid);
    this.#checkXsave(launcher.pid);
    pausePoint("launched");
    cont(launcher.pid, 0);
    this.#onEvent?.({ type: "launched", launcher: launcher.pid });
  }

  /** Seizes the existing root (stopped once to check XSAVE), then lets it exec its image. */
  #adoptRoot(root: ExistingRoot): void {
    seize(root.pid, TRACE_OPTIONS);
    this.#tasks.add(root.pid);
    interrupt(root.pid);
    waitStop(root.pid);
    this.#checkXsave(root.pid);
    this.#launcherExited = true;
    root.go();
    cont(root.pid, 0);
  }

  /**
   * Refuses images whose threads use XSAVE features this CPU/kernel lacks or
   * lays out otherwise; moves an area of another size that only uses
   * x87/SSE/AVX into one of this CPU's size (engine/restore/xsave_fit.ts).
   */
  #checkXsave(tid: number): void {
    const host = getXstate(tid);
    const have = xsaveXcr0(host);
    for (const u of this.#units.values()) {
      for (const t of u.image.threads) {
        const area = threadXsave(t);
        const fit = fitXsave(t.tid, area, have, host.length);
        if (typeof fit === "string") throw new RestoreError(`cannot restore: ${fit}`);
        if (fit !== area) setThreadXsave(t, fit);
      }
    }
  }

  #allDone(): boolean {
    return this.#done.size === this.#units.size &&
      this.#parked.size === this.#expectedThreads.size && this.#launcherExited &&
      this.#placeholdersBorn.size === this.#placeholders.size;
  }

  /** Runs every program to its end; `maxNapMs`: the longest nap between polls. */
  #drive(maxNapMs: number): void {
    // A stub that never reaches its end must not hang cryo: poll with a deadline.
    const deadline = performance.now() + this.#timeoutMs;
    let nap = 1;
    while (!this.#allDone()) {
      const st = waitPid(-1, __WALL | WNOHANG);
      if (st.kind !== "none") nap = 1; // the next events may follow closely
      if (st.kind === "none") {
        if (performance.now() > deadline) {
          throw new RestoreError(
            `restore did not finish within ${this.#timeoutMs / 1000} s (processes done: ${
              [...this.#done].join(", ") || "none"
            })`,
          );
        }
        // While the stubs run: the checksum pass, then the threads' final states, else sleep.
        // Woken early by the SIGCHLD of the next event (ffi/wait.ts napUntilSignal).
        if (!this.#idle?.() && !this.#final.prepare(8)) {
          napUntilSignal(nap);
          nap = Math.min(nap * 2, maxNapMs);
        }
        continue;
      }
      if (st.kind === "continued") continue;
      const tid = st.pid;
      if (st.kind === "exited" || st.kind === "signaled") {
        if (!this.#tasks.has(tid)) {
          parkStatus(st); // someone else's child: keep its status for them
          continue;
        }
        this.#tasks.delete(tid);
        // A re-created zombie: this collects the tracer's copy of its exit only.
        if (this.#zombies.has(tid)) continue;
        if (tid === this.#launcher?.pid) {
          this.#launcherExited = true;
          if (st.kind !== "exited" || st.code !== 0) {
            throw new RestoreError(
              `launcher failed (${
                st.kind === "exited" ? `exit ${st.code}` : `signal ${st.signal}`
              }): could not create pid ${this.#rootPid}`,
            );
          }
          continue;
        }
        const how = st.kind === "exited"
          ? `exited with ${st.code}`
          : `was killed by signal ${st.signal}`;
        throw new RestoreError(`restore failed: task ${tid} ${how} during the restore`);
      }
      this.#tasks.add(tid);
      if (st.event === PTRACE_EVENT.EXEC) {
        // engine/pidns/handover.ts: the fds a launcher would have passed on.
        if (tid === this.#existingRoot?.pid) handOverFds(tid, this.#provided?.fds ?? new Map());
        this.#prepareExec(tid);
        continue;
      }
      if (
        st.event === PTRACE_EVENT.FORK || st.event === PTRACE_EVENT.CLONE ||
        st.event === PTRACE_EVENT.VFORK
      ) {
        const child = Number(getEventMsg(tid));
        this.#tasks.add(child);
        // A child in this process's fd table runs its program first (#heldForParent).
        if (this.#units.get(child)?.image.sharesParentFiles && !this.#done.has(child)) {
          this.#heldForParent.set(child, tid);
          continue;
        }
        cont(tid, 0);
        continue;
      }
      if (st.event === PTRACE_EVENT.STOP) {
        this.#birthStop(tid);
        continue;
      }
      if (st.signal === SIGTRAP) {
        this.#trap(tid);
        continue;
      }
      // Any other signal: deliver it (all are blocked once the program starts).
      cont(tid, st.signal === SIGSTOP ? 0 : st.signal);
    }
  }

  #birthStop(tid: number): void {
    if (tid === this.#launcher?.pid) {
      cont(tid, 0);
      return;
    }
    const owner = this.#expectedThreads.get(tid);
    if (owner !== undefined) {
      this.#parked.add(tid);
      return; // stays stopped until finalize
    }
    const unit = this.#units.get(tid);
    if (unit) {
      // Its birth stop comes first; a later PTRACE_EVENT_STOP is a notification (a
      // SIGCONT the program queued again): it just goes on.
      if (this.#born.has(tid)) {
        cont(tid, 0);
        return;
      }
      this.#born.add(tid);
      // A process: it goes on to exec its image, or runs its own program in the memory it inherited.
      if (unit.image.inheritsMemory) {
        const parent = this.#units.get(unit.image.ppid)!;
        startInheritedChild(tid, unit.image, unit.compiled, parent.compiled);
      }
      cont(tid, 0);
      return;
    }
    if (this.#zombies.has(tid) || this.#placeholders.has(tid)) {
      // A zombie child re-created goes on to exit; a placeholder, to make its group and pause.
      if (this.#placeholders.has(tid)) this.#placeholdersBorn.add(tid);
      cont(tid, 0);
      return;
    }
    const tgid = readStatus(tid).tgid;
    throw new RestoreError(`unexpected task ${tid} (process ${tgid}) appeared during the restore`);
  }

  #trap(tid: number): void {
    const unit = this.#units.get(tid);
    const regs = getRegs(tid);
    if (tid === this.#launcher?.pid && this.#launcherBoot) {
      const b = this.#launcherBoot;
      const why = regs.rip === b.failRip
        ? describeFailure(b.restore.ops, b.restore.opsAddress, regs.rbx, regs.rax)
        : `trap at 0x${regs.rip.toString(16)}`;
      throw new RestoreError(`cannot create process ${this.#rootPid}: launcher ${why}`);
    }
    if (!unit) throw new RestoreError(`unexpected trap in task ${tid}`);
    const boot = unit.compiled.bootstrap;
    if (regs.rip === boot.doneRip) {
      this.#done.add(tid);
      // Its parent, held at the fork that put it into the parent's fd table, goes on.
      const held = this.#heldForParent.get(tid);
      if (held !== undefined) {
        this.#heldForParent.delete(tid);
        cont(held, 0);
      }
      this.#onEvent?.({ type: "program-done", pid: tid });
      pausePoint("program-done");
      return;
    }
    if (regs.rip === boot.failRip) {
      const why = describeFailedOp(boot.restore, regs.rbx, regs.rax);
      throw new RestoreError(`restore of process ${tid} failed: ${why}`);
    }
    throw new RestoreError(`process ${tid}: unexpected SIGTRAP at 0x${regs.rip.toString(16)}`);
  }

  /** At the exec stop of an image: set up the bootstrap and the vdso, then run the program. */
  #prepareExec(pid: number): void {
    const unit = this.#units.get(pid);
    if (!unit) throw new RestoreError(`unexpected exec in task ${pid}`);
    this.#onEvent?.({ type: "exec", pid });
    pausePoint("exec");
    const { compiled, image } = unit;
    const boot = compiled.bootstrap;
    const base = boot.base;
    const size = BigInt(image.bootstrap.size);
    // 1. Anonymous bootstrap with the fresh program (the image file must not stay mapped).
    const site = findSyscallInstruction(pid);
    check(
      "mmap(bootstrap)",
      injectSyscall(pid, site, SYS.mmap, base, size, PROT_RWX, MAP_PRIVATE_FIXED_ANON, -1, 0),
    );
    processVmWriteFully(pid, base, boot.blob);
    // 2. Unmap what the kernel set up for the exec, move vvar/vdso to the dumped
    // addresses: one program the stub runs (engine/restore/exec_setup.ts).
    const wanted = image.mappings.filter((m) => m.kind === "vdso");
    runExecSetup(
      pid,
      boot,
      execSetupProgram(mapsOf(pid), wanted, base, size, compiled.vdsoScratch),
    );
    // 3. Run the restore program.
    const regs = getRegs(pid);
    regs.rip = boot.entryRestore;
    regs.orig_rax = 0xffffffffffffffffn;
    setRegs(pid, regs);
    cont(pid, 0);
  }

  #finalize(): void {
    // A placeholder runs on its own after its birth stop: its group must exist before the joins.
    for (const pid of this.#placeholders.keys()) awaitPlaceholder(pid);
    for (const unit of this.#units.values()) {
      const { image, compiled } = unit;
      const pid = image.pid;
      const gadget = compiled.syscallGadget;
      const scratch = compiled.vdsoScratch - 4096n;
      // Per-thread state that only the thread itself can set (engine/restore/thread_state.ts)
      // is set in the same run as its credentials (restoreCreds below).
      this.#joinGroup(image, gadget);
      restoreCgroups(image);
      this.#setForegroundGroup(image, gadget, scratch);
      // Scheduling, process attributes and seccomp (engine/task/mod.ts), then the
      // credentials (last of what needs the restorer's privileges), then what a
      // credential change resets (pdeathsig, dumpable).
      const taskInjector = {
        call: (tid: number, nr: number, ...args: (number | bigint)[]) =>
          injectSyscall(tid, gadget, nr, ...args),
        write: (addr: bigint, bytes: Uint8Array) => processVmWriteFully(pid, addr, bytes),
      };
      restoreAioRings(image, {
        pid,
        tid: pid,
        call: (nr, ...a) => taskInjector.call(pid, nr, ...a),
        scratch,
      });
      // The timer slack of each thread but the main one is read in its own run, then checked.
      const slackLater = new Set(compiled.threadSections.map((s) => s.tid));
      // So is the rest of the scheduling of those with a fair policy (engine/task/sched_run.ts).
      const schedLater = new Set(
        compiled.threadSections.filter((s) => s.schedRead).map((s) => s.tid),
      );
      restoreTaskState(image, taskInjector, TRACE_OPTIONS, slackLater, schedLater);
      const runs = restoreCreds(image, compiled);
      checkSchedsReadInRuns(pid, image.threads, runs);
      checkTimerSlacks(image, slacksOf(runs));
      restoreTaskStateAfterCredentials(image, taskInjector);
      // After the last int3 of any program section: engine/task/sigtrap.ts.
      restoreSigtrap(image, gadget, scratch);
      // Timers armed last, so they do not expire while the tree is still being restored.
      for (const d of compiled.deferred) {
        check(`${d.what} in ${pid}`, injectSyscall(pid, gadget, d.nr, ...d.args));
      }
      // Unmap the bootstrap through a syscall instruction outside it.
      const size = BigInt(image.bootstrap.size);
      const outside = syscallOutside(pid, image, {
        start: compiled.bootstrap.base,
        end: compiled.bootstrap.base + size,
      });
      check(
        "munmap(bootstrap)",
        injectSyscall(pid, outside, SYS.munmap, compiled.bootstrap.base, size),
      );
      // XSAVE area, registers and mask, from buffers made while the stubs ran (final_state.ts).
      for (const t of image.threads) {
        setFinalState(t.tid, this.#final.release(t, stopInSignalHandling).requests);
      }
    }
    // Every group is joined: the placeholders go (engine/task/groups.ts).
    for (const [pid, host] of this.#placeholders) {
      endPlaceholder(pid, this.#units.get(host)!.image);
    }
    // TCP connections leave repair mode once every socket of the tree exists.
    finishInetSockets([...this.#units.values()].map((u) => u.image));
    // Everyone is ready: let them all go (stopped processes first).
    releaseTree([...this.#units.values()].map((u) => u.image), (tid) => detach(tid, 0));
    this.#onEvent?.({ type: "running", pids: [...this.#units.keys()] });
  }

  /**
   * A process whose group is led by another process of the tree (a
   * pipeline of a job-control shell), or by a re-created zombie of it,
   * joins it now that every group exists; the session, made by the
   * program, is checked.
   */
  #joinGroup(image: ProcessImage, gadget: bigint): void {
    const pid = image.pid;
    const now = readStat(pid);
    const led = this.#units.has(image.pgid) || this.#zombies.has(image.pgid) ||
      this.#placeholders.has(image.pgid);
    if (led && now.pgrp !== image.pgid) {
      check(
        `setpgid(0, ${image.pgid}) in ${pid}`,
        injectSyscall(pid, gadget, SYS.setpgid, 0, image.pgid),
      );
    }
    if (this.#units.has(image.sid) && now.session !== image.sid) {
      throw new RestoreError(
        `restore of process ${pid} failed: it is in session ${now.session}, not ${image.sid}`,
      );
    }
  }

  /**
   * A session leader whose controlling terminal is a pty of the tree gives
   * it its foreground group back (every group exists by now; all signals
   * are still blocked, so no SIGTTOU).
   */
  #setForegroundGroup(image: ProcessImage, gadget: bigint, scratch: bigint): void {
    const fg = foregroundGroupOf(image, this.#provided?.ptys ?? []);
    if (!fg) return;
    const pid = image.pid;
    processVmWriteFully(pid, scratch, new TextEncoder().encode(fg.path + "\0"));
    processVmWriteFully(pid, scratch + 64n, new Uint8Array(new Int32Array([fg.pgrp]).buffer));
    const fd = check(
      `open(${fg.path}) in ${pid}`,
      injectSyscall(pid, gadget, SYS.open, scratch, 0o2 | 0o400 | 0o2000000, 0),
    );
    try {
      check(
        `tcsetpgrp(${fg.path}, ${fg.pgrp}) in ${pid}`,
        injectSyscall(pid, gadget, SYS.ioctl, fd, 0x5410, /* TIOCSPGRP */ scratch + 64n),
      );
    } finally {
      injectSyscall(pid, gadget, SYS.close, fd);
    }
  }

  #killAll(): void {
    const pids = new Set<number>([...this.#tasks]);
    for (const id of pids) rawSyscall(SYS.kill, id, 9);
    const deadline = Date.now() + 5000;
    while (pids.size && Date.now() < deadline) {
      let progressed = false;
      for (const id of [...pids]) {
        let st;
        try {
          st = waitPid(id, __WALL | WNOHANG);
        } catch {
          pids.delete(id);
          continue;
        }
        if (st.kind === "exited" || st.kind === "signaled") {
          pids.delete(id);
          progressed = true;
        }
      }
      if (!progressed) {
        // Reap anything that was reparented to us (cryo is a subreaper during restore).
        try {
          const st = waitPid(-1, __WALL | WNOHANG);
          if (st.kind !== "none") {
            if ((st.kind === "exited" || st.kind === "signaled") && !this.#tasks.has(st.pid)) {
              parkStatus(st); // not ours: keep it for its owner
            }
            continue;
          }
        } catch { /* no children */ }
        const t = Date.now() + 5;
        while (Date.now() < t) { /* brief spin; wait4 has no timeout */ }
      }
    }
  }
}
