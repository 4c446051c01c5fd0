/**
 * Collecting the description of one frozen process (everything but its
 * page data) from /proc, ptrace and injected syscalls.
 *
 * @module
 */

import { refuseIoWorkers } from "../task/io_workers.ts";
import { readThreadsHere, threadReadsAvailable } from "../../ffi/thread_reads.ts";
import { xsaveSize } from "../../ffi/ptrace.ts";
import { readCmdline, readDeletedCwdAttrs, readDirIds } from "../proc/misc.ts";
import { readLimits } from "../proc/limits.ts";
import { refuseCpuLimitUsed } from "../task/cpu_limit.ts";
import type { FdInfo, Mapping, ProcessImage } from "../model.ts";
import { Refusals } from "../support.ts";
import { mmFieldsOf, readStat } from "../proc/stat.ts";
import { type ProcStatus, readStatus } from "../proc/status.ts";
import { refuseSyscallUserDispatch } from "../task/syscall_dispatch.ts";
import { checkLandlock } from "../task/landlock.ts";
import { frozenRseqConfigs } from "../task/rseq.ts";
import { auxvToModel, readAuxv } from "../proc/auxv.ts";
import { devMajor, devMinor, type ProcFd, readFds } from "../proc/fds.ts";
import { areaNumbers, readMapFileIdentity } from "../proc/maps.ts";
import { readSmapsFlags, readSmapsFlagsOffThread, type SmapsArea } from "../proc/smaps_flags.ts";
import {
  completeFlagsOffThread,
  completeVmFlags,
  frozenMapsForFlags,
  mapsWithoutFlags,
  policyAreasOf,
  smapsOverlaps,
  startFrozenFlagsRead,
  type VmFlagsCheck,
} from "./vm_flags.ts";
import { fileIdentityOf, readProcLink, readProcText } from "../proc/io.ts";
import {
  EXTRA_SCRATCH,
  type InjectedThreadState,
  queryInjectedState,
  withInjection,
} from "./injected.ts";
import { startScanAhead } from "./scan_ahead.ts";
import { pumpCopyAhead } from "./copy_ahead.ts";
import { collectThread, sharedPending } from "./threads.ts";
import { reissueStopEintr, stoppedAtEintr } from "../task/eintr.ts";
import { bpfThreadStates, takeMlockFuture } from "./thread_state.ts";
import { threadStatuses } from "./thread_facts.ts";
import { taskFlagsOf } from "./task_flags.ts";
import { classifyVma, refusedMapping } from "./vmas.ts";
import { mappingRecord, takeDraftTexts, takeMappingDrafts } from "./mapping_drafts.ts";
import { setMappingColumns } from "../image/mapping_columns.ts";
import { collectPipe, pipeWidowed } from "../fds/pipe.ts";
import { collectUnixSockets } from "../fds/unix.ts";
import { queryFdOwners } from "../fds/owner.ts";
import { markDuplicates } from "../fds/descriptions.ts";
import type { InetSocketSession } from "../fds/inet_session.ts";
import { collectTimers, takeTimerSignals } from "../task/timers.ts";
import { collectTty } from "../fds/tty.ts";
import { collectDeadPidfd } from "../fds/pidfd.ts";
import { NSFS_LINK, ownNamespaceLink } from "../fds/nsfd.ts";
import { collectDeletedFifo } from "../fds/fifo.ts";
import { collectInotify } from "../fds/inotify.ts";
import { collectEpoll } from "../fds/epoll.ts";
import { refuseOutsideTracees, WAITABLE_STEP } from "../task/tracees.ts";
import { queryContinuedChildren } from "../task/continued.ts";
import {
  checkNamespaces,
  collectCgroups,
  collectThreadCgroups,
  refuseFrozenCgroup,
} from "../task/placement.ts";
import { collectTaskState, prepareTaskCollection, queryTaskState } from "../task/mod.ts";
import { collectCreds } from "../task/creds.ts";
import { processVmReadFully } from "../../ffi/process_vm.ts";
import {
  collectMemoryDetails,
  type MemoryProcessFlags,
  mlockProbeOutcome,
  mlockProbeSteps,
  probeMlockFuture,
} from "../memory/flags.ts";
import { collectAioRings } from "../memory/aio.ts";
import {
  finishMappingPolicies,
  planMappingPolicies,
  recordMappingPolicies,
} from "../memory/mempolicy.ts";

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** The description of a process before its pages are saved. */
export interface CollectedProcess {
  image: Omit<ProcessImage, "bootstrap">;
  /** Its areas as read at the freeze (maps lines), each with its VmFlags once they are read. */
  vmas: SmapsArea[];
  /**
   * Set when the VmFlags are still being read on another thread: settles
   * once they are in `vmas` and the image's mappings, with the process's
   * memory flags (the image's `memoryFlags`, which are not set before).
   * Awaited before anything reads the flags (engine/dump/vm_flags.ts).
   */
  vmFlags?: Promise<MemoryProcessFlags>;
  /**
   * Its threads stopped at the EINTR exit of a call a stop ends so
   * (engine/task/eintr.ts `stoppedAtEintr`): the freeze's thaw sets back
   * these alone (engine/dump/freeze.ts `FrozenTree`).
   */
  eintrStops: number[];
  /** Each thread's status as the collect took it in this freeze (the fork snapshot's opener reads the main thread's). */
  statuses: ReadonlyMap<number, ProcStatus>;
}

