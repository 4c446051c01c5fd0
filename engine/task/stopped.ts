/**
 * Stopped processes (a group stop: SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU) and
 * pending SIGSTOPs.
 *
 * Dump: a group-stopped process reports its stop signal when it is seized
 * (engine/dump/freeze.ts). Whether its parent (when in the tree) already
 * collected the stop report is asked of the parent itself, by an injected
 * `waitid(P_PID, pid, WSTOPPED|WNOHANG|WNOWAIT)`, which reaps nothing.
 *
 * Restore: the tree is released with the stopped processes first: each is
 * sent its stop signal while all its threads are still held (so none runs
 * an instruction), then let go; once it is stopped, its parent (still
 * held) has the SIGCHLD this caused taken for it (it had it before the
 * dump) and, if it had already collected the stop report, the new report
 * too (waitid WSTOPPED), so it does not see the same stop twice. A SIGSTOP pending at the dump is sent the same way
 * (the parent then learns about the stop, as it would have). Then every
 * other task is let go.
 *
 * @module
 */

import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { findSyscallInstruction, injectSyscall } from "../../ffi/inject.ts";
import { processVmReadFully, processVmWriteFully } from "../../ffi/process_vm.ts";
import type { GroupStop, ProcessImage } from "../model.ts";
import type { Refusals } from "../support.ts";
import { readStat } from "../proc/stat.ts";
import { RestoreError } from "../errors.ts";
import { withInjection } from "../dump/injected.ts";
import { sleepSync } from "../sleep_sync.ts";

/**
 * Takes the SIGCHLD pending in thread `tid` (stopped, injectable at `site`)
 * with an injected rt_sigtimedwait, its mask written at `scratch` + 128 (a
 * page of the process's): a SIGCHLD that the restore's own child made and
 * the image did not have.
 */
export function takeSigchld(tid: number, site: bigint, scratch: bigint): void {
  processVmWriteFully(
    tid,
    scratch + 128n,
    new Uint8Array(new BigUint64Array([1n << 16n]).buffer),
  );
  injectSyscall(tid, site, SYS.rt_sigtimedwait, scratch + 128n, 0, scratch + 144n, 8);
}
import { P_PID, WNOHANG, WNOWAIT, WSTOPPED } from "../../ffi/wait.ts";
import { notifiedOfStops } from "./continued.ts";

const SIGCHLD = 17;
const SIGSTOP = 19;
const SIGCONT = 18;
/** How long a released process may take to enter its stop. */
const STOP_TIMEOUT_MS = 5000;

/**
 * Describes the group stop of `image` (stopped by `signal`); `parentFrozen`
 * tells whether its parent is a frozen process of the tree. A stop that
 * could not be re-created with its own signal is refused.
 */
export function collectGroupStop(
  image: Omit<ProcessImage, "bootstrap">,
  signal: number,
  parentFrozen: boolean,
  refusals: Refusals,
): GroupStop {
  const where = `process ${image.pid} (stopped by signal ${signal})`;
  const action = image.sigactions[signal - 1];
  const handler = BigInt(action?.handler ?? "0x0");
  const caught = signal !== SIGSTOP && handler !== 0n;
  const bit = 1n << BigInt(signal - 1);
  const blocked = signal !== SIGSTOP &&
    image.threads.every((t) => (BigInt(t.sigmask) & bit) !== 0n);
  if (caught || blocked) {
    const how = !caught ? "blocks" : handler === 1n ? "ignores" : "catches";
    refusals.use("task.stopped-handled", where, `it now ${how} it`);
  } else {
    refusals.use("task.stopped", where);
  }
  const reported = parentFrozen ? stopReported(image.ppid, image.pid) : false;
  return { signal, reported };
}

/** Whether frozen process `parent` has already collected the stop report of its child `pid`. */
function stopReported(parent: number, pid: number): boolean {
  return withInjection(parent, (s) => {
    s.write(0, new Uint8Array(128));
    s.check(
      parent,
      "waitid(WNOWAIT)",
      SYS.waitid,
      P_PID,
      pid,
      s.scratch,
      WSTOPPED | WNOHANG | WNOWAIT,
      0,
    );
    const siPid = new DataView(s.read(16, 4).buffer).getInt32(0, true);
    return siPid !== pid;
  });
}

/** Whether a SIGSTOP is pending anywhere in the process. */
function stopPending(image: ProcessImage): boolean {
  return image.sharedPending.some((s) => s.signo === SIGSTOP) ||
    image.threads.some((t) => t.pending.some((s) => s.signo === SIGSTOP));
}

