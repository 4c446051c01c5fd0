/**
 * Checkpointing a process tree into an image directory.
 *
 * ```ts
 * import { checkpoint } from "./mod.ts";
 * const result = await checkpoint(1234, { dir: "/tmp/ck", leaveRunning: true });
 * console.log(result.stats.pagesBytes);
 * ```
 *
 * The tree is frozen, each process is collected and its pages streamed
 * into `<pid>.elf`, `manifest.json` is written, everything is fsync'd
 * (unless `sync: false`) and the directory renamed into place; only then is
 * the tree killed (default). With `leaveRunning` the tree resumes as soon as
 * every page is copied, so it is never frozen while the images are
 * completed, synced and checksummed. Any failure resumes the tree untouched
 * and removes the partial directory.
 *
 * @module
 */

import { hashVdso, readVdso, type VdsoCopy } from "../vdso.ts";
import { basename, dirname, resolve } from "../path.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { SYS } from "../../ffi/sysno.ts";
import { __WALL, parkStatus, waitPid } from "../../ffi/wait.ts";
import { xsaveSize } from "../../ffi/ptrace.ts";
import { xsaveXcr0 } from "../../ffi/structs.ts";
import { threadXsave } from "../image/thread_xsave.ts";
import {
  type DumpStats,
  type FdInfo,
  type HostFacts,
  IMAGE_FORMAT_VERSION,
  type Manifest,
  type Mapping,
  type ProcessImage,
} from "../model.ts";
import { CryoError, TargetError, UnsupportedError } from "../errors.ts";
import { Refusals } from "../support.ts";
import { compileTree } from "../restore/restorable.ts";
import { inheritFdsNeeded } from "../fds/outside.ts";
import { checkInodeFlags } from "../fds/inode_flags.ts";
import { collectGhosts } from "../fds/ghost.ts";
import { dumpClocks } from "../task/clocks.ts";
import { refuseTreeSocketPaths } from "../fds/opath.ts";
import { refuseStatefulDevices } from "../fds/devices.ts";
import { checkAutogroups } from "../task/attrs.ts";
import { collectSysvShm } from "../memory/sysvshm.ts";
import { refuseSharedAcrossTree } from "../fds/shared_anon.ts";
import { SyscallError } from "../../ffi/libc.ts";
import { TraceeGoneError } from "../../ffi/ptrace.ts";
import { BOOTSTRAP_FILE_OFFSET, ImageWriter } from "../image/writer.ts";
import { encodeCoreNotes } from "../image/core_notes.ts";
import { checksumAround, crc32Combine } from "../image/checksum.ts";
import { streamedPageBlocks } from "./page_blocks.ts";
import { writeManifest, writeManifestNoSync } from "../image/manifest.ts";
import { BootstrapBuilder, messageProgram } from "../restore/stub.ts";
import type { Precopy, PrecopyProcess } from "./precopy.ts";
import { precopyPays } from "./precopy_policy.ts";
import { DeferredPageWriter, prepareDeferredWrites } from "./deferred_pages.ts";
import { closeStatusesAhead, openStatusesAhead, startStatusReads } from "../proc/status_ahead.ts";
import { dropLanes, precopyTree, releasePrecopy } from "./precopy_lanes.ts";
import {
  endRehearsalHelper,
  HELPER_REHEARSAL_MAX_MAPPINGS,
  rehearseCollect,
  rehearseOnHelper,
  startRehearsalHelper,
  warmUpFinalFreeze,
  warmUpInjection,
  warmUpProcReaders,
} from "./rehearsal.ts";
import { planPages, savePlanned } from "./plan.ts";
import {
  COPY_AHEAD_MAX_BYTES,
  dropCopyAhead,
  startCopyAhead,
  takeCopyAhead,
} from "./copy_ahead.ts";
import { dropScansAhead } from "./scan_ahead.ts";
import { readStatus } from "../proc/status.ts";
import { countMappings } from "../proc/maps.ts";
import { readLocksOffThread, warmLocksRead } from "../proc/locks.ts";
import { readStat } from "../proc/stat.ts";
import { readFds } from "../proc/fds.ts";
import { collectCgroups, refuseFrozenCgroup } from "../task/placement.ts";
import { resolveRestartSyscalls } from "../task/restart_block.ts";
import { settleSignalledCalls } from "../task/syscalls.ts";
import { keepGroupStopEintr } from "../task/eintr.ts";
import { freezeTree, type FrozenTree, thawTree } from "./freeze.ts";
import { scavengeBeforeFreeze } from "./young_gc.ts";
import { collectProcess, describeFd, pipeTopology } from "./process.ts";
import { prepareThreadReadsOf } from "./threads.ts";
import {
  awaitVmFlags,
  dropMapsAhead,
  peekFrozenMaps,
  prepareFrozenMaps,
  startFrozenMapsAhead,
  startVmFlagsCheck,
  type VmFlagsCheck,
} from "./vm_flags.ts";
import { childrenOfRunning, statusNeeded, warmUpThreadStates } from "./thread_state.ts";
import { markSharedDescriptions } from "../fds/descriptions.ts";
import { resolveInFlightFds } from "../fds/unix_scm.ts";
import {
  checkExitSignals,
  checkFdOwners,
  checkPdeathForkers,
  checkProcessPaths,
  checkSharedSemUndo,
  checkSharedTables,
  checkUnattachedLocks,
} from "./tree_state.ts";
import { MemoryStreamer, pageBufferBytes } from "./memory.ts";
import { PagemapReader } from "../proc/pagemap.ts";
import { BufferPageWriter } from "./page_writer.ts";
import { bootstrapSizeFor, chooseBootstrap, pagePolicy, pendingSignalBytes } from "./vmas.ts";
import { TOOL_VERSION } from "../version.ts";
import { pausePoint } from "../pause.ts";
import { makePrivateDir, removeStalePartials } from "./partial.ts";
import { fdQueueBytes } from "../fds/socket_common.ts";
import { pipeQueueBytes } from "../fds/pipe.ts";
import { InetSocketSession } from "../fds/inet_session.ts";
import { helperRepairGuard } from "../fds/tcp_repair_helper.ts";
import {
  asLocked,
  keepForImage,
  lockConnections,
  type LockOutcome,
  lockSegments,
  netNamespaceOf,
  outsideSegments,
  segmentKey,
  unlockConnections,
} from "../fds/tcp_lock.ts";
import { inetQueueBytes } from "../fds/inet_plan.ts";
import { planInheritance, smapsAheadWorth, startSmapsReads } from "../memory/inherit.ts";
import { planSharedTables } from "../task/shared_tables.ts";
import {
  mapShmemPages,
  markShmemObjects,
  refuseUnreachableShmem,
  type ShmemFaults,
} from "../memory/shmem_pages.ts";
import { collectLifecycle } from "../task/lifecycle.ts";
import { reapOrphanedZombies } from "../task/zombies.ts";
import {
  execInProgress,
  PF_EXITING,
  refuseExiting,
  refuseUnstoppable,
  refuseZombieLeader,
} from "../task/refusals.ts";
import { listTids } from "../proc/tasks.ts";
import { ownNamespaceRoot } from "../pidns/detect.ts";
import type { NamespaceExtrasRequest } from "../pidns/extras.ts";
import { collectMqueueFds } from "../fds/mqueue.ts";
import { collectSysvUsed } from "../ipc/sysv_used.ts";
import { refuseOtherProcFds } from "../fds/procfs.ts";
import type { ParentPages } from "./parent.ts";
import { ChainDump } from "./chain_dump.ts";
import { isTrackingFd, markInheritedTracking } from "./tracking.ts";
import { importModule } from "../modules.ts";
import {
  endSnapshot,
  type ForkSnapshot,
  forkSnapshotWanted,
  killSnapshot,
  memoryRoom,
  snapshotFits,
  takeSnapshots,
} from "./fork_snapshot.ts";
import { snapshotInsteadOfPrecopy } from "./snapshot_choice.ts";
import { snapshotLanesWanted, SnapshotLaneWriter } from "./snapshot_lanes.ts";

/** The network lock taken before the sockets are read: its outcome, and the connections it drops. */
interface EarlyLock {
  outcome: LockOutcome;
  /** {@link segmentKey} of each connection locked. */
  keys: Set<string>;
}

/**
 * Locks the connections of the frozen tree (the fds `fdLists` of its
 * processes `pids`) to peers outside it before any socket is read
 * (engine/fds/tcp_lock.ts), so that data they send during the dump is
 * dropped and sent again rather than taken after the read; undefined
 * when there is nothing to lock or no lock is wanted: without the
 * tcp-established opt-in (such a connection is refused), with
 * `networkLock` false, or in a pid namespace of its own.
 */