/** The image of fd `f` of process `pid` (kind, flags, offset, kind extras). */
export function toFdInfo(pid: number, f: ProcFd, topology: PipeTopology): FdInfo {
  const flags = f.info.flags ?? 0;
  const O_CLOEXEC = 0o2000000;
  const O_PATH = 0o10000000;
  let restore = "open";
  let kind = f.kind;
  // (A removed directory stays a directory: a ghost of kind "dir", engine/fds/ghost.ts.)
  // An O_PATH fd of a FIFO holds no pipe: reopened by its path like a link's or a socket file's.
  if (kind === "fifo" && flags & O_PATH) kind = "path";
  if (kind === "tty") restore = "inherit";
  else if (kind === "pipe" || kind === "fifo") restore = pipeRestore(f.target, topology);
  else if (kind === "socket") restore = f.fd <= 2 ? "inherit" : "socket";
  else if (kind === "chardev" && f.target.startsWith("/dev/pts/")) restore = "inherit";
  // A pipe whose other end is gone comes back as it is, not from the restorer's stdio.
  if (kind === "pipe" && restore === "inherit" && pipeWidowed(pid, f.fd, flags)) {
    restore = (topology.get(f.target)?.pids.size ?? 1) > 1 ? "tree" : "process";
  }
  const extra: Record<string, string> = {};
  for (const [k, v] of Object.entries(f.info.extra ?? {})) {
    extra[k] = Array.isArray(v) ? v.join("\n") : String(v);
  }
  // Bytes buffered in a pipe that comes back (alone or shared in the tree) are kept.
  if (restore === "process" || restore === "tree" || kind === "fifo") {
    Object.assign(extra, collectPipe(pid, f.fd, flags));
  }
  if (kind === "fifo" && f.target.endsWith(" (deleted)")) {
    Object.assign(extra, collectDeletedFifo(pid, f.fd));
  }
  if (kind === "unknown" && NSFS_LINK.test(f.target)) {
    const own = ownNamespaceLink(pid, f.target);
    if (own) extra["ns-own"] = own;
  }
  if (kind === "pidfd" && extra["Pid"]?.trim() === "-1") {
    Object.assign(extra, collectDeadPidfd(pid, f.fd), { "pidfd-ino": String(f.stat.ino) });
  }
  if (kind === "tty") {
    Object.assign(extra, collectTty(pid, f.fd, devMajor(f.stat.rdev), devMinor(f.stat.rdev)));
  }
  return {
    fd: f.fd,
    kind,
    target: f.target,
    flags: flags & ~O_CLOEXEC,
    cloexec: (flags & O_CLOEXEC) !== 0,
    pos: Number(f.info.pos ?? 0),
    mntId: Number(f.info.mntId ?? 0),
    ...(f.file ? { file: f.file } : {}),
    extra,
    restore,
  };
}

/**
 * The image of fd `f` of process `pid` on its own, a unix socket with its
 * state (fds in flight, engine/fds/unix_scm.ts); a socket sock_diag does
 * not know is left without state.
 */
export function describeFd(pid: number, f: ProcFd): FdInfo {
  const info = toFdInfo(pid, f, new Map());
  collectUnixSockets(pid, [info], new Refusals());
  return info;
}

/** Who holds the ends of each pipe of the tree. */
export type PipeTopology = Map<string, { modes: number; pids: Set<number> }>;

/**
 * Maps each pipe (pipe:[ino]) to the access modes its fds have in the tree
 * (bit 1 read, bit 2 write) and the processes holding it.
 */
