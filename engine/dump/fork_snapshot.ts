/**
 * The fork snapshot of `dump --leave-running` frozen once: once the
 * collect has read all it needs from the frozen process, its main
 * thread is made to run a `clone` (crash-safe injection,
 * engine/dump/injected.ts) whose child shares every private page with it
 * copy-on-write; the tree is thawed at once and the planned pages are read
 * from the child instead, which never runs.
 *
 * The child (ffi/fork_snapshot.ts): exit signal 0, the fd table shared
 * (`CLONE_FILES`: it holds no copy of a pipe's write end or a socket), traced by cryo from birth (`CLONE_PTRACE`: the kernel stops
 * it before it reaches user mode), its stack at a frame of its own whose
 * registers run `exit(0)`: a cryo killed before it told the child to die
 * with it (`PTRACE_O_EXITKILL`, set at its first stop) lets it exit without
 * running a line of the target's code. The scratch space and the main
 * thread's injection frame (below its red zone) are written back into the
 * child with the target's bytes, so the child's memory is the target's at
 * the freeze.
 *
 * After the copy the child is killed and reaped by cryo (its tracer), which
 * leaves a zombie of exit signal 0 to its parent (no SIGCHLD, invisible to
 * waits without `__WALL`/`__WCLONE`); the target's main thread is stopped
 * again for an injected `waitid(P_PID, child, WEXITED | __WALL | WNOHANG)`
 * that reaps it in the target.
 *
 * Only where the child holds the pages faithfully: every planned mapping
 * private (no shared memory, hugetlb, VM_IO/PFNMAP), no MADV_DONTFORK or
 * MADV_WIPEONFORK mapping, no userfaultfd registration (a fork event to a
 * monitor), no seccomp filter (a filter could kill the process at the
 * clone), the target in cryo's pid namespace, memory for a copy of every
 * planned page in its memory cgroup and the system ({@link memoryRoom}), crash-safe injection in its
 * main thread with room on its stack. Any failure of the clone (RLIMIT_NPROC,
 * a pids cgroup, ENOMEM) leaves the dump to copy frozen as before.
 *
 * Taken from {@link SNAPSHOT_MIN_BYTES} of resident memory (the pages are
 * planned after the thaw, from the child's page tables: engine/dump/mod.ts); `CRYO_FORK_SNAPSHOT=1` at any
 * size, `=0` never (docs/PERFORMANCE.md, ninth pass, branch forksnap).
 *
 * @module
 */

import { SNAPSHOT_CLONE_FLAGS, snapshotExitFrame } from "../../ffi/fork_snapshot.ts";
import { rawSyscall } from "../../ffi/libc.ts";
import { processVmReadFully, processVmWriteFully } from "../../ffi/process_vm.ts";
import {
  cont,
  detach,
  interrupt,
  PTRACE_O,
  seize,
  setOptions,
  waitStop,
  xsaveSize,
} from "../../ffi/ptrace.ts";
import { CrashSafeThread, safeInjectStats } from "../../ffi/safe_inject.ts";
import { SYS } from "../../ffi/sysno.ts";
import { __WALL, P_PID, PTRACE_EVENT, waitPid, WEXITED, WNOHANG } from "../../ffi/wait.ts";
import type { Mapping } from "../model.ts";
import type { ProcStatus } from "../proc/status.ts";
import { pausePoint } from "../pause.ts";
import { type MapEntry, readMaps, withExecAreaQuery } from "../proc/maps.ts";
import { readStat } from "../proc/stat.ts";
import { cgroupDirOf } from "../task/placement.ts";
import { sleepSync } from "../sleep_sync.ts";
import { withInjection } from "./injected.ts";
import type { PagePolicy } from "./vmas.ts";
import { abortRseqSections } from "../task/rseq.ts";

const SIGKILL = 9;

/** A snapshot child of a process. */
export interface ForkSnapshot {
  /** The child (in cryo's pid namespace, the target's too). */
  pid: number;
  /** The process it was forked from. */
  target: number;
}