function lockOutsideFirst(
  pid: number,
  dumpId: string,
  pids: readonly number[],
  fdLists: readonly { kind: string; fd: number; target: string }[][],
  opts: CheckpointOptions,
): EarlyLock | undefined {
  if (!opts.optIns?.includes("tcp-established") || opts.networkLock === false) return undefined;
  if (opts.tcpClose) return undefined; // connections are not kept: nothing to lock
  if (opts.pidNamespace) return undefined;
  const sockets = fdLists.flatMap((fds, i) =>
    fds.filter((f) => f.kind === "socket").map((f) => ({
      pid: pids[i],
      fd: f.fd,
      target: f.target,
    }))
  );
  if (!sockets.length) return undefined;
  const conns = outsideSegments(sockets);
  if (!conns.length) return undefined;
  return {
    outcome: lockSegments(netNamespaceOf(pid), dumpId, conns, true),
    keys: new Set(conns.map(segmentKey)),
  };
}

/** Progress events of a dump. */
export type DumpEvent =
  | { type: "frozen"; processes: number; threads: number }
  /** With pre-copy: the pages copied while the tree ran, before it is frozen for the dump. */
  | { type: "precopied"; bytes: number; frozenSeconds: number }
  /** The tree runs again (`leaveRunning`); the images are completed after this. */
  | { type: "thawed"; freezeSeconds: number }
  /** The connections to peers outside the tree are locked, before their sockets are read. */
  | { type: "network-locked"; connections: number; dir: string }
  /**
   * A process described, in the freeze; `bytesToSave` its planned pages (from a fork snapshot,
   * planned after the thaw: an estimate, the process's resident anonymous and shared memory).
   */
  | { type: "process"; pid: number; mappings: number; bytesToSave: number }
  | { type: "pages"; pid: number; bytes: number; totalBytes: number }
  | { type: "written"; pid: number; path: string; size: number }
  | { type: "done"; stats: DumpStats };

/** Bytes of pages between two "pages" events of a process (and its first and last run). */
const PAGES_EVENT_BYTES = 1 << 20;

/** Options of {@link checkpoint}. */
export interface CheckpointOptions {
  /** Directory to create (must not exist, or be empty). */
  dir: string;
  /** Resume the tree after the dump instead of killing it. */
  leaveRunning?: boolean;
  /** Progress callback (the engine never prints). */
  onEvent?: (e: DumpEvent) => void;
  /**
   * Predicates choosing what to leave out (return false to exclude). An
   * excluded mapping is restored empty (zero-filled, or as its file has
   * it); an excluded fd is restored closed. Both are recorded in the image.
   */
  include?: {
    mapping?: (m: Mapping, process: ProcessImage) => boolean;
    fd?: (f: FdInfo, process: ProcessImage) => boolean;
  };
  /**
   * Opt-ins for state that depends on the world outside the tree, by their
   * CLI names ("tcp-established", "ext-unix-sk", "shell-job"); see engine/support.ts.
   */
  optIns?: string[];
  /**
   * `--tcp-close`: TCP connections (established, half-closed, or reset and
   * still open) are recorded as closed sockets, without repair mode or a
   * network lock; the restore gives them back shut down both ways.
   */
  tcpClose?: boolean;
  /**
   * `--skip-in-flight`: connections a listener has not accepted yet are
   * left out instead of refused (the kernel resets them when the tree is
   * killed; the listener comes back with an empty queue).
   */
  skipInFlight?: boolean;
  /**
   * fsync the images, the manifest and the directories before returning
   * (default true). false is for throw-away images: faster, but a crash of
   * the host may leave a directory that does not restore.
   */
  sync?: boolean;
  /**
   * With `leaveRunning`: copy the pages while the tree runs, tracking
   * writes, and copy only the written ones while it is frozen
   * (engine/dump/precopy.ts). Default: when it can pay for its own freeze
   * (engine/dump/precopy_policy.ts: enough memory, not spread over many
   * small mappings); true: always; false: never.
   */
  precopy?: boolean;
  /** Marks the manifest as dumped in a pid namespace of its own (engine/pidns/). */
  pidNamespace?: "own";
  /**
   * Called once the image is complete, before a tree that is not left
   * running is killed (engine/pidns/inner.ts: the tree is killed from outside).
   */
  beforeKill?: (result: CheckpointResult) => void;
  /** A launched tree's other namespaces to record (engine/pidns/extras.ts; the inner engine). */
  namespaceExtras?: NamespaceExtrasRequest;
  /**
   * A pre-dump: leave the tree running with dirty tracking armed, for a
   * later dump with `parent` (engine/dump/tracking.ts). Implies `leaveRunning`.
   */
  preDump?: boolean;
  /**
   * The directory of the latest pre-dump of this tree: store only the pages
   * written since, referencing the rest there (engine/dump/parent.ts).
   */
  parent?: string;
  /**
   * A tree that is killed: drop the incoming segments of its TCP connections
   * to peers outside it until the restore (engine/fds/tcp_lock.ts), so that
   * a peer sending meanwhile is not reset. Default true.
   */
  networkLock?: boolean;
}

/** What a checkpoint produced. */
export interface CheckpointResult {
  /** Absolute path of the image directory. */
  dir: string;
  manifest: Manifest;
  stats: DumpStats;
  /** The network lock of its connections to peers outside the tree, when it has any (killed tree). */
  networkLock?: LockOutcome;
  /**
   * The root's fds a restore must be given with `--inherit-fd` (pipe ends
   * leading out of the tree that nothing of the restorer's stands for).
   */
  inheritFdsNeeded?: number[];
}

/**
 * Whether the collect's rehearsal of the tree of `root` can run on a helper
 * (rehearsal.ts `rehearseOnHelper`: up to its count of mappings), from
 * `mappings` when the pre-copy's policy counted them.
 */
function rehearsesOnHelper(root: number, mappings: number | undefined): boolean {
  try {
    return (mappings ?? countMappings(root)) <= HELPER_REHEARSAL_MAX_MAPPINGS;
  } catch {
    return false;
  }
}

/**
 * Compiles the restore program of the rehearsal's images (a helper's,
 * rehearsal.ts) and throws it away, so that the compile check after the
 * thaw runs compiled code: in a fresh Deno it ran cold (~10 to 15 ms for
 * one small process). Never throws.
 */
function warmUpCompile(images: ProcessImage[]): void {
  try {
    for (const image of images) image.bootstrap = { start: "0x10000", size: 1 << 20 };
    compileTree(images, {
      pathOf: (pid) => `/nonexistent/${pid}.elf`,
      rootPid: images[0]?.pid ?? 0,
      ghosts: [],
      checkOnly: true,
    }, new Refusals());
  } catch { /* only a warm-up */ }
}

/** Resident anonymous and shmem bytes of `pid` (0 when it cannot be read). */
function residentBytes(pid: number): number {
  try {
    const f = readStatus(pid).fields;
    return (parseInt(f.RssAnon ?? "0", 10) + parseInt(f.RssShmem ?? "0", 10)) * 1024;
  } catch {
    return 0;
  }
}

function checkTarget(pid: number, ownPidNamespace = false): void {
  if (!Number.isInteger(pid) || pid <= 0) throw new TargetError(`invalid pid ${pid}`);
  let status;
  try {
    status = readStatus(pid);
  } catch {
    throw new TargetError(`no process with pid ${pid}`);
  }
  if (status.tgid !== pid) {
    throw new TargetError(`${pid} is a thread of process ${status.tgid}; dump the process`);
  }
  // cryo itself and its ancestors cannot be frozen by cryo.
  for (let p = Deno.pid; p > 1;) {
    if (p === pid) {
      throw new TargetError(
        p === Deno.pid ? `pid ${pid} is cryo itself` : `pid ${pid} is an ancestor of cryo`,
      );
    }
    try {
      p = readStat(p).ppid;
    } catch {
      break;
    }
  }
  const stat = readStat(pid);
  if ((stat.flags & 0x00200000) !== 0 || status.kthread) {
    throw new TargetError(`pid ${pid} is a kernel thread`);
  }
  refuseZombieLeader(pid, listTids(pid)); // a zombie main thread with live threads
  // (Read again: a zombie main thread may have been another thread's exec, now over.)
  if ((stat.state === "Z" || stat.state === "X") && isZombieNow(pid)) {
    throw new TargetError(`pid ${pid} is a zombie`);
  }
  // A v1 freezer holds its tasks in uninterruptible sleep, where a seized
  // task could neither stop nor be let go again: refused before the seize.
  if (stat.state === "D") {
    refuseFrozenCgroup(pid, collectCgroups(pid));
    // So does a FUSE request already interrupted that its server holds (task/refusals.ts).
    refuseUnstoppable(pid, pid);
  }
  // An exiting process runs no more code: it would never stop (task/refusals.ts).
  // (Not while another thread execs: the exec kills the main thread; the freeze waits.)
  if ((stat.flags & PF_EXITING) !== 0 && !execInProgress(pid)) refuseExiting(pid, stat.flags);
  if (status.tracerPid !== 0) {
    throw new TargetError(`process ${pid} is already traced by pid ${status.tracerPid}`);
  }
  // The init of a namespace made by `cryo launch` is dumped from inside it (engine/pidns/).
  if (pid === 1 && !ownPidNamespace) throw new TargetError("pid 1 (init) cannot be checkpointed");
}

