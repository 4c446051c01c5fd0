/**
 * The early start of a small restore: the process that becomes the
 * restored one is created, exec's its image and loads its memory while cryo
 * still compiles the rest of its program and runs the preflight.
 *
 * Once the image is read and validated (before the compile), a tree of one
 * process with nothing the engine hands over ({@link earlyStartable}) is
 * launched as a restore launches it (launcher.ts: clone3 with its pid, exec
 * of its image), and at its exec stop the stub runs a first program: all
 * signals blocked, then the image's memory section exactly as the full
 * program emits it (compile.ts `emitMemory`: every mapping in order, its
 * pages, protections and madvise flags; the image file and mapped files
 * closed at its end). The full program, compiled meanwhile with
 * `memoryLoaded` (its memory section behind a jump over it), is written
 * over the bootstrap once the first program reached its END, and runs from
 * its first op ({@link EarlyRoot.resume}, called by the session in place of
 * its launch). What runs before the memory in a normal restore (the signal
 * mask, session or group, descriptions created for the tree) then runs
 * after it: none of it depends on the mappings.
 *
 * Nothing of the image's own code runs before the session releases the
 * tree, after the checksum pass and the preflight: a failed plan, check or
 * compile after the early start kills and reaps the process
 * ({@link EarlyRoot.abort}), which is cryo's child (the launcher's
 * CLONE_PARENT) and traced with PTRACE_O_EXITKILL (a killed cryo takes it
 * along). A start that fails on its own (a pid taken meanwhile, the exec
 * refused) leaves nothing and the restore goes on the normal way, which
 * reports whatever is wrong.
 *
 * @module
 */

import { SYS } from "../../ffi/sysno.ts";
import { rawSyscall, selfPid } from "../../ffi/libc.ts";
import { Errno } from "../../ffi/errno.ts";
import {
  __WALL,
  PTRACE_EVENT,
  waitPid,
  type WaitStatus,
  WNOHANG,
  WUNTRACED,
} from "../../ffi/wait.ts";
import { cont, getRegs, seize, waitStop } from "../../ffi/ptrace.ts";
import { processVmWriteFully } from "../../ffi/process_vm.ts";
import type { Manifest, ProcessImage } from "../model.ts";
import { RestoreError } from "../errors.ts";
import { describeFailedOp } from "../program/builder.ts";
import { pausePoint } from "../pause.ts";
import { sleepSync } from "../sleep_sync.ts";
import { planPtys } from "../fds/tty.ts";
import { zombiePids } from "../task/zombies.ts";
import { readStat } from "../proc/stat.ts";
import { type CompiledProcess, emitMemory, VDSO_SCRATCH_BYTES } from "./compile.ts";
import { type Bootstrap, BootstrapBuilder } from "./stub.ts";
import { removeLauncher, spawnLauncher, writeLauncher } from "./launcher.ts";
import { checkXsaveFeatures, runFromEntry, startAtExec } from "./exec_start.ts";
import type { RestoreEvent } from "./session.ts";
import { TRACE_OPTIONS } from "./session.ts";

const SIGTRAP = 5;
const SIGSTOP = 19;
const SIG_SETMASK = 2;
/** How long the first program may take before the restore gives up (as the session's deadline). */
const MEMORY_TIMEOUT_MS = 120_000;

/** What restore asks of an early start besides the image (engine/restore/mod.ts options). */
export interface EarlyStartOptions {
  /** Lazy restore: never started early (its memory is served later). */
  lazy?: boolean;
  /** The root exists already (pid namespace): never started early. */
  existingRoot?: unknown;
  /** Progress events (launched, exec), as the session sends them. */
  onEvent?: (e: RestoreEvent) => void;
}

/**
 * Whether the tree of `images` can start early: one process, no children
 * or zombies, no memory inherited, nothing the engine opens and hands over
 * through the launcher (pty masters, ghost files), no System V segments,
 * no shared file mapping with pages to write.
 */