/**
 * Counts for tests: snapshots made, the reaps in the target that failed, rehearsals made; the
 * last take's syscalls injected one by one and status files read to open the main thread.
 */
export const forkSnapshotStats = {
  made: 0,
  reapFailed: 0,
  rehearsed: 0,
  lastTake: { calls: 0, statusReads: 0 },
};

/**
 * Planned bytes from which a snapshot shortens the freeze: it costs ~1.5 ms
 * frozen plus the fork's page table copy (~2.5 ms at 64 MiB), the copy it
 * moves past the thaw ~0.5 ms per MiB (docs/PERFORMANCE.md: even at ~10 MiB
 * on the bench VM).
 */
export const SNAPSHOT_MIN_BYTES = 12 * 1024 * 1024;

/**
 * Planned bytes per mapping (on average) below which a snapshot lengthens
 * the freeze: the clone copies every mapping (10,000 one-page mappings 11
 * to 22 ms on the bench VM) where the frozen copy spends ~1.1 us a mapping
 * and ~0.5 ms a MiB; in paired dumps the snapshot froze shorter from 4 KiB
 * a mapping, as long at 2 to 2.7 KiB, longer at 1.3 KiB under load
 * (docs/PERFORMANCE.md, nineteenth pass, branch mapsnap). Its pages are
 * planned after the thaw; when they were planned frozen (the ninth pass)
 * the rule asked 16 KiB.
 */
export const SNAPSHOT_MIN_BYTES_PER_MAPPING = 2 * 1024;

/**
 * Whether to read `bytes` of planned pages of a process of `mappings`
 * mappings from a snapshot: `CRYO_FORK_SNAPSHOT=1` always, `=0` never,
 * else from {@link SNAPSHOT_MIN_BYTES} and
 * {@link SNAPSHOT_MIN_BYTES_PER_MAPPING} on average.
 */
export function forkSnapshotWanted(bytes: number, mappings: number): boolean {
  let mode: string | undefined;
  try {
    mode = Deno.env.get("CRYO_FORK_SNAPSHOT");
  } catch { /* no env permission: the default */ }
  if (mode === "0") return false;
  return bytes > 0 &&
    (mode === "1" ||
      bytes >= SNAPSHOT_MIN_BYTES && bytes >= SNAPSHOT_MIN_BYTES_PER_MAPPING * mappings);
}

/** VmFlags of a mapping (any, planned or not) that the child would not have as the target has it. */
const NOT_COPIED = new Set(["dc", "wf", "um", "uw", "ui"]);
/** VmFlags of a planned mapping whose pages the child would not hold as private copies. */
const NOT_PRIVATE = new Set(["sh", "ms", "ht", "io", "pf", "ss"]);

/**
 * Whether a snapshot child holds every planned page of a process with
 * these `mappings` (and their page `policies`) as the target had it.
 * Checked in the freeze: each distinct VmFlags array is looked at once
 * (neighbours share theirs, engine/dump/vm_flags.ts; 10,000 mappings
 * looked at flag by flag took 4.5 to 6 ms).
 */
export function snapshotFits(
  mappings: readonly Mapping[],
  policies: readonly PagePolicy[],
): boolean {
  const verdicts = new Map<readonly string[], number>();
  let last: readonly string[] | undefined, lastBits = 0;
  return mappings.every((m, i) => {
    let bits = lastBits;
    if (m.vmFlags !== last) {
      bits = verdicts.get(m.vmFlags) ?? flagBits(m.vmFlags);
      verdicts.set(m.vmFlags, bits);
      last = m.vmFlags;
      lastBits = bits;
    }
    if (bits & NOT_COPIED_BIT) return false;
    if (m.excluded || policies[i] === "none") return true;
    if (m.kind !== "anon" && m.kind !== "file-private") return false;
    if (m.aio || m.sysvShm !== undefined) return false;
    return (bits & NOT_PRIVATE_BIT) === 0;
  });
}

const NOT_COPIED_BIT = 1, NOT_PRIVATE_BIT = 2;