/** Whether `pid` is a zombie (or gone) now. */
function isZombieNow(pid: number): boolean {
  try {
    const state = readStat(pid).state;
    return state === "Z" || state === "X";
  } catch {
    return true;
  }
}

/**
 * Checks `dir` (absent or empty, its parent present) and creates the
 * private partial directory the dump writes into; returns its path. As few
 * calls as the checks need, all synchronous: in a fresh Deno (every CLI
 * dump) each first use of a file op costs milliseconds, more than its
 * syscall (a stat before each step cost ~10 ms in all).
 */
function prepareDir(dir: string): string {
  const abs = resolve(dir);
  try {
    for (const _ of Deno.readDirSync(abs)) {
      throw new TargetError(`directory ${dir} already exists and is not empty`);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotADirectory) {
      throw new TargetError(`${dir} exists and is not a directory`);
    }
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  removeStalePartials(abs);
  const tmp = `${dirname(abs)}/.${basename(abs)}.cryo-partial-${Deno.pid}`;
  for (let attempt = 0;; attempt++) {
    try {
      makePrivateDir(tmp);
      return tmp;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new TargetError(`parent directory of ${dir} does not exist`);
      }
      if (e instanceof Deno.errors.PermissionDenied) {
        throw new TargetError(`cannot write ${dir}: no permission to create files in its parent`);
      }
      // Left by an earlier dump of a process with this pid: removed, then made again.
      if (!(e instanceof Deno.errors.AlreadyExists) || attempt > 0) throw e;
      Deno.removeSync(tmp, { recursive: true });
    }
  }
}

/**
 * The host facts of the image: the root's vdso (read while frozen by
 * {@link readVdso}, hashed here, after the thaw with --leave-running) and
 * XSAVE features.
 */
async function hostFacts(
  image: ProcessImage,
  vdsoCopy: VdsoCopy,
  xsaveBytes: number,
): Promise<HostFacts> {
  const { layout: vdso, sha256: vdsoSha256 } = await hashVdso(vdsoCopy);
  const xsave = threadXsave(image.threads[0]);
  return {
    kernelRelease: Deno.osRelease(),
    hostname: Deno.hostname(),
    vdso,
    vdsoSha256,
    xfeatures: `0x${xsaveXcr0(xsave).toString(16)}`,
    xsaveSize: xsaveBytes,
    pageSize: 4096,
    clocks: dumpClocks(),
  };
}

async function fsyncDir(path: string, sync = true): Promise<void> {
  if (!sync) return;
  const f = await Deno.open(path, { read: true });
  try {
    await f.sync();
  } finally {
    f.close();
  }
}

/**
 * Kills a frozen tree, parents first: each process dies while its children
 * still live, so they are re-parented (to a subreaper such as cryo's own
 * caller, or init) instead of being left as zombies that hold their pids.
 * The exit reports are collected (as tracer); the root's status is kept
 * for its parent if cryo reaped it.
 */
function killTree(tree: FrozenTree): void {
  for (const p of tree.processes) {
    rawSyscall(SYS.kill, p.pid, 9);
    // Other threads first: a traced group leader is reported only after them.
    const order = [...p.threads.filter((t) => t !== p.pid), p.pid];
    for (const tid of order) {
      for (;;) {
        let st;
        try {
          st = waitPid(tid, __WALL);
        } catch {
          break; // ECHILD: already reported
        }
        if (st.kind === "exited" || st.kind === "signaled") {
          if (tid === tree.root) parkStatus(st);
          break;
        }
      }
    }
    reapOrphanedZombies(p.zombies ?? []);
  }
}

/**
 * Whether `m` is droppable (MAP_DROPPABLE, VmFlag "dp"): its pages are not
 * saved and it comes back empty, as a fork's child gets it (droppable
 * implies wipe-on-fork). The kernel may drop its pages at any time, and
 * what programs keep there must not be copied: glibc keeps its vDSO
 * getrandom state in one, and a restored copy of that state would repeat
 * the same random bytes in every restore of one image.
 */
function isDroppable(m: Mapping): boolean {
  return m.vmFlags.includes("dp");
}

function applyIncludes(image: ProcessImage, include: CheckpointOptions["include"]): void {
  if (include?.mapping) {
    for (const m of image.mappings) {
      if (m.kind === "vdso" || m.kind === "vsyscall") continue;
      if (!include.mapping(m, image)) {
        m.excluded = true;
        image.excluded.push({ what: `mapping ${m.start}-${m.end} ${m.name}`, reason: "policy" });
      }
    }
  }
  if (include?.fd) {
    for (const f of image.fds) {
      if (!include.fd(f, image)) {
        f.excluded = true;
        image.excluded.push({ what: `fd ${f.fd} ${f.target}`, reason: "policy" });
      }
    }
    // A kept fd cannot share the description of an excluded one.
    for (const f of image.fds) {
      const base = image.fds.find((x) => x.fd === f.sameAs);
      if (base?.excluded && !f.excluded) delete f.sameAs;
    }
  }
}

/**
 * Processes of a frozen tree that died (gone, zombie, or being killed).
 * When the error says a process vanished (ESRCH), gives the kernel a moment
 * to finish the exit before looking.
 */
async function goneProcesses(tree: FrozenTree, error: unknown): Promise<number[]> {
  const vanished = error instanceof TraceeGoneError ||
    (error instanceof SyscallError && error.code === "ESRCH") ||
    (error instanceof Error && /os error 3\b|ESRCH/.test(error.message));
  for (let i = 0; i < (vanished ? 50 : 1); i++) {
    const gone = goneNow(tree);
    if (gone.length || !vanished) return gone;
    await new Promise((r) => setTimeout(r, 10));
  }
  return vanished ? [tree.root] : [];
}

/**
 * {@link goneProcesses} of a tree no error was thrown for: one look, with
 * no turn of the event loop (the freeze's last check before its thaw).
 */
function goneNow(tree: Pick<FrozenTree, "processes">): number[] {
  return tree.processes.map((p) => p.pid).filter((pid) => {
    try {
      const status = readStatus(pid);
      const killPending = (status.shdPnd & (1n << 8n)) !== 0n; // SIGKILL queued: dying
      return status.state === "Z" || status.state === "X" || killPending;
    } catch {
      return true;
    }
  });
}

/**
 * The pid namespace machinery, loaded only for a tree in its own pid
 * namespace: named through variables so that Deno does not load these
 * module graphs with every dump (a literal `import()` would).
 */
const PIDNS_MODULE = "engine/pidns/mod.ts";
const PIDNS_EXTRAS_MODULE = "engine/pidns/extras.ts";

/** Dumps whose helper rehearsal left the fork snapshot out: the copy ahead expected (tests). */
export const snapshotRehearsalStats = { skipped: 0 };

/**
 * Whether the helper's rehearsal of a dump frozen once warms the fork
 * snapshot (fork_snapshot.ts; 2.7 to 5 ms before the freeze): when the
 * dump may take one, unless its pages are expected to be copied ahead in
 * the freeze instead (copy_ahead.ts: its writes deferred, one process as
 * the estimate listed it, at most {@link COPY_AHEAD_MAX_BYTES}, no mapping
 * predicate). The snapshot stays the fallback when the copy ahead cannot
 * be made (cold then). Counts the dumps that leave it out in
 * {@link snapshotRehearsalStats}.
 */
function snapshotRehearsed(
  pid: number,
  deferWrites: boolean | undefined,
  pids: readonly number[] | undefined,
  estimate: { bytes: number; mappings: number } | undefined,
  mappingPredicate: boolean,
  snapshotFirst: boolean,
): boolean {
  if (!forkSnapshotWanted(estimate?.bytes ?? residentBytes(pid), estimate?.mappings ?? 0)) {
    return false;
  }
  const aheadExpected = deferWrites === true && pids?.length === 1 && !mappingPredicate &&
    estimate !== undefined && estimate.bytes <= COPY_AHEAD_MAX_BYTES && !snapshotFirst;
  if (aheadExpected) snapshotRehearsalStats.skipped++;
  return !aheadExpected;
}