export function pipeTopology(fdLists: { pid: number; fds: ProcFd[] }[]): PipeTopology {
  const out: PipeTopology = new Map();
  for (const { pid, fds } of fdLists) {
    for (const f of fds) {
      if (f.kind !== "pipe" && f.kind !== "fifo") continue;
      const mode = (f.info.flags ?? 0) & 3;
      const entry = out.get(f.target) ?? { modes: 0, pids: new Set<number>() };
      entry.modes |= mode === 2 ? 3 : mode === 0 ? 1 : 2;
      entry.pids.add(pid);
      out.set(f.target, entry);
    }
  }
  return out;
}

/**
 * How a pipe end comes back: "process" (both ends in this one process:
 * re-created), "tree" (ends in several processes of the tree: not yet
 * supported), "inherit" (it leads out of the tree: the restorer's stdio).
 */
function pipeRestore(target: string, topology: PipeTopology): string {
  const t = topology.get(target);
  if (!t || t.modes !== 3) return "inherit";
  return t.pids.size === 1 ? "process" : "tree";
}

/** Bytes at the end of the extra scratch for the mlockall probe's mincore (one byte used). */
const MLOCK_VEC_BYTES = 8;

/** Collects one frozen process. `fds` were read beforehand (tree-wide pipe analysis). */
export function collectProcess(
  pid: number,
  tids: number[],
  children: number[],
  fds: ProcFd[],
  topology: PipeTopology,
  refusals: Refusals,
  /** Reads the TCP/UDP sockets (and keeps connections in repair mode, see inet_session.ts). */
  sockets?: InetSocketSession,
  /** Mappings to use instead of reading smaps (a rehearsal, engine/dump/rehearsal.ts). */
  areas?: SmapsArea[],
  /** The check made before the freeze that lets VmFlags come from the BPF iterator (vm_flags.ts). */
  vmFlagsCheck?: VmFlagsCheck,
  /**
   * The caller plans the pages next and drops the walks not taken
   * (engine/dump/mod.ts): the page plan's walk may start ahead
   * (engine/dump/scan_ahead.ts). Otherwise none starts, and no fd stays open.
   */
  scanAhead = false,
  /**
   * Called with the mappings once the injected calls are done and the page
   * walk started ahead when asked (engine/dump/copy_ahead.ts starts the page
   * copy then; a pre-copy's validation its walk: engine/dump/precopy.ts).
   */
  onInjected?: (maps: SmapsArea[]) => void,
  /**
   * Called with the frozen process's areas as soon as the collect has them,
   * before any injected call and before any page walk starts (engine/dump/mod.ts
   * maps shared anonymous pages in then: engine/memory/shmem_pages.ts).
   */
  onMaps?: (maps: readonly SmapsArea[]) => void,
): CollectedProcess {
  checkNamespaces(pid, refusals);
  const cgroups = collectCgroups(pid);
  // The other threads' state from the BPF task iterator, when it serves (thread_state.ts).
  const bpfStates = tids.length > 1 ? bpfThreadStates(pid, tids) : undefined;
  // Threads in other cgroups than their process's: none to look for where every thread has
  // the main thread's css_set (the iterator's task->cgroups), else one read per thread.
  const mainCss = bpfStates?.cssSets.get(pid);
  const sameCgroups = mainCss !== undefined && mainCss !== 0n &&
    [...bpfStates!.cssSets.values()].every((c) => c === mainCss);
  const threadCgroups = sameCgroups ? [] : collectThreadCgroups(pid, tids, cgroups);
  // Before any injection, which a frozen cgroup would hold until its thaw.
  refuseFrozenCgroup(pid, cgroups);
  const stat = readStat(pid);
  // Each thread's status once (credentials, seccomp, masks, comm...): they hold while it is frozen.
  // Most threads' stand in from the iterator's records when trusted (thread_facts.ts).
  const statuses = threadStatuses(pid, tids, bpfStates);
  const status = statuses.get(pid) ?? readStatus(pid);
  prepareTaskCollection(pid, tids, statuses);
  // Landlock domains: from the iterator's records of this freeze, else read now (task/landlock.ts).
  checkLandlock(pid, tids, refusals, statuses, bpfStates?.records);
  // Before any injected syscall, which the dispatch could turn into a SIGSYS.
  refuseSyscallUserDispatch(pid, tids);
  // Before any injected syscall: one in an io_uring kernel thread never returns (task/io_workers.ts).
  refuseIoWorkers(pid, tids, statuses);
  // smaps (its area headers are the maps lines) walks every page table entry:
  // for a large resident set the areas come from maps (no page walk) and the
  // VmFlags from smaps read on another thread after the injected calls,
  // beside the rest of the collect (engine/dump/vm_flags.ts).
  // Smaller processes (or many small mappings) read smaps alone, in one pass.
  // First choice: maps and a BPF iterator's flags, no page walk (vm_flags.ts).
  // Its records are read on another thread after the injected calls (completeFlagsOffThread).
  const bpf = areas ? undefined : frozenMapsForFlags(pid, vmFlagsCheck);
  const overlap = !areas && !bpf && smapsOverlaps(stat.rss);
  const maps: SmapsArea[] = areas ?? bpf?.maps ??
    (overlap ? mapsWithoutFlags(pid) : readSmapsFlags(pid));
  onMaps?.(maps);
  // The areas with a NUMA policy of their own, when the iterator tells (else every one is asked).
  const policyAreas = bpf ? policyAreasOf(bpf) : undefined;
  // Everything read by injected syscalls, in one session (one scratch page).
  const { injected, posixTimers, credentials, aio, mempolicies, continuedChildren } = withInjection(
    pid,
    (s) => {
      // The first mapping policy reads go in the main thread's batch (engine/memory/mempolicy.ts).
      const policyQuery = planMappingPolicies(
        maps,
        policyAreas,
        s.scratch,
        EXTRA_SCRATCH.at,
        // (At most 128: 8 KiB more of the batch's table on the main thread's stack.)
        Math.min(128, (EXTRA_SCRATCH.bytes - MLOCK_VEC_BYTES) >> 2),
      );
      // Without the iterator's records, mlockall(MCL_FUTURE) is probed in the batch too
      // (mincore's byte in the extra scratch's last bytes: engine/memory/flags.ts).
      const mlockProbe = bpfStates ? undefined : mlockProbeSteps(
        pid,
        maps,
        s.scratch + BigInt(EXTRA_SCRATCH.at + EXTRA_SCRATCH.bytes - MLOCK_VEC_BYTES),
      );
      // Then whether any thread has a child or a tracee (engine/task/tracees.ts), then the probe.
      const extra = [...policyQuery.first, WAITABLE_STEP, ...mlockProbe?.steps ?? []];
      const state = queryInjectedState(s, tids, { bpf: bpfStates }, extra);
      const waitable = state.extraResults?.[policyQuery.first.length];
      refuseOutsideTracees(pid, tids, children, waitable, refusals);
      // (Its byte read before any other query writes the scratch page.)
      const probed = mlockProbe && state.extraResults
        ? mlockProbeOutcome(
          mlockProbe,
          state.extraResults.slice(policyQuery.first.length + 1),
          () => {
            const b = new Uint8Array(1);
            processVmReadFully(pid, mlockProbe.vec, b);
            return b[0];
          },
        )
        : "failed";
      // Read before any other query writes the scratch page.
      const mempolicies = finishMappingPolicies(
        s,
        policyQuery,
        state.extraResults?.slice(0, policyQuery.first.length),
      );
      const perThread = (f: (t: InjectedThreadState) => number) =>
        new Map([...state.threads].map(([tid, t]) => [tid, f(t)]));
      return {
        injected: {
          ...state,
          task: queryTaskState(
            s,
            tids,
            perThread((t) => t.pdeathsig),
            perThread((t) => t.timerSlackNs),
            state.processAttrs,
            new Map(
              [...state.threads].map((
                [tid, t],
              ) => [tid, {
                tsc: t.tsc,
                personality: t.personality,
                mempolicy: t.mempolicy,
                ...(t.speculation ? { speculation: t.speculation } : {}),
                ...(t.threadKeyring !== undefined ? { threadKeyring: t.threadKeyring } : {}),
              }]),
            ),
          ),
          // From the BPF task iterator when trusted, else probed (and compared: thread_state.ts).
          mlockFuture: takeMlockFuture(
            pid,
            state.mlockFuture,
            () => probed !== "failed" ? probed : probeMlockFuture(s),
          ),
        },
        posixTimers: collectTimers(s, tids, fds, refusals),
        credentials: collectCreds(s, tids, perThread((t) => t.securebits)),
        aio: collectAioRings(
          { pid, tid: pid, call: (nr, ...a) => s.call(pid, nr, ...a), scratch: s.scratch },
          refusals,
          maps, // read at this freeze; injected syscalls make no ring
        ),
        // Each mapping's own NUMA policy (mbind), by index in `maps` (engine/memory/mempolicy.ts).
        mempolicies,
        // Children whose continue report it has not collected (engine/task/continued.ts).
        continuedChildren: queryContinuedChildren(s, pid, children),
      };
    },
    statuses,
    maps,
  );
  // Started once the injected calls' own areas are gone: smaps lists the target's alone.
  const smaps = overlap ? readSmapsFlagsOffThread(pid) : undefined;
  // So is the iterator's read of the VmFlags (vm_flags.ts), beside the rest of the collect.
  if (bpf) startFrozenFlagsRead(bpf);
  // The page plan's walk, on another thread once no injected call writes (engine/dump/scan_ahead.ts).
  if (scanAhead && !areas) startScanAhead(pid, Math.max(4096, 2 * maps.length + 256));
  if (!areas) onInjected?.(maps);
  const owners = queryFdOwners(pid, fds.map((f) => f.fd));
  pumpCopyAhead(); // (begun once the walk ahead is over: copy_ahead.ts)
  // Every thread's ptrace and scheduling reads in one call on this (the tracer's) thread.
  const reads = threadReadsAvailable()
    ? readThreadsHere(tids, xsaveSize(pid), frozenRseqConfigs()) // (the freeze's rseq check's)
    : undefined;
  pumpCopyAhead();
  const task = collectTaskState(
    pid,
    tids,
    injected.task,
    refusals,
    statuses,
    reads,
    bpfStates,
    // Task flags (I/O flusher, MCE kill policy) from the iterator when trusted (no stat file per thread).
    taskFlagsOf(bpfStates),
  );
  // The smaps records are the dump's mappings as they are (no copy per mapping).
  const vmas = maps;
  // One object per mapping, built without spreads (10,000 mappings: this runs frozen).
  const mappings: Mapping[] = new Array(maps.length);
  // The hex text of the last end (the next area's start, when they touch) and of offset 0.
  let lastEnd = -1n, lastEndHex = "";
  // Records made before the freeze from the very maps text read at it (mapping_drafts.ts).
  const drafts = takeMappingDrafts(maps);
  // One statx per file for its change time, however many times it is mapped.
  const ctimes = new Map<string, string | undefined>();
  // The parse's numbers of each area's start and end (index for index, as the drafts),
  // kept beside the texts made of them: the note's encoder and the compile check read
  // them instead of parsing 20,000 texts again (engine/image/mapping_columns.ts).
  // Every area's texts were made with the drafts, before the freeze; a parse made at the
  // freeze has its texts made here.
  const numbers = areaNumbers(maps);
  const made = drafts && numbers ? takeDraftTexts(maps) : undefined;
  const startTexts: string[] = made?.start ?? (numbers ? new Array(maps.length) : []);
  const endTexts: string[] = made?.end ?? (numbers ? new Array(maps.length) : []);
  const fill = numbers !== undefined && made === undefined;
  // By forEach: no loop of 10,000 rounds for V8 to compile (engine/find_from.ts).
  maps.forEach((m, i) => {
    const draft = drafts?.[i];
    if (fill) {
      startTexts[i] = draft ? draft.start : m.start === lastEnd ? lastEndHex : hex(m.start);
      endTexts[i] = draft ? draft.end : hex(m.end);
    }
    if (draft) {
      const refused = refusedMapping(m);
      if (refused) {
        refusals.use(refused, `process ${pid} mapping ${draft.start}-${draft.end} (${m.path})`);
      }
      draft.vmFlags = m.vmFlags;
      const ring = aio.size ? aio.get(m.start) : undefined;
      if (ring) draft.aio = ring;
      mappings[i] = draft;
      lastEnd = m.end;
      lastEndHex = draft.end;
      return;
    }
    const kind = classifyVma(m);
    const file = kind === "file-private" || kind === "file-shared"
      ? readMapFileIdentity(pid, m, ctimes) ?? undefined
      : undefined;
    // Deleted files and memfds are saved by content (engine/fds/ghost.ts).
    const refused = refusedMapping(m);
    if (refused) {
      refusals.use(refused, `process ${pid} mapping ${hex(m.start)}-${hex(m.end)} (${m.path})`);
    }
    const start = numbers ? startTexts[i] : m.start === lastEnd ? lastEndHex : hex(m.start);
    const end = numbers ? endTexts[i] : hex(m.end);
    lastEnd = m.end;
    lastEndHex = end;
    const mapping = mappingRecord(m, kind, start, end, m.vmFlags, file);
    const ring = aio.size ? aio.get(m.start) : undefined;
    if (ring) mapping.aio = ring;
    mappings[i] = mapping;
  });
  if (numbers) {
    setMappingColumns(mappings, {
      start: numbers.start,
      startText: startTexts,
      end: numbers.end,
      endText: endTexts,
    });
  }

  if (mempolicies.size) recordMappingPolicies(pid, mappings, mempolicies, refusals);
  pumpCopyAhead();
  const details = () => collectMemoryDetails(pid, mappings, injected.mlockFuture, refusals);
  const memoryFlags = smaps || bpf ? {} : details();

  const fdInfos = fds.map((f) => toFdInfo(pid, f, topology));
  for (const f of fdInfos) if (owners.has(f.fd)) f.owner = owners.get(f.fd);
  markDuplicates(pid, fdInfos, fds);
  collectInotify(pid, fds, fdInfos, refusals);
  collectEpoll(pid, fds, fdInfos);

  collectUnixSockets(pid, fdInfos, refusals);
  // A connection is read in repair mode: a cryo killed then has the target switch it off, in
  // a session of its own (opened only for an established TCP connection; nothing mapped for it,
  // the flags' and pages' readers may be running).
  sockets?.collect(
    pid,
    fdInfos,
    (fd) => (fn) => withInjection(pid, (s) => s.withRepairUndo(fd, fn), statuses, maps, fn),
  );

  let exe: ProcessImage["exe"] = null;
  try {
    const path = readProcLink(pid, "exe");
    const proc = `/proc/${pid}/exe`;
    exe = fileIdentityOf(path.replace(/ \(deleted\)$/, ""), Deno.statSync(proc), proc);
  } catch { /* kernel thread or unreadable */ }

  // (Object.assign, not a spread: the record's XSAVE bytes are not enumerable, thread_xsave.ts.)
  const threads = tids.map((tid) =>
    Object.assign(
      collectThread(pid, tid, injected.threads.get(tid)!, statuses.get(tid), reads?.get(tid)),
      task.threads.get(tid),
    )
  );
  // The main thread first.
  threads.sort((a, b) => (a.tid === pid ? -1 : b.tid === pid ? 1 : a.tid - b.tid));
  const shared = sharedPending(pid);
  const eintrStops = stoppedAtEintr(threads); // (before reissueStopEintr marks them)
  reissueStopEintr(threads, shared); // engine/task/eintr.ts
  takeTimerSignals(posixTimers, [shared, ...threads.map((t) => t.pending)]);
  for (const t of threads) t.creds = credentials.threads.get(t.tid);
  refusals.use("task.creds", `process ${pid}`);
  refusals.use("task.caps", `process ${pid}`);
  const rlimits = readLimits(pid);
  refuseCpuLimitUsed(pid, rlimits, stat.utime + stat.stime, refusals); // engine/task/cpu_limit.ts

  const cwd = readProcLink(pid, "cwd");
  return {
    vmas,
    image: {
      pid,
      ppid: stat.ppid,
      pgid: stat.pgrp,
      sid: stat.session,
      comm: stat.comm,
      exe,
      cwd,
      root: readProcLink(pid, "root"),
      dirIds: readDirIds(pid),
      cwdAttrs: readDeletedCwdAttrs(pid, cwd),
      umask: status.umask ?? 0o022,
      personality: parseInt(readProcText(pid, "personality").trim(), 16),
      cmdline: readCmdline(pid),
      creds: {
        uid: status.uid,
        gid: status.gid,
        groups: status.groups,
        capEff: hex(status.capEff),
      },
      mm: mmFieldsOf(stat, injected.brk),
      auxv: auxvToModel(readAuxv(pid)),
      rlimits,
      mappings,
      threads,
      sigactions: injected.sigactions,
      sharedPending: shared,
      itimers: injected.itimers,
      fds: fdInfos,
      children,
      excluded: [],
      ...(posixTimers.length ? { posixTimers } : {}),
      ctty: { ttyNr: stat.ttyNr, fgPgrp: stat.tpgid },
      cgroups,
      ...(threadCgroups.length ? { threadCgroups } : {}),
      attrs: task.attrs,
      ...(Object.keys(memoryFlags).length ? { memoryFlags } : {}),
      ...(continuedChildren.length ? { continuedChildren } : {}),
    },
    ...(smaps ? { vmFlags: completeVmFlags(pid, maps, mappings, smaps, details) } : {}),
    ...(bpf ? { vmFlags: completeFlagsOffThread(bpf, mappings, details) } : {}),
    eintrStops,
    statuses,
  };
}

export { readFds };