/** Which of {@link NOT_COPIED} and {@link NOT_PRIVATE} the flags hold, as bits. */
function flagBits(flags: readonly string[]): number {
  return (flags.some((f) => NOT_COPIED.has(f)) ? NOT_COPIED_BIT : 0) |
    (flags.some((f) => NOT_PRIVATE.has(f)) ? NOT_PRIVATE_BIT : 0);
}

/**
 * The memory `pid` may take for copies of its pages while a snapshot
 * lives, in bytes: each page the target writes meanwhile is copied (at
 * worst every planned page), charged to its memory cgroup (the room left
 * under the limit of each ancestor: cgroup v1's memory controller on a
 * hybrid host, else v2) and taken from the system's available memory (half
 * of it). A target near its limit is copied frozen instead of risking an
 * OOM kill. Read before the freeze; 0 when it cannot be read.
 */
export function memoryRoom(pid: number): number {
  try {
    const avail = Deno.readTextFileSync("/proc/meminfo").match(/^MemAvailable:\s+(\d+) kB/m);
    let room = avail ? Number(avail[1]) * 512 : Infinity;
    const cg = cgroupDirOf(pid, "memory");
    if (!cg) return room; // no memory cgroup: no limit
    const [max, current] = cg.v1
      ? ["memory.limit_in_bytes", "memory.usage_in_bytes"]
      : ["memory.max", "memory.current"];
    for (let dir = cg.dir;;) {
      const limit = readTrimmed(`${dir}/${max}`);
      if (limit !== undefined && limit !== "max") {
        const used = Number(readTrimmed(`${dir}/${current}`) ?? "0");
        room = Math.min(room, Number(limit) - used);
      }
      if (dir.length <= cg.root.length) break;
      dir = dir.slice(0, dir.lastIndexOf("/"));
    }
    return room;
  } catch {
    return 0; // unreadable: not known to fit
  }
}

/** A file's text without its trailing newline, undefined when it cannot be read. */
function readTrimmed(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return undefined;
  }
}

/** Whether `pid` is in cryo's own pid namespace (the child's pid is the same number for both). */
function samePidNamespace(pid: number): boolean {
  try {
    return Deno.readLinkSync(`/proc/${pid}/ns/pid`) === Deno.readLinkSync("/proc/self/ns/pid");
  } catch {
    return false;
  }
}

/**
 * Forks a snapshot of the frozen process `pid` (its main thread stopped by
 * the freeze, `areas` its mappings read at this freeze); undefined, with
 * nothing left behind, when it cannot.
 */
export function takeSnapshot(
  pid: number,
  areas?: readonly MapEntry[],
  /** Counted in {@link forkSnapshotStats} (not a rehearsal's). */
  count = true,
  /** The main thread's status read in this freeze, if the caller has it (not read again). */
  statuses?: ReadonlyMap<number, ProcStatus>,
): ForkSnapshot | undefined {
  return takeSnapshots([{ pid, areas, statuses }], count)[0];
}

/**
 * For tests: the most forks {@link takeSnapshots} had in flight at once;
 * `refuse`, a pid whose fork is not taken (as when its clone fails).
 */
export const snapshotsInFlight = { most: 0, refuse: 0 };

/**
 * Forks a snapshot of each frozen process of `targets` (as
 * {@link takeSnapshot}), the forks at once: each process's `clone` is
 * started (its session opened, nested in the previous one's) and left to
 * run while the next process's is prepared and started, then each is
 * awaited (the page table copies, 7 to 47 ms each for 512 MiB under load,
 * overlap on the host's cores and with cryo's own work). Index for index
 * with `targets`: undefined where one could not be taken (nothing of it
 * left behind; the others are not affected).
 */