export function earlyStartable(
  manifest: Manifest,
  images: readonly ProcessImage[],
  opts: EarlyStartOptions,
): boolean {
  if (opts.lazy || opts.existingRoot !== undefined) return false;
  if (images.length !== 1 || manifest.processes.length !== 1) return false;
  const p = images[0];
  if (p.pid !== manifest.rootPid || p.children.length > 0 || p.inheritsMemory) return false;
  if ((manifest.ghosts?.length ?? 0) > 0 || (manifest.sysvShm?.length ?? 0) > 0) return false;
  if (zombiePids([p]).length > 0 || planPtys([p], 3).length > 0) return false;
  for (const m of p.mappings) {
    if (m.ghost !== undefined || m.sysvShm !== undefined || m.inherited) return false;
    if (m.kind === "file-shared" && m.pages.length > 0) return false;
  }
  return true;
}

/** The first program of an early start: signals blocked, the memory section, END. */
export function memoryBootstrap(proc: ProcessImage, imagePath: string): Bootstrap {
  const base = BigInt(proc.bootstrap.start);
  const boot = new BootstrapBuilder(base);
  const p = boot.program();
  p.op(SYS.rt_sigprocmask, [SIG_SETMASK, p.u64s([0xffffffffffffffffn]), 0, 8], {
    comment: "block all signals",
  });
  emitMemory(p, proc, {
    imagePath,
    childImages: new Map(),
    images: new Map([[proc.pid, proc]]),
  }, boot.slotsAddress);
  p.end("memory loaded: the engine writes the rest of the program");
  const bootstrap = boot.finish({ restore: p.build() });
  const limit = base + BigInt(proc.bootstrap.size) - BigInt(VDSO_SCRATCH_BYTES);
  if (base + BigInt(bootstrap.blob.length) > limit) {
    throw new RestoreError(`the memory program of ${proc.pid} does not fit its bootstrap`);
  }
  return bootstrap;
}

/** Whether no task has the id `id` (`kill(id, 0)` says ESRCH). */
function idFree(id: number): boolean {
  return rawSyscall(SYS.kill, id, 0) === -BigInt(Errno.ESRCH);
}

/** Kills `pid` (SIGKILL) and reaps it (cryo is its parent or its tracer, or both). */
function killAndReap(pid: number): void {
  rawSyscall(SYS.kill, pid, 9);
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    let st: WaitStatus;
    try {
      st = waitPid(pid, __WALL);
    } catch {
      return; // not ours (any more)
    }
    if (st.kind === "exited" || st.kind === "signaled") return;
  }
}

/** Whether `pid` is a child of cryo (the root the launcher made, if the launcher got that far). */
function childOfCryo(pid: number): boolean {
  try {
    return readStat(pid).ppid === selfPid();
  } catch {
    return false;
  }
}

/** A process started early, running or done with its memory program. */
export class EarlyRoot {
  /** Its pid (the image's). */
  readonly pid: number;
  /** The memory program's bootstrap. */
  readonly #boot: Bootstrap;
  /** Whether this object still answers for the process (until the session takes it, or abort). */
  #owned = true;
  readonly #onEvent: ((e: RestoreEvent) => void) | undefined;

  private constructor(pid: number, boot: Bootstrap, onEvent?: (e: RestoreEvent) => void) {
    this.pid = pid;
    this.#boot = boot;
    this.#onEvent = onEvent;
  }