/**
 * Lets every thread of `images` go (with `detach`), stopped processes
 * first, as the module describes. Every thread must be held in a ptrace
 * stop with its final state set.
 */
export function releaseTree(images: readonly ProcessImage[], detach: (tid: number) => void): void {
  const byPid = new Map(images.map((i) => [i.pid, i]));
  // Children whose continue report their parent had not collected (engine/task/continued.ts).
  const continued = new Set(images.flatMap((i) => i.continuedChildren ?? []));
  const stopping = images.filter((i) => i.stopped || stopPending(i) || continued.has(i.pid));
  // Children before parents (images come parents first): a parent is still
  // held while its child's new stop is taken for it.
  for (const image of [...stopping].reverse()) {
    // (A SIGSTOP pending at the dump would stop it again: then it is sent alone, as before.)
    const again = continued.has(image.pid) && !image.stopped && !stopPending(image);
    rawSyscall(SYS.kill, image.pid, image.stopped?.signal ?? SIGSTOP);
    for (const t of image.threads) detach(t.tid);
    if (!image.stopped && !again) continue;
    awaitStopped(image.pid, image.stopped?.signal ?? SIGSTOP);
    const parent = byPid.get(image.ppid);
    if (parent) takeStopReport(parent, image.pid, image.stopped?.reported ?? true);
    if (!again || !parent) continue;
    // Continued again: the report is made anew; the SIGCHLD it sends is taken.
    rawSyscall(SYS.kill, image.pid, SIGCONT);
    takeStopReport(parent, image.pid, false);
  }
  for (const image of images) {
    if (stopping.includes(image)) continue;
    for (const t of image.threads) detach(t.tid);
  }
}

/**
 * Waits (polling, with a deadline) until `pid` is in a group stop; the
 * kernel discards SIGTSTP, SIGTTIN and SIGTTOU in an orphaned process group.
 */
function awaitStopped(pid: number, signal: number): void {
  const deadline = performance.now() + STOP_TIMEOUT_MS;
  while (readStat(pid).state !== "T") {
    if (performance.now() > deadline) {
      throw new RestoreError(
        `restored process ${pid} did not stop again with signal ${signal}` +
          (signal === SIGSTOP ? "" : " (is its process group orphaned now?)"),
      );
    }
    sleepSync(1);
  }
}

/**
 * Takes, in the held `parent`, the SIGCHLD its child `pid`'s new stop
 * caused (unless one was pending at the dump) and, when the parent had
 * already collected it, the stop report (waitid WSTOPPED); by injection, in
 * a scratch page mapped for it and unmapped again.
 */
function takeStopReport(parent: ProcessImage, pid: number, reported: boolean): void {
  const tid = parent.pid;
  const pending = parent.sharedPending.some((s) => s.signo === SIGCHLD);
  // The SIGCHLD comes from the child once it stopped or woke (a held parent queues it
  // whatever its action): wait for it, unless none is sent or one was there already.
  if (!pending && notifiedOfStops(parent)) awaitSigchld(tid);
  const site = findSyscallInstruction(tid);
  const scratch = injectSyscall(tid, site, SYS.mmap, 0, 4096, 3, 0x22, -1, 0);
  if (scratch < 0n) throw new RestoreError(`process ${tid}: mmap(scratch) failed`);
  try {
    processVmWriteFully(tid, scratch, new Uint8Array(256));
    if (reported) {
      const r = injectSyscall(tid, site, SYS.waitid, P_PID, pid, scratch, WSTOPPED | WNOHANG, 0);
      const info = new Uint8Array(4);
      processVmReadFully(tid, scratch + 16n, info);
      if (r < 0n || new DataView(info.buffer).getInt32(0, true) !== pid) {
        throw new RestoreError(`process ${tid}: the new stop report of ${pid} was not there`);
      }
    }
    if (!pending) takeSigchld(tid, site, scratch);
  } finally {
    injectSyscall(tid, site, SYS.munmap, scratch, 4096);
  }
}

/** Waits (polling, with a deadline) until SIGCHLD is pending for the held process `pid`. */
function awaitSigchld(pid: number): void {
  const deadline = performance.now() + STOP_TIMEOUT_MS;
  const bit = 1n << BigInt(SIGCHLD - 1);
  for (;;) {
    const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/^ShdPnd:\s+([0-9a-f]+)/m);
    if (m && (BigInt(`0x${m[1]}`) & bit) !== 0n) return;
    if (performance.now() > deadline) {
      throw new RestoreError(
        `process ${pid}: the SIGCHLD of its child's stop or continue never came`,
      );
    }
    sleepSync(1);
  }
}