export function takeSnapshots(
  targets: readonly {
    pid: number;
    areas?: readonly MapEntry[];
    /** Its main thread's status read in this freeze, if the caller has it (not read again). */
    statuses?: ReadonlyMap<number, ProcStatus>;
  }[],
  /** Counted in {@link forkSnapshotStats} (not a rehearsal's). */
  count = true,
): (ForkSnapshot | undefined)[] {
  const born: ({ child: number; lo: bigint; hi: bigint } | undefined)[] = targets.map(() =>
    undefined
  );
  let inFlight = 0;
  /** Forks from targets[i] on; never throws. */
  const forkFrom = (i: number): void => {
    if (i >= targets.length) return;
    const { pid, areas, statuses } = targets[i];
    const statusReads = safeInjectStats.statusReads;
    let next = false;
    const goOn = () => {
      next = true;
      forkFrom(i + 1);
    };
    let child = -1;
    try {
      if (!samePidNamespace(pid) || pid === snapshotsInFlight.refuse) return;
      withInjection(
        pid,
        (s) => {
          const sites = s.safeSites;
          if (!sites || s.mainArea === undefined) return;
          // Opens the main thread for crash-safe injection (or finds it cannot be): the clone
          // is the first syscall run in it (no round trip of its own to open it).
          if (!s.open(pid)) return;
          const own = s.ownState(pid);
          if (!own) return;
          s.write(0, snapshotExitFrame(s.scratch, own.regs, sites.call, sites.restorer));
          const args = [SNAPSHOT_CLONE_FLAGS, s.scratch, 0, 0, 0] as const;
          let r: bigint;
          if (s.callBegin(pid, SYS.clone, ...args)) {
            snapshotsInFlight.most = Math.max(snapshotsInFlight.most, ++inFlight);
            try {
              goOn(); // the next processes' clones, this one running meanwhile
            } finally {
              inFlight--;
              r = s.callFinish(pid);
            }
          } else r = s.call(pid, SYS.clone, ...args);
          if (count) {
            forkSnapshotStats.lastTake = { // (with the nested sessions' reads, for a tree)
              calls: s.callsMade,
              statusReads: safeInjectStats.statusReads - statusReads,
            };
          }
          if (r <= 0n) return;
          child = Number(r);
          born[i] = {
            child,
            lo: s.scratch,
            hi: s.mainArea + BigInt(CrashSafeThread.bytesFor(xsaveSize(pid))),
          };
        },
        statuses,
        areas,
        () => undefined, // no room on the stack: no page mapped for it (the child would have it)
      );
    } catch {
      // The session put the thread back as far as it could: the dump copies frozen.
      born[i] = undefined;
      if (child > 0) endSnapshot({ pid: child, target: pid }, true, count);
    } finally {
      if (!next) forkFrom(i + 1);
    }
  };
  forkFrom(0);
  return targets.map(({ pid }, i) => {
    const b = born[i];
    if (!b) return undefined;
    const snap = { pid: b.child, target: pid };
    if (count) forkSnapshotStats.made++;
    pausePoint("snapshot-born"); // a cryo killed here: the child exits at its first instruction
    try {
      // Stopped before user mode (its trap stop); told to die with cryo.
      waitStop(b.child);
      setOptions(b.child, PTRACE_O.TRACESYSGOOD | PTRACE_O.EXITKILL);
      // The scratch space and the injection frame as the target has them again.
      const buf = new Uint8Array(Number(b.hi - b.lo));
      processVmReadFully(pid, b.lo, buf);
      processVmWriteFully(b.child, b.lo, buf);
    } catch {
      endSnapshot(snap, true, count);
      return undefined;
    }
    pausePoint("snapshot");
    return snap;
  });
}

/**
 * A snapshot of frozen process `pid` (the rehearsal's helper,
 * engine/dump/rehearsal.ts), taken and ended at once, not counted: the
 * dump's freeze then runs this code warm. Never throws.
 */
export function rehearseSnapshot(pid: number): void {
  try {
    const snap = takeSnapshot(pid, undefined, false);
    if (snap && endSnapshot(snap, true, false)) forkSnapshotStats.rehearsed++;
  } catch { /* only a rehearsal */ }
}

/** Kills the snapshot child (its exit, the teardown of its memory, runs on its own). */
export function killSnapshot(snap: ForkSnapshot): void {
  rawSyscall(SYS.kill, snap.pid, SIGKILL);
}

