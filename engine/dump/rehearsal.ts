/**
 * A rehearsal of the collect, run in the pre-copy's pin barrier (a freeze
 * it makes anyway, engine/dump/precopy.ts), so that the dump's final freeze
 * runs the collect's code warm (compiled, inline caches filled) instead of for the first
 * time: a CLI dump is a fresh Deno, and the cold collect took about three
 * times the warm one (docs/PERFORMANCE.md, "The final freeze"). What it
 * collects is thrown away: refusals, images; no socket is read. It reads
 * what a dump reads, by the same means, so it leaves the tree as a dump
 * left running does.
 *
 * @module
 */

import { Refusals } from "../support.ts";
import type { ProcessImage } from "../model.ts";
import { collectProcess, pipeTopology } from "./process.ts";
import { listFds, readFd, readFds } from "../proc/fds.ts";
import { countMappings, readMaps } from "../proc/maps.ts";
import { readStatus, readThreadStatuses } from "../proc/status.ts";
import { readStat } from "../proc/stat.ts";
import { readLimits } from "../proc/limits.ts";
import { readAuxv } from "../proc/auxv.ts";
import { readCmdline } from "../proc/misc.ts";
import { isTrackingFd } from "./tracking.ts";
import { collectLifecycle } from "../task/lifecycle.ts";
import { SYS } from "../../ffi/sysno.ts";
import { BootstrapBuilder, messageProgram } from "../restore/stub.ts";
import { checkFdOwners, checkProcessPaths } from "./tree_state.ts";
import { freezeTree, type FrozenTree, thawTree } from "./freeze.ts";
import { readProcLink } from "../proc/io.ts";
import { closePipe, type PipeChild, spawnPipeReader } from "../../ffi/pipe_child.ts";
import { __WALL, waitPid } from "../../ffi/wait.ts";
import { pausePoint, withoutPausePoints } from "../pause.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { findSafeSitesRemembered } from "./site_memo.ts";
import { treePidsOrRoot } from "../proc/tasks.ts";
import { sleepSync } from "../sleep_sync.ts";
import { crc32Combine } from "../image/checksum.ts";
import { holdPoolThreads } from "../../ffi/blocking_pool.ts";
import { rehearseThreads } from "./thread_rehearsal.ts";
import { rehearseCopyAhead } from "./copy_ahead.ts";
import { rehearseSnapshot } from "./fork_snapshot.ts";

/**
 * Collects every process of frozen `tree` and discards the result; never
 * throws (a process that cannot be collected now is the dump's business).
 */
export function rehearseCollect(
  tree: FrozenTree,
  optIns?: string[],
  /** Given each image collected (a warm-up of what follows the collect: engine/dump/mod.ts). */
  onImage?: (image: ProcessImage) => void,
): void {
  try {
    const fdLists = tree.processes.map((p) =>
      readFds(p.pid).filter((f) => !isTrackingFd(p.pid, f.fd))
    );
    const topology = pipeTopology(tree.processes.map((p, i) => ({ pid: p.pid, fds: fdLists[i] })));
    tree.processes.forEach((p, i) => {
      try {
        const refusals = new Refusals(optIns);
        // From maps, not smaps: smaps walks every page (~60 ms at 2 GiB), and no flag is needed here.
        const areas = readMaps(p.pid).map((m) => ({ ...m, vmFlags: [] }));
        const c = collectProcess(
          p.pid,
          p.threads,
          p.children,
          fdLists[i],
          topology,
          refusals,
          undefined,
          areas,
        );
        const image: ProcessImage = {
          ...c.image,
          ...collectLifecycle(p, c.image, tree, refusals),
          bootstrap: { start: "0x0", size: 0 },
        };
        checkProcessPaths(image, refusals);
        checkFdOwners([image], refusals);
        onImage?.(image);
      } catch { /* the dump will tell */ }
    });
  } catch { /* the dump will tell */ }
}

/** Threads of the blocking pool made ready before the final freeze (a small process's segments). */
export const POOL_THREADS_WARMED = 8;

/**
 * Warms, with the tree running, code that the final freeze would otherwise
 * run for the first time: the library of off-thread syscalls (its dlopen)
 * and {@link POOL_THREADS_WARMED} threads of Deno's blocking pool, which the
 * pre-copy's validation scan and the page plan's walks start with (one
 * segment each, engine/dump/data_scan.ts; a thread the pool lacks is made
 * then, on cryo's thread: a 2 MiB stack mapped and a clone3), the builder of
 * the bootstrap blob (pure code), and the page copy's CRC combine operators.
 */
export async function warmUpFinalFreeze(): Promise<void> {
  // Each call holds a thread of its own until all are submitted: the pool makes them now (idle
  // ones live 10 s), while the code below is warmed.
  const pool = holdPoolThreads(POOL_THREADS_WARMED);
  // The page copy's CRC combine builds its operators for 2^k zero bytes on first use (cold: 1 to 3 ms).
  crc32Combine(0, 0, 2 ** 30);
  const boot = new BootstrapBuilder(0x10000n);
  boot.finish({ restore: messageProgram(boot.program(), "cryo warm-up\n", 1) });
  await pool;
}

/**
 * Finds, with the tree of `root` running, the code sequences crash-safe
 * injection needs in each of its processes (ffi/safe_inject.ts
 * `findSafeSites`, which remembers them): the first freeze then only reads
 * them back instead of searching megabytes of code (~7 ms cold). First at
 * the places an earlier dump of this boot found them (site_memo.ts). Never
 * throws.
 */
export function warmUpInjection(
  root: number,
  /** The tree's processes, when the caller listed them just now. */
  pids: readonly number[] = treePidsOrRoot(root),
): void {
  for (const pid of pids) {
    try {
      findSafeSitesRemembered(pid);
    } catch { /* only a warm-up */ }
  }
}