/**
 * Whether a dump frozen once and left running, of a process the estimate
 * found `estimate` of, reads its pages from a fork snapshot rather than
 * copying them ahead in the freeze (copy_ahead.ts): where a snapshot is
 * wanted (fork_snapshot.ts `forkSnapshotWanted`) and, below the copy
 * ahead's {@link COPY_AHEAD_MAX_BYTES}, expected to be taken: the main
 * thread under no seccomp filter (a snapshot is refused then), no shared
 * memory resident (a shared area is not held by a snapshot), the memory
 * cgroup with `room` for its copies. The snapshot's fork costs less of the
 * freeze than the copy ahead's plan, pagemap look-ups and table
 * (docs/PERFORMANCE.md, nineteenth pass, branch thr64: threads-64's seen
 * freeze 0.049 -> 0.021 s with its writes deferred, load ~2).
 */
function snapshotFirst(
  pid: number,
  estimate: { bytes: number; mappings: number } | undefined,
  room: number,
): boolean {
  if (!estimate || !forkSnapshotWanted(estimate.bytes, estimate.mappings)) return false;
  if (estimate.bytes > COPY_AHEAD_MAX_BYTES) return true;
  if (estimate.bytes > room) return false;
  try {
    const status = readStatus(pid);
    // Shared memory resident: a shared area, which the snapshot would not hold (snapshotFits).
    return status.seccomp === 0 && parseInt(status.fields.RssShmem ?? "0", 10) === 0;
  } catch {
    return false; // gone: the freeze finds out
  }
}