/**
 * Kills the snapshot child (if not yet) and reaps it, then reaps its zombie inside its
 * parent (one thread stopped for an injected `waitid`): the target is left
 * with no trace of it. False when the reap in the target could not be made
 * (the target gone, or a wait of its own took the zombie first: nothing
 * left then either). `frozen`: the target is still frozen by the dump
 * (its main thread is injected into as it is); `count`: a failed reap is
 * counted in {@link forkSnapshotStats}.
 */
export function endSnapshot(snap: ForkSnapshot, frozen = false, count = true): boolean {
  killSnapshot(snap);
  for (let i = 0; i < 64; i++) {
    let st;
    try {
      st = waitPid(snap.pid, __WALL);
    } catch {
      break; // not ours any more
    }
    if (st.kind === "exited" || st.kind === "signaled" || st.kind === "none") break;
  }
  pausePoint("snapshot-reaped");
  const ok = reapInTarget(snap.target, snap.pid, frozen);
  if (!ok && count) forkSnapshotStats.reapFailed++;
  return ok;
}

/**
 * Reaps zombie `child` of process `pid` with a `waitid` injected into its
 * main thread; `frozen`: the thread is stopped by the freeze still.
 */
function reapInTarget(pid: number, child: number, frozen: boolean): boolean {
  if (frozen) {
    try {
      return waitInTarget(pid, child);
    } catch {
      return false;
    }
  }
  try {
    if (readStat(pid).state === "Z") return false; // its main thread exited: it stops no more
  } catch {
    return false; // gone
  }
  // Where PROCMAP_QUERY answers, the injection looks up the few areas it needs (its sites',
  // its stack's) in the stop; else the maps are read running: the stop is for the waitid alone.
  let areas;
  if (withExecAreaQuery(pid, () => true) === undefined) {
    try {
      areas = readMaps(pid);
    } catch {
      return false;
    }
  }
  try {
    seize(pid, PTRACE_O.TRACESYSGOOD);
  } catch {
    return false;
  }
  try {
    interrupt(pid);
    if (!awaitInterruptStop(pid)) return false; // left to cryo's exit to detach
    abortRseqSections(pid, [pid]); // before the injection (task/rseq.ts)
    const r = waitInTarget(pid, child, areas);
    try {
      detach(pid);
    } catch { /* gone */ }
    return r;
  } catch {
    try {
      detach(pid);
    } catch { /* gone, or not stopped: detached when cryo exits */ }
    return false;
  }
}

/** The injected `waitid` of {@link reapInTarget} (the main thread stopped); whether it reaped `child`. */
function waitInTarget(pid: number, child: number, areas?: readonly MapEntry[]): boolean {
  return withInjection(
    pid,
    (s) => {
      s.write(0, new Uint8Array(128)); // its siginfo: si_pid stays 0 when nothing was reaped
      const r = s.call(pid, SYS.waitid, P_PID, child, s.scratch, WEXITED | __WALL | WNOHANG, 0);
      return r === 0n && new DataView(s.read(16, 4).buffer).getInt32(0, true) === child;
    },
    undefined,
    areas,
  );
}

/** How long the main thread may take to stop for the reap (as the freeze's threads). */
const STOP_TIMEOUT_MS = 10_000;

/**
 * Waits (polling, with a deadline: a thread in uninterruptible sleep gives
 * false, not a hang) for interrupted thread `tid`'s interrupt stop; a
 * signal-delivery stop on the way is resumed with its signal.
 */
function awaitInterruptStop(tid: number): boolean {
  const deadline = performance.now() + STOP_TIMEOUT_MS;
  let nap = 0.05;
  while (performance.now() < deadline) {
    const st = waitPid(tid, __WALL | WNOHANG);
    if (st.kind === "stopped") {
      if (st.event === PTRACE_EVENT.STOP) return true;
      cont(tid, st.signal); // delivered as it would have been; the interrupt's stop follows
      continue;
    }
    if (st.kind !== "none") return false; // gone
    sleepSync(nap);
    nap = Math.min(1, nap * 2);
  }
  return false;
}