  /**
   * Starts `proc` early from its image at `imagePath` (checked by
   * {@link earlyStartable}); undefined, with nothing left behind, when it
   * could not (the normal restore then says why, if anything is wrong).
   */
  static start(
    proc: ProcessImage,
    imagePath: string,
    onEvent?: (e: RestoreEvent) => void,
  ): EarlyRoot | undefined {
    if (![proc.pid, ...proc.threads.map((t) => t.tid)].every(idFree)) return undefined;
    let boot: Bootstrap;
    try {
      boot = memoryBootstrap(proc, imagePath);
    } catch {
      return undefined;
    }
    const { path } = writeLauncher(proc.pid, imagePath);
    const launcher = spawnLauncher(path);
    let launcherLive = true;
    let rootLive = false;
    let started = false;
    try {
      pausePoint("spawned");
      const st = waitPid(launcher.pid, WUNTRACED);
      removeLauncher(launcher);
      if (st.kind !== "stopped") {
        launcherLive = false;
        return undefined;
      }
      seize(launcher.pid, TRACE_OPTIONS);
      waitStop(launcher.pid);
      checkXsaveFeatures(launcher.pid, [proc]);
      pausePoint("launched");
      cont(launcher.pid, 0);
      onEvent?.({ type: "launched", launcher: launcher.pid });
      // The launcher clones the root (traced from birth) and exits.
      for (;;) {
        const ls = waitPid(launcher.pid, __WALL);
        if (ls.kind === "exited" || ls.kind === "signaled") {
          launcherLive = false;
          rootLive = ls.kind === "exited" && ls.code === 0;
          if (!rootLive) return undefined;
          break;
        }
        if (ls.kind !== "stopped" || ls.signal === SIGTRAP) return undefined; // its clone3 failed
        cont(launcher.pid, 0);
      }
      // The root: its birth stop, then its exec of the image.
      for (;;) {
        const rs = waitPid(proc.pid, __WALL);
        if (rs.kind === "exited" || rs.kind === "signaled") {
          rootLive = false;
          return undefined;
        }
        if (rs.kind !== "stopped") continue;
        if (rs.event === PTRACE_EVENT.EXEC) break;
        if (rs.event === PTRACE_EVENT.STOP || rs.signal === SIGSTOP) {
          cont(proc.pid, 0);
          continue;
        }
        return undefined; // its exec failed (the launcher's END in the root)
      }
      onEvent?.({ type: "exec", pid: proc.pid });
      pausePoint("exec");
      startAtExec(proc.pid, proc, boot, limitOf(proc));
      started = true; // the EarlyRoot answers for it now
      return new EarlyRoot(proc.pid, boot, onEvent);
    } catch {
      return undefined;
    } finally {
      removeLauncher(launcher);
      if (launcherLive) killAndReap(launcher.pid);
      // Not started: the root goes too, if the launcher made it (never another's process of that pid).
      if (!started && (rootLive || childOfCryo(proc.pid))) killAndReap(proc.pid);
    }
  }

  /**
   * Called by the session (which from now on answers for the process):
   * waits for the memory program's END (running `idle` meanwhile, else
   * sleeping 1 ms), then writes `compiled`'s bootstrap (the full program,
   * compiled with `memoryLoaded`) and runs it from its first op. Throws a
   * RestoreError if the memory program failed or the process ended.
   */
  resume(compiled: CompiledProcess, idle?: () => boolean): void {
    this.#owned = false;
    const pid = this.pid;
    const deadline = performance.now() + MEMORY_TIMEOUT_MS;
    for (;;) {
      const st = waitPid(pid, __WALL | WNOHANG);
      if (st.kind === "none" || st.kind === "continued") {
        if (performance.now() > deadline) {
          throw new RestoreError(`restore did not finish within ${MEMORY_TIMEOUT_MS / 1000} s`);
        }
        if (!idle?.()) sleepSync(1);
        continue;
      }
      if (st.kind === "exited" || st.kind === "signaled") {
        const how = st.kind === "exited"
          ? `exited with ${st.code}`
          : `was killed by signal ${st.signal}`;
        throw new RestoreError(`restore failed: task ${pid} ${how} during the restore`);
      }
      if (st.event === PTRACE_EVENT.STOP || (st.event === 0 && st.signal === SIGSTOP)) {
        cont(pid, 0);
        continue;
      }
      if (st.event === 0 && st.signal === SIGTRAP) {
        const regs = getRegs(pid);
        if (regs.rip === this.#boot.doneRip) break;
        if (regs.rip === this.#boot.failRip) {
          const why = describeFailedOp(this.#boot.restore, regs.rbx, regs.rax);
          throw new RestoreError(`restore of process ${pid} failed: ${why}`);
        }
        throw new RestoreError(`process ${pid}: unexpected SIGTRAP at 0x${regs.rip.toString(16)}`);
      }
      cont(pid, st.event === 0 ? st.signal : 0); // as the session: a signal is delivered (blocked)
    }
    this.#onEvent?.({ type: "memory-loaded", pid });
    pausePoint("early-memory");
    processVmWriteFully(pid, compiled.bootstrap.base, compiled.bootstrap.blob);
    runFromEntry(pid, compiled.bootstrap);
  }

  /** Kills and reaps the process unless the session took it over (idempotent). */
  abort(): void {
    if (!this.#owned) return;
    this.#owned = false;
    killAndReap(this.pid);
  }
}

/** Where the vdso is parked while moved (as compile.ts computes `vdsoScratch`). */
function limitOf(proc: ProcessImage): bigint {
  return BigInt(proc.bootstrap.start) + BigInt(proc.bootstrap.size) - BigInt(VDSO_SCRATCH_BYTES);
}