/** Checkpoints process `pid` and its descendants into `opts.dir`. */
export async function checkpoint(pid: number, opts: CheckpointOptions): Promise<CheckpointResult> {
  if (ownNamespaceRoot(pid)) {
    if (opts.preDump || opts.parent) {
      throw new TargetError(
        `pid ${pid} is a tree in its own pid namespace (cryo launch): --pre-dump and --parent are not supported for it yet`,
      );
    }
    const pidns: typeof import("../pidns/mod.ts") = await importModule(PIDNS_MODULE);
    return await pidns.checkpointInNamespace(pid, opts);
  }
  checkTarget(pid, opts.pidNamespace === "own");
  if (opts.preDump) opts = { ...opts, leaveRunning: true };
  // A root that is cryo's own child and exits mid-dump: its exit status, taken
  // by a tracer wait, is kept for its parent's own wait (a policy runner's).
  const rootIsOurChild = readStat(pid).ppid === Deno.pid;
  const t0 = performance.now();
  const dumpId = crypto.randomUUID();
  const tmp = prepareDir(opts.dir);
  const finalDir = resolve(opts.dir);
  const sync = opts.sync !== false;
  let tree: FrozenTree | undefined;
  const streamers: MemoryStreamer[] = [];
  let writers: ImageWriter[] = [];
  // TCP/UDP sockets; copies of established connections are kept until the outcome is known.
  const sockets = new InetSocketSession({
    closeConnections: opts.tcpClose,
    skipInFlight: opts.skipInFlight,
  });
  let precopy: Precopy | undefined;
  let releasing: Promise<void> | undefined; // the pre-copy's release (precopy_lanes.ts)
  /** The network lock taken in the freeze, before the sockets were read (lockOutsideFirst). */
  let earlyLock: EarlyLock | undefined;
  /** Whether the VmFlags may come from the BPF iterator (engine/dump/vm_flags.ts). */
  let vmFlagsCheck: Promise<VmFlagsCheck | undefined> | undefined;
  let parent: ParentPages | undefined;
  /** The forks the pages are read from after the thaw, while they live (fork_snapshot.ts). */
  const forks: ForkSnapshot[] = [];
  const chain = new ChainDump(pid, opts);
  try {
    parent = await chain.begin();
    const estimate = opts.leaveRunning && opts.precopy === undefined && !opts.preDump && !parent
      // (A process of many threads: from the task records; the root's kept for their warm-up.)
      ? precopyPays(pid, childrenOfRunning)
      : undefined;
    // Where page table entry changes are costly, a fork snapshot instead (snapshot_choice.ts).
    const precopyPaysHere = estimate?.pays === true && !snapshotInsteadOfPrecopy(pid, estimate);
    if (
      opts.leaveRunning && opts.precopy !== false && !parent &&
      (opts.precopy === true || opts.preDump === true || precopyPaysHere)
    ) {
      chain.touched = opts.preDump === true;
      let warmed = false; // warmUpFinalFreeze, beside the copy
      warmUpInjection(pid);
      // Precopy.start, then the copy: on two lanes when it pays (engine/dump/precopy_lanes.ts).
      precopy = await precopyTree(
        pid,
        tmp,
        opts.preDump === true,
        (frozen) => {
          // Once the barrier's freeze is over, with its list of the tree's processes: the
          // iterator's load is not frozen time; its smaps read runs beside the copy (vm_flags.ts).
          vmFlagsCheck = startVmFlagsCheck(pid, frozen.processes.map((p) => p.pid), false, true);
        },
        !sync,
        // In the barrier's freeze, or on a helper while a syscall table copies (few mappings).
        {
          inBarrier: (frozen) => rehearseCollect(frozen, opts.optIns),
          warmUp: warmUpProcReaders,
          ...(rehearsesOnHelper(pid, estimate?.mappings)
            ? {
              beside: async () => {
                const images: ProcessImage[] = [];
                // The helper execs and starts while the final freeze's code is warmed.
                warmLocksRead(); // (the freeze's /proc/locks read then waits for no grace period)
                const helper = startRehearsalHelper();
                await warmUpFinalFreeze().then(() => warmed = true, () => {});
                rehearseOnHelper(
                  pid,
                  estimate?.mappings,
                  opts.optIns,
                  (i) => images.push(i),
                  helper,
                );
                warmLocksRead();
                warmUpCompile(images);
              },
              besideLight: async () => {
                warmLocksRead(); // (as in the rehearsal: the freeze's read waits for no grace period)
                warmUpProcReaders();
                await warmUpFinalFreeze().then(() => warmed = true, () => {});
              },
            }
            : {}),
        },
        estimate?.bytes,
      );
      if (!warmed) await warmUpFinalFreeze();
      warmLocksRead(); // the last of the reads that keep /proc/locks quick for the freeze
      opts.onEvent?.({
        type: "precopied",
        bytes: precopy.bytes,
        frozenSeconds: precopy.frozenSeconds,
      });
    }
    // Frozen once: the collect rehearsed on a helper process first (rehearsal.ts), the
    // helper started now so that its exec runs beside the buffers and the BPF program.
    const helper = !precopy && opts.leaveRunning && rehearsesOnHelper(pid, estimate?.mappings)
      ? startRehearsalHelper()
      : undefined;
    if (helper) pausePoint("helper-started");
    if (helper) warmLocksRead(); // (as beside the pre-copy's copy: again before the freeze)
    let deferWrites;
    try {
      // Frozen once, a CPU to spare: the page writes go on past the thaw (deferred_pages.ts).
      deferWrites = !precopy && estimate !== undefined && prepareDeferredWrites(estimate.bytes);
    } catch (e) {
      if (helper) endRehearsalHelper(helper);
      throw e;
    }
    warmUpThreadStates(pid); // the per-thread state's BPF program (engine/dump/thread_state.ts)
    const listed = estimate?.pids; // the tree as the estimate listed it (not listed again)
    // Frozen once without the helper's rehearsal (which finds them; a root of more than its
    // 1,000 mappings): the tree's safe sites found now, with the tree running (read-only), so
    // that the freeze's sessions only check their bytes (maps-10000: the search in the frozen
    // areas' executable lines took 2 to 3.3 ms of the freeze).
    if (!precopy && !helper) warmUpInjection(pid, listed);
    // Memory for the copies fork snapshots may cause (fork_snapshot.ts), read before the freeze
    // (and the rehearsal): each listed process's room (its memory cgroup's and the system's),
    // shared by the tree's forks.
    const snapshotRooms = new Map<number, number>();
    if (opts.leaveRunning && !precopy && !parent) {
      for (const p of listed ?? [pid]) snapshotRooms.set(p, memoryRoom(p));
    }
    // A fork snapshot rather than a copy ahead (snapshotFirst), decided before the rehearsal.
    const preferSnapshot = opts.leaveRunning === true && !precopy && !parent &&
      snapshotFirst(pid, estimate, snapshotRooms.get(pid) ?? 0);
    if (
      helper &&
      rehearseOnHelper(
        pid,
        estimate?.mappings,
        opts.optIns,
        undefined,
        helper,
        listed,
        snapshotRehearsed(
          pid,
          deferWrites,
          listed,
          estimate,
          opts.include?.mapping !== undefined,
          preferSnapshot,
        ),
        deferWrites && !preferSnapshot, // the copy ahead is made only with deferred writes
      )
    ) {
      await warmUpFinalFreeze();
    }
    if (helper) warmLocksRead();
    // Before the freeze: the check's smaps walk must not hold a frozen mm's lock.
    const flagsCheck = await (vmFlagsCheck ?? startVmFlagsCheck(pid, listed, true));
    prepareFrozenMaps(flagsCheck); // parsed with the tree running; the freeze compares bytes
    if (!helper) warmUpThreadStates(pid); // (above, beside the helper's exec)
    openStatusesAhead(pid, undefined, statusNeeded(pid)); // read in the freeze beside the fds (status_ahead.ts)
    prepareThreadReadsOf(pid); // the per-thread reads' table, run in the freeze (threads.ts)
    // The young generation collected now, not in the freeze (young_gc.ts).
    scavengeBeforeFreeze(estimate?.mappings);
    // The statuses' reads start as soon as the root's threads are stopped.
    tree = freezeTree(pid, (tids) => startStatusReads(pid, tids));
    if (!precopy) startFrozenMapsAhead(flagsCheck); // beside the fds and statuses (vm_flags.ts)
    startStatusReads(pid, tree.processes[0].threads); // (nothing when started above)
    const locks = readLocksOffThread(); // its grace period passes while the tree is collected
    // The large children's smaps for the inheritance check, read beside the collect (inherit.ts).
    const smapsAhead = startSmapsReads(
      tree.processes.slice(1).map((p) => p.pid).filter((p) => {
        const own = estimate?.each[listed?.indexOf(p) ?? -1];
        return own !== undefined && smapsAheadWorth(own.bytes, own.mappings);
      }),
    );
    smapsAhead.catch(() => {}); // (never rejects: a failed read is left to the check)
    chain.onFrozen();
    // Keeps the pre-copied pages not written since, and removes the tracking (the walk
    // started by the collect once its injected calls are done).
    precopy?.validate((p) => peekFrozenMaps(p, flagsCheck)); // read here, reused by the collect
    chain.touched ||= parent !== undefined;
    parent?.attach(tree, opts.preDump === true, !opts.leaveRunning);
    pausePoint("frozen");
    // Shared anonymous pages written by another holder are mapped in before any page is
    // planned: by the collect, once it has the frozen maps (their text read on another thread
    // since the freeze: vm_flags.ts `startFrozenMapsAhead`), before its injected calls and
    // page walks; here, from a maps read on cryo's thread, where walks start at the freeze
    // (a pre-copy's validation, a parent's scans).
    const shmemFaults: ShmemFaults[] = precopy || parent
      ? tree.processes.map((p) => mapShmemPages(p.pid, peekFrozenMaps(p.pid, flagsCheck)))
      : [];
    const threadCount = tree.processes.reduce((n, p) => n + p.threads.length, 0);
    opts.onEvent?.({ type: "frozen", processes: tree.processes.length, threads: threadCount });
    const fdsRead = tree.processes.map((p) => readFds(p.pid));
    // Copies of the tracking that children forked since inherited are cryo's too.
    markInheritedTracking(tree.processes.map((p, i) => ({ pid: p.pid, fds: fdsRead[i] })));
    const fdLists = tree.processes.map((p, i) =>
      fdsRead[i].filter((f) => !isTrackingFd(p.pid, f.fd)) // cryo's own (engine/dump/tracking.ts)
    );
    const topology = pipeTopology(tree.processes.map((p, i) => ({ pid: p.pid, fds: fdLists[i] })));
    // The connections to peers outside the tree are locked before any of them is read: data
    // the peer sends during the dump is dropped (sent again), not taken after the queue's read.
    earlyLock = lockOutsideFirst(pid, dumpId, tree.processes.map((p) => p.pid), fdLists, opts);
    if (earlyLock && "connections" in earlyLock.outcome) {
      const { connections, dir } = earlyLock.outcome;
      opts.onEvent?.({ type: "network-locked", connections, dir });
    }
    const images: ProcessImage[] = [];
    const pending: {
      writer: ImageWriter;
      image: ProcessImage;
      streamer: MemoryStreamer;
      pre?: PrecopyProcess;
      overwritten: { fileOffset: number; length: number }[];
      /** Its page data's writes, if they go on past the thaw. */
      deferred?: DeferredPageWriter;
      /** Sets the `pages` of its mappings read whole (engine/dump/plan.ts `savePlanned`). */
      runsToPages: () => void;
      /** Its core notes, when encoded in the freeze's wait for the copy ahead. */
      coreNotes?: Uint8Array<ArrayBuffer>;
    }[] = [];
    const entries: Manifest["processes"] = [];
    let pagesBytes = 0;
    let imageBytes = 0;
    let mappingCount = 0;
    // Describe every process first, and decide while the tree is frozen that
    // it can be restored: nothing is written or killed for a tree that could not come back.
    const refusals = new Refusals(opts.optIns);
    // One process frozen once, its writes deferred: its page copy starts once its injected
    // calls are done, beside the rest of the collect (engine/dump/copy_ahead.ts).
    // Where a fork snapshot is wanted and expected to be taken (snapshotFirst: beyond what
    // the copy ahead reads, COPY_AHEAD_MAX_BYTES, or below it), it keeps the copy out of the
    // freeze instead (fork_snapshot.ts).
    const copyAhead = deferWrites && !precopy && !parent && tree.processes.length === 1 &&
      !opts.include?.mapping && !preferSnapshot;
    // A fork snapshot of the process expected (fork_snapshot.ts): its pages are planned after the
    // thaw from the fork, and no page walk is started ahead (its mmap lock held would delay the
    // fork's). Its size as the estimate listed it, else its resident memory now.
    const snapshotLikely = (p: number) => {
      if (opts.leaveRunning !== true || precopy || parent || copyAhead) return false;
      const k = listed?.indexOf(p) ?? -1;
      const own = k >= 0 ? estimate?.each[k] : undefined;
      return forkSnapshotWanted(own?.bytes ?? residentBytes(p), own?.mappings ?? 0);
    };
    const collectedAll = tree.processes.map((p, i) =>
      collectProcess(
        p.pid,
        p.threads,
        p.children,
        fdLists[i],
        topology,
        refusals,
        sockets,
        undefined,
        flagsCheck,
        // Planned below (the walks not taken dropped at the thaw or on failure); no walk
        // ahead where the pre-copy's or the parent's walk of this freeze finds the pages
        // (at 2 GiB a second walk of ~50 ms of CPU beside the collect, never used).
        !precopy?.processes.get(p.pid)?.scans && !parent?.scanningPids.has(p.pid) &&
          !snapshotLikely(p.pid),
        copyAhead
          ? (maps) => startCopyAhead(p.pid, maps, opts.leaveRunning === true)
          : precopy
          ? () => precopy!.startValidation(p.pid) // its walk, once no injected call waits for it
          : undefined,
        shmemFaults[i] ? undefined : (maps) => shmemFaults[i] = mapShmemPages(p.pid, maps),
      )
    );
    // The thaw sets back only the threads the collect found at an EINTR exit (engine/task/eintr.ts).
    collectedAll.forEach((c, i) => {
      const p = tree!.processes[i];
      p.eintrStops = c.eintrStops;
      // A process stopped before the freeze keeps the EINTR its own stop made.
      if (p.groupStop !== undefined) keepGroupStopEintr(c.image.threads, c.eintrStops);
    });
    for (const c of collectedAll) precopy?.fixRestarts(c.image);
    for (const c of collectedAll) {
      // A signal to handle ends the call as the kernel would (EINTR or restarted).
      settleSignalledCalls(c.image, refusals);
      // Threads still in restart_syscall: their original call, from the restart block.
      resolveRestartSyscalls(c.image, refusals);
    }
    // Queued socket and pipe bytes are sent again by whichever process creates the socket or pipe.
    const socketData = collectedAll.reduce(
      (n, c) => n + fdQueueBytes(c.image.fds) + pipeQueueBytes(c.image.fds),
      0,
    ) + sockets.sharedQueueBytes();
    // A mapping policy may look at the flags.
    if (opts.include?.mapping) {
      await awaitVmFlags(collectedAll.map((c) => ({ collected: c, image: c.image })));
    }
    const described = tree.processes.map((p, i) => {
      const collected = collectedAll[i];
      const size = bootstrapSizeFor(
        collected.vmas.length,
        collected.image.fds.length,
        collected.image.threads.length,
        socketData + inetQueueBytes(collected.image.fds) + pendingSignalBytes(collected.image),
      );
      const start = chooseBootstrap(collected.vmas, size);
      const image: ProcessImage = {
        ...collected.image,
        ...collectLifecycle(p, collected.image, tree!, refusals),
        excluded: [],
        bootstrap: { start: `0x${start.toString(16)}`, size },
        dumpId,
      };
      applyIncludes(image, opts.include);
      pausePoint("collect");
      return { p, collected, image, start, size };
    });
    // A child in its parent's fd table holds no fds of its own: first (engine/task/shared_tables.ts).
    planSharedTables(described.map((d) => d.image), refusals);
    markSharedDescriptions(
      described.map((d, i) => ({ pid: d.p.pid, fds: d.image.fds, proc: fdLists[i] })),
    );
    // Fds in flight in unix socket queues: a standalone one is described like a tree fd.
    resolveInFlightFds(
      described.map((d, i) => ({ pid: d.p.pid, fds: d.image.fds, proc: fdLists[i] })),
      (pid, f) => {
        const file = describeFd(pid, f);
        // An IPv4/IPv6 socket only a message holds is read like the tree's (kept until the end);
        // a connection's repair-mode read has a helper process stand by to undo it.
        if (file.kind === "socket" && !file.socket?.unix) {
          sockets.collect(pid, [file], helperRepairGuard);
        }
        return file;
      },
    );
    checkSharedTables(described.map((d) => d.p.pid), refusals);
    checkSharedSemUndo(
      described.map((d) => ({ pid: d.p.pid, threads: d.image.threads.length })),
      refusals,
    );
    for (const d of described) checkProcessPaths(d.image, refusals);
    checkUnattachedLocks(described.map((d) => d.image), refusals, await locks);
    checkFdOwners(described.map((d) => d.image), refusals);
    checkExitSignals(described.map((d) => d.image), refusals);
    checkPdeathForkers(described.map((d) => d.image), refusals);
    tree.processes.forEach((p, i) => {
      refuseUnreachableShmem(p.pid, shmemFaults[i], refusals);
      markShmemObjects(p.pid, described[i].image.mappings, shmemFaults[i], refusals);
    });
    refuseSharedAcrossTree(described.map((d) => d.image), refusals);
    sockets.finish(refusals);
    const ghosts = await collectGhosts(described.map((d) => d.image), tmp, refusals);
    checkInodeFlags(described.map((d) => d.image), refusals);
    pausePoint("ghosts");
    await awaitVmFlags(described); // read beside the collect (engine/dump/vm_flags.ts)
    const sysvShm = collectSysvShm(described.map((d) => d.image), tmp, refusals);
    // Objects of the host's IPC namespace it uses (a namespace of its own is saved whole).
    const sysvUsed = opts.namespaceExtras?.ipc ? [] : collectSysvUsed(
      described.map((d) => d.image),
      new Set(sysvShm.map((s) => s.shmid)),
      refusals,
    );
    collectMqueueFds(described.map((d) => d.image), refusals);
    refuseOtherProcFds(described.map((d) => d.image), refusals);
    refuseTreeSocketPaths(described.map((d) => d.image), refusals);
    refuseStatefulDevices(described.map((d) => d.image), refusals);
    checkAutogroups(described.map((d) => d.image), refusals);
    const namespaces = opts.namespaceExtras &&
      (await importModule<typeof import("../pidns/extras.ts")>(PIDNS_EXTRAS_MODULE))
        .collectNamespaceExtras(opts.namespaceExtras, tmp, sysvShm, refusals);
    // Memory a child shares with its parent is stored once, in the parent's image.
    const inheritance = planInheritance(
      described.map((d) => ({ image: d.image, vmas: d.collected.vmas })),
      refusals,
      await smapsAhead,
    );
    const checkRestorable = () =>
      compileTree(described.map((d) => d.image), {
        pathOf: (pid) => `${finalDir}/${pid}.elf`,
        rootPid: pid,
        ghosts,
        checkOnly: true, // only the verdict: the programs are sized, not encoded
      }, refusals);
    // A tree left running is never killed: unless something is refused already
    // (then every refusal is reported at once, before any page is read), the
    // compile check runs after the thaw instead of in the frozen time.
    const checkAfterThaw = opts.leaveRunning === true && refusals.problems.length === 0;
    if (!checkAfterThaw) checkRestorable();
    // Pre-copies of processes gone since: their files must not stay in the image.
    for (const gone of [...(precopy?.processes.keys() ?? [])]) {
      if (described.some((d) => d.p.pid === gone)) continue;
      await Deno.remove(precopy!.processes.get(gone)!.path).catch(() => {});
      precopy!.drop(gone);
    }
    // Awaited only when there is one: from the collect's last wait to the thaw, no turn of the
    // microtask queue (one cost ~0.6 ms of the freeze off cryo's CPU in threads-64's timeline).
    if (parent) await parent.scanned(); // the final dump's page table walks (engine/dump/parent.ts)
    if (precopy) await precopy.validated(); // the same for a pre-copy (engine/dump/precopy.ts)
    let reused = 0, parentBytes = 0;
    // A tree frozen once and left running: each process's pages may come from a fork of its own
    // (fork_snapshot.ts), the room for their copies shared (`forkedBytes` taken so far).
    const snapshots = opts.leaveRunning === true && !precopy && !parent;
    let forkedBytes = 0;
    /** The copies run after the thaw: from forks, or of buffers all read ahead in the freeze. */
    const copiesAfterThaw: (() => Promise<void>)[] = [];
    /** The processes to fork, all at once after the loop (fork_snapshot.ts `takeSnapshots`). */
    const forking: {
      pid: number;
      areas: Parameters<typeof takeSnapshots>[0][number]["areas"];
      statuses: Parameters<typeof takeSnapshots>[0][number]["statuses"];
      took: (snap: ForkSnapshot) => void;
      frozenCopy: () => Promise<void>;
    }[] = [];
    for (const { p, collected, image } of described) {
      const path = `${tmp}/${p.pid}.elf`;
      let pre = precopy?.processes.get(p.pid);
      /** Its bootstrap blob and image writer (the blob may drop the pre-copy: see `pre`). */
      const makeWriter = async () => {
        // planInheritance may have moved (and grown) the bootstrap.
        const start = BigInt(image.bootstrap.start);
        const size = image.bootstrap.size;
        const boot = new BootstrapBuilder(start);
        const standalone = messageProgram(
          boot.program(),
          `this is a cryo checkpoint image of process ${p.pid} (${image.comm}); restore it with:\n` +
            `  deno run -A cli.ts restore ${finalDir}\n`,
          1,
        );
        const blob = boot.finish({ restore: standalone });
        if (pre && BOOTSTRAP_FILE_OFFSET + blob.blob.length > pre.pagesStart) {
          precopy!.drop(p.pid); // the blob grew past the room left for it: copy everything now
          pre = undefined;
        }
        const made = await ImageWriter.create(path, {
          bootstrapStart: start,
          bootstrapSize: size,
          blob: blob.blob,
          entry: blob.entryStandalone,
          ...(pre ? { pages: { start: pre.pagesStart, end: pre.pagesEnd } } : {}),
        });
        writers.push(made);
        return made;
      };
      // Where a fork snapshot may be taken (no pre-copy, so no `pre`), after the choice: made
      // after the thaw when one is (for 10,000 mappings 1 to 3 ms out of the freeze).
      let writer = snapshots ? undefined : await makeWriter();
      // A droppable area's pages are not saved (isDroppable).
      const policies = image.mappings.map((m) =>
        m.excluded || isDroppable(m) ? "none" : pagePolicy(m.kind)
      );
      const source = pre ?? parent?.processes.get(p.pid);
      // The plan of the copy made ahead when it is this one (copy_ahead.ts), else made here.
      // The core notes need no page records: encoded in the copy's first wait for the reads
      // ahead, if it has one (cryo's thread idle there), else by the writer after the thaw.
      let coreNotes: Uint8Array<ArrayBuffer> | undefined;
      const ahead = takeCopyAhead(
        p.pid,
        collected.vmas,
        policies,
        !image.inheritsMemory && !source,
        () => coreNotes = encodeCoreNotes(image),
      );
      // Frozen once and left running, its pages not read ahead in the freeze (copy_ahead.ts):
      // they may be read from a fork after the thaw (fork_snapshot.ts), and planned then from
      // the fork's page tables (the target's entries as of the freeze), out of the freeze.
      // Taken for the process's resident anonymous and shared memory (RssAnon + RssShmem), less
      // the pages a child shares copy-on-write with its parent (stored in the parent's image).
      const resident = !ahead && snapshots && !pre && !source
        ? residentBytes(p.pid) - inheritance.sharedBytesOf(p.pid)
        : 0;
      // An inherited mapping is read only where it differs from the parent's (none: not read).
      const readPolicies = image.inheritsMemory
        ? policies.map((x, k) => inheritance.runs(p.pid, k)?.length === 0 ? "none" : x)
        : policies;
      const room = (snapshotRooms.get(p.pid) ?? snapshotRooms.get(pid) ?? 0) - forkedBytes;
      // Its fork is taken after this loop, with the other processes' (`forking`): until then
      // `snap` is unknown; a fork that could not be taken is copied frozen there.
      const forked = resident > 0 && forkSnapshotWanted(resident, image.mappings.length) &&
        !image.threads.some((t) => t.seccomp?.mode) &&
        resident <= room && snapshotFits(image.mappings, readPolicies);
      let snap: ForkSnapshot | undefined;
      if (forked) forkedBytes += resident; // (its room counted taken even if the fork fails)
      else writer ??= await makeWriter();
      const planOf = (from: number) =>
        ahead?.plan ?? planPages(
          from,
          collected.vmas,
          policies,
          // (No lookup per mapping for a process that inherits nothing: engine/memory/inherit.ts.)
          image.inheritsMemory ? (k) => inheritance.runs(p.pid, k) : () => undefined,
          source,
        );
      let plan!: ReturnType<typeof planPages>;
      let total = 0;
      let streamer!: MemoryStreamer;
      let deferred: DeferredPageWriter | undefined;
      const held: { entry?: (typeof pending)[number] } = {}; // its entry, once made
      /** The copy's plan, writer and streamer (in the freeze, or after the thaw from a snapshot). */
      const prepare = (made: ReturnType<typeof planPages>) => {
        plan = made;
        total = plan.readBytes;
        reused += plan.reusedBytes;
        parentBytes += plan.parentBytes;
        const w = writer!; // (made by then: before the snapshot's choice, or after the thaw)
        deferred = deferWrites
          ? new DeferredPageWriter(pageBufferBytes(total), w.partialPath, total, true)
          : undefined;
        // A snapshot's pages copied by syscall tables on two threads (snapshot_lanes.ts).
        const lanes = snap && !deferred && snapshotLanesWanted(total)
          ? new SnapshotLaneWriter(snap.pid, w.partialPath, !sync)
          : undefined;
        const out = deferred ?? lanes ??
          new BufferPageWriter(pageBufferBytes(total), w.partialPath);
        streamer = new MemoryStreamer(snap?.pid ?? p.pid, out, (n) => w.reservePages(n));
        if (lanes) streamer.deferReads = (v, a, n, at) => lanes.record(v, a, n, at);
        if (ahead) streamer.ahead = ahead.buffer;
        // A pinning read (process_vm_readv) of a page shared with the fork would copy it first.
        if (snap) streamer.viaMemFile = true;
        // The manifest's pageBlocks (engine/image/page_blocks.ts): blocks aligned to the page data's start.
        streamer.blockCrcs = [];
        if (pre) streamer.blockPhase = pre.pagesEnd - w.pagesStart;
        streamers.push(streamer);
        if (held.entry) Object.assign(held.entry, { writer: w, streamer, deferred });
      };
      if (!forked) prepare(planOf(p.pid));
      opts.onEvent?.({
        type: "process",
        pid: p.pid,
        mappings: collected.vmas.length,
        bytesToSave: forked ? resident : total,
      });
      let done = 0, told = -1;
      let runsToPages = () => {};
      const copy = async () => {
        // Told at the first run, at each MiB and at the end (not at each of 10,000 runs).
        runsToPages = savePlanned(
          plan,
          collected.vmas,
          image.mappings,
          streamer,
          writer!,
          (n) => {
            done += n;
            pausePoint("pages");
            if (told >= 0 && done - told < PAGES_EVENT_BYTES && done !== total) return;
            told = done;
            opts.onEvent?.({ type: "pages", pid: p.pid, bytes: done, totalBytes: total });
          },
        );
        await streamer.finish();
        dropCopyAhead(); // (its buffers not taken back to the pool)
      };
      /**
       * The copy in the freeze of a process that runs on after it: no pinning read of a page
       * it shares copy-on-write (memory.ts `pinCheck`), which would leave it a copy of that page.
       */
      const copyLeftRunning = async () => {
        streamer.viaMemFile = true;
        using pagemap = new PagemapReader(p.pid);
        streamer.pinCheck = pagemap;
        try {
          await copy();
        } finally {
          streamer.pinCheck = undefined;
        }
      };
      // Every page read ahead, in the freeze (copy_ahead.ts `readAll`: nothing left for the
      // streamer to read from the process): their writes, sums and records after the thaw.
      if (forked) {
        forking.push({
          pid: p.pid,
          areas: collected.vmas, // (the areas: no maps text read for the sites)
          statuses: collected.statuses, // (no status read to open its main thread)
          took: (s) => {
            snap = s;
            copiesAfterThaw.push(async () => {
              try {
                writer = await makeWriter();
                prepare(planOf(s.pid)); // the fork's page tables: the target's as of the freeze
                await copy();
              } finally {
                killSnapshot(s); // (its exit runs beside the next copy and the notes)
              }
            });
          },
          // No fork: copied frozen, as the `leaveRunning` branch below.
          frozenCopy: async () => {
            writer = await makeWriter();
            prepare(planOf(p.pid));
            await copyLeftRunning();
          },
        });
      } else if (ahead && deferred && opts.leaveRunning && ahead.readAll()) {
        streamer.noReads = true;
        copiesAfterThaw.push(copy);
      } else if (opts.leaveRunning) await copyLeftRunning();
      else await copy();
      held.entry = {
        writer: writer!, // (from a snapshot: made after the thaw, set by prepare)
        image,
        streamer, // (from a snapshot: set by prepare after the thaw)
        pre,
        overwritten: pre ? plan.pieces.flat().filter((x) => x.source === "overwrite") : [],
        deferred,
        coreNotes,
        runsToPages: () => runsToPages(),
      };
      pending.push(held.entry);
      images.push(image);
    }
    // The tree's forks together: each one's page table copy overlaps the others'.
    const taken = takeSnapshots(forking);
    for (const [i, f] of forking.entries()) {
      const snap = taken[i];
      if (snap) {
        forks.push(snap);
        f.took(snap);
      } else await f.frozenCopy();
    }
    // Pages taken from a pre-copy read nothing now: make sure no process died meanwhile
    // (looked at with no await: see above).
    const died = goneNow(tree);
    if (died.length) {
      throw new TargetError(
        `process ${died.join(", ")} died while being checkpointed; nothing was written`,
      );
    }
    // The kernel's vdso, as the root maps it; a root that unmapped its [vdso] (valgrind does)
    // says nothing of the kernel's code: cryo's own, the same kernel's, does.
    const rootVdso = readVdso(pid, described.find((d) => d.p.pid === pid)?.collected.vmas);
    const vdsoCopy = rootVdso.code.length ? rootVdso : readVdso(Deno.pid);
    const xsaveBytes = xsaveSize(pid);
    let thawed = false;
    let freezeSeconds = 0;
    if (opts.leaveRunning) {
      // Every page is copied: the tree need not wait for the images to be
      // completed, synced and checksummed.
      sockets.checkUnchanged();
      sockets.releaseRunning();
      thawTree(tree);

      freezeSeconds = (performance.now() - tree.frozenAt) / 1000;
      // The tree runs on: its connections take their segments again.
      if (earlyLock && "connections" in earlyLock.outcome) unlockConnections(dumpId);
      if (precopy) pausePoint("precopy-release");
      // Lifts the tracking's protections with the tree running (on the copy lane's thread
      // when there is one: the notes are written meanwhile; the manifest waits for it).
      releasing = precopy ? releasePrecopy(precopy) : undefined;
      thawed = true;
      chain.frozen = false;
      opts.onEvent?.({ type: "thawed", freezeSeconds });
    }
    // The pages from each fork, the tree running; each fork is killed after its copy and
    // reaped at the end, in its parent too (fork_snapshot.ts). Or the buffers read ahead in
    // the freeze, streamed now.
    for (const copy of copiesAfterThaw) await copy();
    closeStatusesAhead(); // (each status was taken by the collect: the fds are closed after the thaw)
    for (const p of pending) p.runsToPages(); // the page records, once the tree runs again
    dropScansAhead(); // page walks started ahead and not planned (engine/dump/scan_ahead.ts)
    dropMapsAhead(); // maps reads started at the freeze and not taken (engine/dump/vm_flags.ts)
    // The vdso's digest runs on another thread meanwhile.
    const hostPending = hostFacts(images[0], vdsoCopy, xsaveBytes);
    hostPending.catch(() => {}); // awaited below, or dropped with a failed dump
    // The pre-copied pages' CRCs, the blocks written over read back (on another thread: precopy.ts).
    const preCrcs = pending.map((p) => p.pre?.pagesCrc(p.writer.partialPath, p.overwritten));
    for (const c of preCrcs) c?.catch(() => {}); // awaited below, or dropped with a failed dump
    if (checkAfterThaw) checkRestorable();
    const host = await hostPending;
    for (const [i, { writer, image, streamer, pre, deferred, coreNotes }] of pending.entries()) {
      pausePoint("notes");
      await deferred?.settled();
      const preCrc = pre ? await preCrcs[i]! : 0;
      const summary = await writer.finish(image, { checksum: false, sync, coreNotes });
      // The page data's CRC was computed while streaming: read only the rest.
      const pagesCrc = pre
        ? crc32Combine(
          preCrc,
          streamer.crc32,
          writer.pagesStart + summary.pagesBytes - pre.pagesEnd,
        )
        : streamer.crc32;
      const checksum = await checksumAround(
        summary.path,
        writer.pagesStart,
        writer.pagesStart + summary.pagesBytes,
        pagesCrc,
        summary.tail, // the notes' CRC from the writer: not read back
      );
      writers = writers.filter((w) => w !== writer);
      pausePoint("written");
      opts.onEvent?.({ type: "written", pid: image.pid, path: summary.path, size: summary.size });
      pagesBytes += summary.pagesBytes;
      imageBytes += summary.size;
      mappingCount += image.mappings.length;
      entries.push({
        pid: image.pid,
        ppid: image.ppid,
        file: `${image.pid}.elf`,
        size: summary.size,
        checksum,
        threads: image.threads.map((t) => t.tid),
        comm: image.comm,
        ...streamedPageBlocks(streamer, writer.pagesStart, summary.pagesBytes, pagesCrc, pre),
      });
    }
    await releasing;
    const stats: DumpStats = {
      processes: images.length,
      threads: threadCount,
      mappings: mappingCount,
      pagesBytes,
      imageBytes,
      freezeSeconds: freezeSeconds + (precopy?.frozenSeconds ?? 0),
      dumpSeconds: 0,
      ...(inheritance.sharedBytes ? { sharedBytes: inheritance.sharedBytes } : {}),
      ...(parent ? { parentReusedBytes: parentBytes } : {}),
      ...(precopy
        ? {
          precopy: {
            bytes: precopy.bytes,
            frozenSeconds: precopy.frozenSeconds,
            reusedBytes: reused,
          },
        }
        : {}),
    };
    const manifest: Manifest = {
      kind: "cryo-image",
      formatVersion: IMAGE_FORMAT_VERSION,
      toolVersion: TOOL_VERSION,
      createdAt: new Date().toISOString(),
      dumpId,
      host,
      rootPid: pid,
      processes: entries,
      stats,
      ...(refusals.usedOptIns.length ? { optIns: refusals.usedOptIns } : {}),
      ...(ghosts.length ? { ghosts } : {}),
      ...(sysvShm.length ? { sysvShm } : {}),
      ...(sysvUsed.length ? { sysvUsed } : {}),
      ...(opts.pidNamespace ? { pidNamespace: opts.pidNamespace } : {}),
      ...(namespaces ? { namespaces } : {}),
      ...chain.manifestFields(parent, tree),
    };
    stats.dumpSeconds = (performance.now() - t0) / 1000;
    if (!thawed) stats.freezeSeconds = (performance.now() - tree.frozenAt) / 1000;
    if (!thawed) sockets.checkUnchanged();
    // Not synced: synchronous ops (each async one is a thread hand-off before the command exits).
    if (sync) await writeManifest(tmp, manifest, sync);
    else writeManifestNoSync(tmp, manifest);
    pausePoint("manifest");
    await fsyncDir(tmp, sync);
    pausePoint("fsync");
    try {
      Deno.removeSync(finalDir); // an empty directory given by the user
    } catch { /* none */ }
    Deno.renameSync(tmp, finalDir);
    await fsyncDir(dirname(finalDir), sync);
    chain.done(manifest, finalDir, tree);
    pausePoint("rename");
    let networkLock: LockOutcome | undefined;
    if (!thawed) {
      const outside = sockets.outsideConnections();
      const netns = outside.length ? netNamespaceOf(pid) : undefined; // read while it lives
      // Locked before the sockets were read, if every connection kept was (else locked anew).
      const earlyLocked = earlyLock !== undefined && "connections" in earlyLock.outcome;
      const early = earlyLocked && outside.length &&
          outside.every((c) => earlyLock!.keys.has(segmentKey(asLocked(c))))
        ? earlyLock!.outcome
        : undefined;
      if (earlyLocked && !early) unlockConnections(dumpId);
      const lock = (): LockOutcome | undefined =>
        !outside.length
          ? undefined
          : early
          ? early
          : opts.networkLock === false
          ? { skipped: "not asked for" }
          : opts.pidNamespace
          // Its engine's mounts (a BPF file system mounted there) go with the namespace.
          ? { skipped: "a tree in a pid namespace of its own (cryo launch) is not locked yet" }
          : lockConnections(netns, dumpId, outside);
      sockets.enterRepairForKill(); // closing them once the tree is gone sends nothing
      if (opts.beforeKill) {
        // Killed from outside right after (engine/pidns/inner.ts).
        networkLock = lock();
        opts.beforeKill({
          dir: finalDir,
          manifest,
          stats,
          ...(networkLock ? { networkLock } : {}),
        });
      }
      killTree(tree);
      thawed = true;
      tree = undefined;
      if (early) keepForImage(dumpId); // (no longer the lock of a tree that runs on)
      // The tree is gone, its connections held by cryo's copies until released. Not locked
      // before the read (see above): locked now, so that a cryo killed before this point leaves
      // no lock on a tree that runs on (data that arrives meanwhile is seen below and fails the
      // dump).
      networkLock ??= lock();
      // Connections are closed in repair mode: the peers see nothing.
      const late = sockets.releaseAfterKill();
      if (late.length) {
        await Deno.remove(finalDir, { recursive: true }).catch(() => {});
        unlockConnections(dumpId);
        throw new CryoError(
          `${late.join("; ")}: data arrived after it was saved, while the tree was being killed; ` +
            `the image is removed and these connections were reset`,
        );
      }
      pausePoint("killed");
    }
    tree = undefined;
    for (const snap of forks.splice(0)) endSnapshot(snap);
    opts.onEvent?.({ type: "done", stats });
    const needed = inheritFdsNeeded(described.map((d) => d.image), pid);
    return {
      dir: finalDir,
      manifest,
      stats,
      ...(networkLock ? { networkLock } : {}),
      ...(needed.length ? { inheritFdsNeeded: needed } : {}),
    };
  } catch (e) {
    closeStatusesAhead();
    dropCopyAhead(); // (its ready buffers back to the pool once its reads are over)
    if (
      rootIsOurChild && e instanceof TraceeGoneError && e.tid === pid &&
      (e.status.kind === "exited" || e.status.kind === "signaled")
    ) {
      parkStatus({ ...e.status, pid });
    }
    await releasing?.catch(() => {});
    dropLanes(precopy);
    dropScansAhead();
    dropMapsAhead();
    precopy?.close();
    chain.failed(tree);
    for (const s of streamers) await s.abort();
    for (const w of writers) await w.abort().catch(() => {});
    const gone = tree ? await goneProcesses(tree, e) : [];
    sockets.releaseRunning();
    if (tree) unlockConnections(dumpId); // the tree goes on: its connections take segments again
    if (tree) thawTree(tree); // detaching an already resumed task is a harmless ESRCH
    for (const snap of forks.splice(0)) endSnapshot(snap); // (reaped in the targets once thawed)
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    if (gone.length && !(e instanceof TargetError || e instanceof UnsupportedError)) {
      throw new TargetError(
        `process ${gone.join(", ")} died while being checkpointed; nothing was written`,
      );
    }
    throw e;
  }
}