/**
 * Runs the /proc readers the freezes use on cryo's own process (with the
 * tree running: nothing of the tree is read), so that their parsers are
 * compiled before the first freeze needs them. Never throws.
 */
export function warmUpProcReaders(): void {
  const self = Deno.pid;
  try {
    readThreadStatuses(self, [self]);
    readStatus(self);
    readStat(self);
    readLimits(self);
    readAuxv(self);
    readCmdline(self);
    readMaps(self);
    // A few fds warm the parsers as well as all of cryo's (~20: 10 ms more in a fresh Deno).
    for (const fd of listFds(self).slice(0, 3)) readFd(self, fd);
  } catch { /* only a warm-up */ }
}

/**
 * A helper process for {@link rehearseOnHelper}: `cat` reading a pipe that
 * only cryo holds (ffi/pipe_child.ts), so it exits by itself when cryo
 * does, also when cryo is killed mid-way (a tracer's death resumes it, and
 * its input ends); undefined when it cannot be started.
 */
export function startRehearsalHelper(): PipeChild | undefined {
  try {
    return spawnPipeReader("/bin/cat", ["cat"]);
  } catch {
    return undefined;
  }
}

/** Whether `pid` is past its exec (no longer a copy of Deno) and waiting for its input. */
function helperReady(pid: number): boolean {
  try {
    return readProcLink(pid, "exe") !== Deno.execPath() && readStat(pid).state === "S";
  } catch {
    return false;
  }
}

/**
 * Up to this many mappings in the tree's root, a dump frozen once
 * rehearses its collect on a helper first: there the collect's cold code
 * is most of the freeze; with thousands of mappings the freeze is the
 * per-mapping work, which warms itself (docs/PERFORMANCE.md, branch
 * onefreeze).
 */
export const HELPER_REHEARSAL_MAX_MAPPINGS = 1000;

/** The mappings of `pid`, or Infinity when they cannot be read. */
function mappingCount(pid: number): number {
  try {
    return countMappings(pid);
  } catch {
    return Infinity;
  }
}

/**
 * The collect's rehearsal for a dump of `root` frozen once (no pre-copy,
 * so no barrier freeze to rehearse in), when the root has at most
 * {@link HELPER_REHEARSAL_MAX_MAPPINGS} mappings (`mappings` if the caller
 * counted them): a helper ({@link startRehearsalHelper}) is frozen and
 * collected, and the result thrown away, so that the dump's one freeze
 * runs the collect's code compiled; for a root of several threads, the
 * per-thread readers run once per thread on the helper's one thread
 * (engine/dump/thread_rehearsal.ts); the tree's safe sites for injection
 * are found ({@link warmUpInjection}). The target is not touched (only its
 * threads' statuses and code are read); the pause
 * points of the collect are not counted (engine/pause.ts), and it has one
 * of its own, `rehearsal-helper`. The helper is ended and reaped. Never
 * throws; false when nothing was rehearsed.
 */
export function rehearseOnHelper(
  root: number,
  mappings: number | undefined,
  optIns?: string[],
  /** {@link rehearseCollect}'s, given the helper's image. */
  onImage?: (image: ProcessImage) => void,
  /**
   * A helper {@link startRehearsalHelper} started earlier (its exec beside
   * the caller's work), used and ended here; else one is started now.
   */
  started?: PipeChild,
  /** The tree's processes, when the caller listed them just now ({@link warmUpInjection}). */
  pids?: readonly number[],
  /** Whether the dump may take a fork snapshot: one is taken of the helper too (fork_snapshot.ts). */
  snapshot = false,
  /** Whether the dump may copy its pages ahead in the freeze: the helper's are (copy_ahead.ts). */
  copyAhead = false,
): boolean {
  if ((mappings ?? mappingCount(root)) > HELPER_REHEARSAL_MAX_MAPPINGS) {
    if (started) endRehearsalHelper(started);
    return false;
  }
  const helper = started ?? startRehearsalHelper();
  if (!helper) return false;
  try {
    // Polled on this thread: an event loop turn in a fresh Deno cost ~15 ms here.
    const deadline = performance.now() + 100;
    while (!helperReady(helper.pid)) {
      if (performance.now() > deadline) return false;
      sleepSync(0.2);
    }
    let tree: FrozenTree | undefined;
    try {
      tree = freezeTree(helper.pid);
      pausePoint("rehearsal-helper");
      const frozen = tree;
      withoutPausePoints(() => rehearseCollect(frozen, optIns, onImage));
      // The page copy made ahead (copy_ahead.ts), of the helper's pages.
      if (copyAhead) {
        rehearseCopyAhead(helper.pid, readMaps(helper.pid).map((m) => ({ ...m, vmFlags: [] })));
      }
      withoutPausePoints(() => rehearseThreads(helper.pid, root, threadCount(root)));
      if (snapshot) withoutPausePoints(() => rehearseSnapshot(helper.pid));
    } finally {
      if (tree) thawTree(tree);
    }
    // The tree's safe sites found now (read-only): the freeze only checks their bytes again.
    warmUpInjection(root, pids);
    return true;
  } catch {
    return false; // only a rehearsal
  } finally {
    endRehearsalHelper(helper);
  }
}

/** The threads of `root` (0 when they cannot be read). */
function threadCount(root: number): number {
  try {
    return readStat(root).numThreads;
  } catch {
    return 0;
  }
}

/** Ends the helper (its input closed, SIGKILL) and reaps it. Never throws. */
export function endRehearsalHelper(helper: PipeChild): void {
  try {
    closePipe(helper);
    rawSyscall(SYS.kill, helper.pid, 9);
    waitPid(helper.pid, __WALL);
  } catch { /* reaped */ }
}
