/**
 * The restore compiler: turns a process description into the restore
 * program its image runs (a straight list of syscalls for the stub), plus
 * the per-thread sections the engine runs at the end.
 *
 * Every decision is made here, in TypeScript; the stub only executes.
 * Order of the program:
 *
 * 1. block all signals (nothing may run a handler during the restore);
 * 2. fork the children (clone3 with set_tid), each exec'ing its own image;
 * 3. open the image itself, re-create every mapping (anonymous pages pread
 *    straight from the image file, file mappings mapped from their files),
 *    set final protections and madvise flags, native AIO contexts at their
 *    ring addresses (engine/memory/aio.ts), then guard regions, locks
 *    and process-wide memory settings (engine/memory/flags.ts); fork the
 *    children that inherit this memory (engine/memory/inherit_restore.ts:
 *    such a child, instead of the steps above, fixes up what it inherited);
 * 4. PR_SET_MM_MAP (code/data/brk/stack/arg/env bounds, auxv, exe);
 * 5. rlimits, fds (via temporaries above every target number), cwd,
 *    umask, personality, session/group, signal actions, comm;
 * 6. the main thread's rseq, robust list, clear_child_tid, sigaltstack;
 * 7. the other threads (clone3 with set_tid; they stop at birth, the
 *    engine sets their registers);
 * 8. pending signals, interval timers, POSIX timers; END.
 *
 * After the END: each thread's credentials section and the process's, run
 * by the engine last of all (engine/task/creds.ts).
 *
 * @module
 */

import { cwdPath } from "./deleted_cwd.ts";
import { CLONE_FILES, CLONE_FS } from "../task/shared_tables.ts";
import { cloneWithTid } from "../program/clone.ts";
import { cpuTimerTickUs } from "../../ffi/clock.ts";
import { SYS } from "../../ffi/sysno.ts";
import {
  cloneArgs,
  itimerval,
  kernelSigaction,
  prctlMmMap,
  RLIM_INFINITY,
  rlimit,
  stackT,
} from "../../ffi/structs.ts";
import { decodeBase64 } from "../base64.ts";
import type { Mapping, ProcessImage } from "../model.ts";
import { emitCloexec, emitFds, planFds, type PlannedFd, type SharedPlan } from "../fds/mod.ts";
import { emitSharedCreation } from "../fds/shared.ts";
import { emitPosixLocks } from "../fds/locks.ts";
import { emitFdOwners } from "../fds/owner.ts";
import { emitUnixCreation, type UnixTreePlan } from "../fds/unix.ts";
import { emitControllingTty, type PlannedPty } from "../fds/tty.ts";
import { ghostPath, type PlannedGhosts } from "../fds/ghost.ts";
import { UnsupportedError } from "../errors.ts";
import { unclaimedRingMapping } from "../fds/packet_ring.ts";
import { supportOf } from "../support.ts";
import { type Bootstrap, BootstrapBuilder, messageProgram } from "./stub.ts";
import { type ProgramBuilder, slot } from "../program/builder.ts";
import { type DeferredSyscall, emitPosixTimers } from "../task/timers.ts";
import { emitTaskState } from "../task/mod.ts";
import { type CredsSections, emitCredsSections } from "../task/creds.ts";
import {
  deferSeals,
  emitHugePageAdvice,
  emitMemoryFlagsAfter,
  emitVmFlags,
} from "../memory/flags.ts";
import { emitSysvShmAttach } from "../memory/sysvshm.ts";
import { hugeMmapFlags } from "../memory/hugetlb.ts";
import { emitAioRings } from "../memory/aio.ts";
import {
  emitHotPages,
  emitLazyRegistration,
  hotPages,
  lazyMappingEligible,
  lazyProcessEligible,
  type LazyRegion,
  lazyRegions,
} from "../memory/lazy.ts";
import {
  emitDropInherited,
  emitInheritedMapping,
  emitInheritForks,
  emitInheritLabels,
  inheritedFrom,
  inheritingChildren,
} from "../memory/inherit_restore.ts";
import { emitZombieBranches, emitZombies } from "../task/zombies.ts";
import { emitPlaceholderBranches, emitPlaceholders, placeholdersOf } from "../task/groups.ts";
import { SIGTRAP } from "../task/sigtrap.ts";
import { emitThreadClones } from "./thread_clone.ts";
import { chainedCreds, emitThreadSections, type ThreadSections } from "./thread_state.ts";
import { hexMinus, hexNum } from "../image/hexnum.ts";
import {
  emitObjectScratchUnmaps,
  emitSharedAnon,
  inSharedAnonGroup,
} from "../memory/shmem_restore.ts";
import { emitMbind, emitSetMempolicy } from "../memory/mempolicy.ts";
import {
  anonRunLength,
  emitAnonMmap,
  emitAnonRun,
  emitReservedRun,
  reservedRunLength,
} from "./anon_runs.ts";
import { emitPageLoads, emitRunLoads, pageHelperTid, UFFD_BUDGET } from "./page_loads.ts";

/** Slot numbers used by compiled programs. */
export const SLOTS = {
  image: 0,
  file: 1,
  exe: 2,
  scratch: 3,
  stdio0: 4,
  stdio1: 5,
  stdio2: 6,
  /** The userfaultfd of a lazy restore (engine/memory/lazy.ts), at the end of the program. */
  uffd: 7,
  /** Slots 8.. hold fd temporaries by restore order. */
  fdBase: 8,
} as const;

/** Options of {@link compileProcess}. */
export interface CompileOptions {
  /** Absolute path of this process's image file. */
  imagePath: string;
  /** Absolute image paths of the children (pid -> path). */
  childImages: Map<number, string>;
  /** User overrides: fd number -> "path" or "fd:N" (the restorer's own fd N). */
  inheritFds?: Map<number, string>;
  /** Whether this is the tree's root, whose fds `--inherit-fd` can replace (errors say so). */
  root?: boolean;
  /** The tree's root (with `images`: pipes leading out of the tree, engine/fds/pipe.ts). */
  rootPid?: number;
  /** The root's `--inherit-fd` overrides (another process's fd holding the same pipe end takes them). */
  rootInheritFds?: Map<number, string>;
  /** Descriptions and pipes shared between processes of the tree (see engine/fds/shared.ts). */
  shared?: SharedPlan;
  /** Pseudo-terminals of the tree, whose masters the engine hands over (engine/fds/tty.ts). */
  ptys?: PlannedPty[];
  /** Deleted files and memfds, which the engine re-creates and hands over (engine/fds/ghost.ts). */
  ghosts?: PlannedGhosts;
  /** Text of the standalone message. */
  standaloneMessage?: string;
  /** Every image of the tree by pid (for memory inherited across fork). */
  images?: ReadonlyMap<number, ProcessImage>;
  /** Unix sockets of the tree (see engine/fds/unix.ts). */
  unixSockets?: UnixTreePlan;
  /** Lazy restore: private anonymous memory is registered with a userfaultfd (engine/memory/lazy.ts). */
  lazy?: boolean;
  /**
   * Only whether it compiles (the dump's restorability check): every emitter
   * runs as for a restore (each throw and the size check stay), but the
   * program builders are size-only (engine/program/builder.ts): no op or
   * data byte is encoded, and the bootstrap blob is zeros of its exact length.
   */
  checkOnly?: boolean;
  /**
   * false: no page loads by userfaultfd (engine/restore/page_loads.ts);
   * {@link compileProcess} compiles again so when the program would not
   * fit the bootstrap with them.
   */
  uffdLoads?: boolean;
}

/** A compiled process: its bootstrap blob and what the engine does afterwards. */
export interface CompiledProcess {
  bootstrap: Bootstrap;
  /** How each fd is re-created (for `show`). */
  fds: PlannedFd[];
  /** Address of a `syscall; int3` gadget inside the bootstrap. */
  syscallGadget: bigint;
  /** Where the vdso/vvar mappings are parked while being moved. */
  vdsoScratch: bigint;
  /** Descriptions this process creates for the tree: each with the fd of its first holder. */
  sharedCreated?: { pid: number; fd: number; source: PlannedFd["source"] }[];
  /**
   * The credentials sections the engine runs last, per thread (engine/task/creds.ts);
   * each thread but the main one starts at its own-state section, which goes on into them.
   */
  creds: CredsSections;
  /** Syscalls the engine injects just before the tree runs (arming POSIX timers). */
  deferred: DeferredSyscall[];
  /** Lazy restore: the mappings the engine serves through the process's userfaultfd. */
  lazy?: LazyRegion[];
  /** The own-state section of each thread but the main one (thread_state.ts), run with `creds`. */
  threadSections: ThreadSections;
}

const PROT = (perms: string) =>
  (perms[0] === "r" ? 1 : 0) | (perms[1] === "w" ? 2 : 0) | (perms[2] === "x" ? 4 : 0);
const MAP_SHARED = 0x01;
const MAP_PRIVATE = 0x02;
const MAP_DROPPABLE = 0x08;
const MAP_FIXED = 0x10;
const MAP_ANONYMOUS = 0x20;
const MAP_GROWSDOWN = 0x100;
const MAP_NORESERVE = 0x4000;
const O_CLOEXEC = 0o2000000;
const F_DUPFD_CLOEXEC = 1030;
const PR_SET_NAME = 15;
const PR_SET_MM = 35;
const PR_SET_MM_MAP = 14;
const SIG_SETMASK = 2;

/** Size of the scratch area kept at the end of the bootstrap for moving the vdso. */
export const VDSO_SCRATCH_BYTES = 1 << 20;

function hexBig(h: string): bigint {
  return BigInt(h);
}

/** Compiles `proc` into its bootstrap blob (stub, standalone message and restore program). */
export function compileProcess(proc: ProcessImage, opts: CompileOptions): CompiledProcess {
  const fds = planFds(
    proc,
    opts.inheritFds,
    opts.shared,
    opts.ptys,
    opts.ghosts,
    opts.unixSockets,
    // The `--inherit-fd` hint only where that restore option exists: not in the dump's check.
    opts.root === true && opts.checkOnly !== true,
    opts.images && opts.rootPid !== undefined
      ? {
        tree: opts.images,
        rootPid: opts.rootPid,
        rootInheritFds: opts.rootInheritFds,
        check: opts.checkOnly === true,
      }
      : undefined,
  );
  // A packet socket's rings are mapped by the process that makes the socket, in the fd phase.
  const unclaimed = unclaimedRingMapping(
    proc.mappings,
    fds.map((f) => f.source.kind === "packet" ? f.source.socket.ring : undefined),
  );
  if (unclaimed) {
    throw new UnsupportedError(`process ${proc.pid}`, [
      `${
        supportOf("socket.packet-ring").what
      }: the mapping ${unclaimed} of a packet socket's rings is not this process's own (inherited across fork, or its socket made by another process)`,
    ]);
  }
  const base = hexBig(proc.bootstrap.start);
  const boot = new BootstrapBuilder(base, opts.checkOnly === true);
  const standalone = messageProgram(
    boot.program(),
    opts.standaloneMessage ??
      `this is a cryo checkpoint image of process ${proc.pid} (${proc.comm}); restore it with:\n` +
        `  deno run -A cli.ts restore <image-dir>\n`,
    1,
  );
  const p = boot.program();
  const gadget = p.data(new Uint8Array([0x0f, 0x05, 0xcc, 0xcc]), 16);
  const deferred: DeferredSyscall[] = [];
  emitProgram(p, proc, opts, fds, boot.slotsAddress, deferred);
  deferSeals(proc, deferred); // after everything else (engine/memory/flags.ts)
  const sections = emitCredsSections(p, proc);
  // Each thread's own state, then on into its credentials: one run per thread at finalize.
  const threadSections = emitThreadSections(
    p,
    proc,
    new Map(sections.threads.map((t) => [t.tid, t.op])),
  );
  const creds = chainedCreds(sections, threadSections);
  const restore = p.build();
  const bootstrap = boot.finish({ restore, standalone });
  const limit = base + BigInt(proc.bootstrap.size) - BigInt(VDSO_SCRATCH_BYTES);
  if (base + BigInt(bootstrap.blob.length) > limit) {
    // The userfaultfd loads' ops are what made it too large: without them, as before.
    if (opts.uffdLoads !== false) return compileProcess(proc, { ...opts, uffdLoads: false });
    throw new UnsupportedError(`process ${proc.pid}`, [
      `restore program (${bootstrap.blob.length} bytes) does not fit the reserved bootstrap range`,
    ]);
  }
  const sharedCreated = opts.shared?.objects.filter((o) => o.creator === proc.pid).flatMap((o) =>
    o.members.map((m, i) => ({ ...o.origins[i], source: m.source }))
  );
  return {
    bootstrap,
    fds,
    syscallGadget: gadget,
    vdsoScratch: limit,
    creds,
    sharedCreated,
    deferred,
    lazy: opts.lazy ? lazyRegions(proc, opts.images) : undefined,
    threadSections,
  };
}

function emitProgram(
  p: ProgramBuilder,
  proc: ProcessImage,
  opts: CompileOptions,
  fds: PlannedFd[],
  slotsAddress: bigint,
  deferred: DeferredSyscall[],
): void {
  const allSignals = p.u64s([0xffffffffffffffffn]);
  p.op(SYS.rt_sigprocmask, [SIG_SETMASK, allSignals, 0, 8], { comment: "block all signals" });
  // Session and group first, so the children forked below are born into them
  // (with the controlling terminal of the session).
  if (proc.sid === proc.pid) {
    p.op(SYS.setsid, [], { comment: "session leader" });
    emitControllingTty(p, proc, opts.ptys ?? [], SLOTS.scratch);
  } else if (proc.pgid === proc.pid) p.op(SYS.setpgid, [0, 0], { comment: "group leader" });
  emitSharedCreation(p, opts.shared, proc.pid, SLOTS.scratch, slotsAddress);
  emitUnixCreation(p, opts.unixSockets, proc.pid, SLOTS.scratch, slotsAddress);
  // Groups whose leader is gone, made again by placeholders (engine/task/groups.ts).
  const placeholders = opts.images ? placeholdersOf(proc.pid, opts.images) : [];
  emitPlaceholders(p, placeholders.filter((x) => !x.session));

  // CLONE_FILES / CLONE_FS for a child that shared this fd table / fs info (task/shared_tables.ts).
  const shareFlags = (child: number) => tableFlags(opts.images?.get(child));
  // Children first: they exec their own image and leave this memory behind.
  const inheriting = inheritingChildren(proc, opts.images);
  const execChildren = proc.children.filter((c) => !inheriting.includes(c));
  // A session's placeholder clones its members for this process (engine/task/groups.ts).
  const cloned = new Set(placeholders.flatMap((x) => x.members));
  for (const c of cloned) {
    if (shareFlags(c) === 0n) continue;
    throw new UnsupportedError(`process ${c}`, [
      "it shares its parent's fd table or fs info, and a session placeholder forks it",
    ]);
  }
  for (const child of execChildren) {
    const path = opts.childImages.get(child);
    if (!path) throw new Error(`no image for child ${child} of ${proc.pid}`);
    if (cloned.has(child)) continue;
    const args = cloneWithTid(p, child, { flags: shareFlags(child), exitSignal: 17n });
    p.op(SYS.clone3, [args, cloneArgs.size], {
      jumpIfZeroTo: `child-${child}`,
      comment: `fork child ${child}`,
    });
  }

  // Before the mappings are filled, so that their pages land as the policy says; the
  // threads cloned below inherit it (engine/memory/mempolicy.ts, thread_state.ts).
  emitSetMempolicy(p, mainThreadOf(proc)?.mempolicy, "main thread");
  const examine = emitMemory(p, proc, opts, slotsAddress);
  emitAioRings(p, proc, slotsAddress, SLOTS.scratch, examine);
  emitMemoryFlagsAfter(p, proc, examine);
  emitInheritForks(p, inheriting.filter((c) => !cloned.has(c)), shareFlags);
  emitPlaceholders(p, placeholders.filter((x) => x.session)); // with this memory
  emitObjectScratchUnmaps(p, proc, opts.images); // (shared with the children forked above)

  emitMm(p, proc, slotsAddress);
  // In its parent's fd table: the parent put the fds in, before this program started.
  if (!proc.sharesParentFiles) {
    emitNofileForFds(p, proc);
    const nofile = proc.rlimits.find((r) => r.resource === 7);
    emitFds(
      p,
      fds,
      slotsAddress,
      SLOTS.scratch,
      nofile && nofile.hard !== "inf" ? nofile.hard : Infinity,
    );
  }
  emitRlimits(p, proc);
  emitProcessState(p, proc, fds);
  emitZombies(p, proc);
  emitMainThread(p, proc);
  emitThreadClones(p, proc); // thread_clone.ts
  emitSignalsAndTimers(p, proc);
  emitPosixLocks(p, proc, fds);
  emitFdOwners(p, proc, fds);
  emitPosixTimers(p, proc, deferred);
  emitTaskState(p, proc);
  if (opts.lazy) emitLazyRegistration(p, proc, opts.images, SLOTS.uffd);
  p.end("restore complete: the engine takes over");

  emitInheritLabels(p, inheriting);
  for (const child of execChildren) {
    const path = opts.childImages.get(child)!;
    p.label(`child-${child}`);
    const pathAddr = p.cstring(path);
    const argv = p.u64s([pathAddr, 0]);
    const envp = p.u64s([0]);
    p.op(SYS.execve, [pathAddr, argv, envp], { comment: `child ${child} execs its image` });
    p.end();
  }
  emitZombieBranches(p, proc);
  emitPlaceholderBranches(
    p,
    placeholders,
    (m) => inheriting.includes(m) ? `inherit-${m}` : `child-${m}`,
  );
  p.label("thread-park");
  p.end("new thread parks here; the engine sets its registers");
}

/**
 * Emits the mappings; returns the indices of the mappings the passes after
 * it must look at (every mapping but the members of anonymous runs that
 * have no guard regions and quiet flags), in increasing order.
 */
function emitMemory(
  p: ProgramBuilder,
  proc: ProcessImage,
  opts: CompileOptions,
  slotsAddress: bigint,
): number[] {
  const examine: number[] = [];
  p.op(SYS.open, [p.cstring(opts.imagePath), O_CLOEXEC, 0], {
    store: SLOTS.image,
    comment: "the image itself, source of page data",
  });
  let openPath: string | undefined;
  const zeroByte = p.reserve(8);
  const parent = inheritedFrom(proc, opts.images);
  if (parent) emitDropInherited(p, proc, parent);
  // An inherited mapping has the parent's policy (fork copies it): set again when the parent had any.
  const parentPolicies = parent?.mappings.some((m) => m.mempolicy) ?? false;
  const lazy = opts.lazy && lazyProcessEligible(proc, opts.images);
  const hot = lazy ? hotPages(proc) : new Set<bigint>();
  const helper = {
    tid: pageHelperTid(proc, opts.images),
    slot: SLOTS.scratch,
    slotAddress: slotsAddress + BigInt(SLOTS.scratch * 8),
    // The vdso scratch area (free while the program runs): the userfaultfd loads' staging.
    stage: BigInt(proc.bootstrap.start) + BigInt(proc.bootstrap.size) - BigInt(VDSO_SCRATCH_BYTES),
    uffdSlot: SLOTS.uffd,
    uffdBudget: opts.uffdLoads === false ? 0 : UFFD_BUDGET,
  };
  for (let i = 0; i < proc.mappings.length; i++) {
    const m = proc.mappings[i];
    if (m.kind === "vdso" || m.kind === "vsyscall" || m.kind === "aio") {
      examine.push(i);
      continue;
    }
    // Mapped with its socket, in the fd phase (engine/fds/packet_ring.ts).
    if (m.kind === "packet-ring") continue;
    // Adjacent private anonymous mappings: one mmap and pread for the run (anon_runs.ts).
    const run = lazy ? 0 : anonRunLength(proc.mappings, i);
    if (run) {
      emitAnonRun(
        p,
        proc.mappings,
        i,
        run,
        SLOTS.image,
        (stretches) => emitRunLoads(p, proc, stretches, SLOTS.image, helper, m.start, true),
        examine,
      ); // page_loads.ts
      i += run - 1;
      continue;
    }
    // Thread stacks and their guards: one PROT_NONE mmap, the stacks opened (anon_runs.ts).
    const reserved = lazy ? 0 : reservedRunLength(proc.mappings, i);
    if (reserved) {
      emitReservedRun(
        p,
        proc.mappings,
        i,
        reserved,
        (stretches) => emitRunLoads(p, proc, stretches, SLOTS.image, helper, m.start, true),
      );
      i += reserved - 1;
      continue;
    }
    examine.push(i);
    if (m.inherited) {
      emitInheritedMapping(p, m, SLOTS.image);
      if (parentPolicies || m.mempolicy) {
        const start = hexNum(m.start);
        emitMbind(p, start, hexMinus(hexNum(m.end), start), m.mempolicy, mappingLabel(m));
      }
      continue;
    }
    if (m.sysvShm !== undefined) {
      emitSysvShmAttach(p, m);
      emitVmFlags(p, m);
      continue;
    }
    const start = hexNum(m.start);
    const len = hexMinus(hexNum(m.end), start);
    const prot = PROT(m.perms);
    // Mapped writable first (then mprotect'ed) when pages must be written in,
    // or when a private mapping was accounted ("ac": it had been writable),
    // so the kernel keeps its commit accounting as before.
    const accounted = m.vmFlags.includes("ac") && m.perms[3] === "p" && (prot & 2) === 0;
    // A piece of a shared anonymous object mapped in several: mapped read-write with the others.
    const grouped = m.kind === "anon-shared" && inSharedAnonGroup(proc.mappings, i);
    const needsWrite = grouped ? prot !== 3 : (m.pages.length > 0 || accounted) && (prot & 2) === 0;
    const mapProt = grouped ? 3 : needsWrite ? prot | 2 : prot;
    const growsDown = (m.vmFlags.includes("gd") ? MAP_GROWSDOWN : 0) |
      (m.vmFlags.includes("nr") ? MAP_NORESERVE : 0);
    if (m.kind === "anon" || m.kind === "anon-shared") {
      // A droppable area (VmFlag dp, which brings wf dd nr) is of its own map type.
      const type = m.kind === "anon-shared"
        ? MAP_SHARED
        : m.vmFlags.includes("dp")
        ? MAP_DROPPABLE
        : MAP_PRIVATE;
      const flags = type | MAP_FIXED | MAP_ANONYMOUS | growsDown | hugeMmapFlags(m);
      // (An area the kernel kept apart from the one before is made apart again.)
      if (m.kind === "anon") emitAnonMmap(p, proc, i, [start, len, mapProt, flags], zeroByte);
      else emitSharedAnon(p, proc, opts.images, i, start, mapProt, flags, mappingLabel(m));
    } else {
      const ghost = m.ghost !== undefined
        ? ghostPath(opts.ghosts ?? new Map(), m.ghost)
        : undefined;
      const path = ghost?.path ?? m.file?.path ?? m.name;
      const shared = m.kind === "file-shared";
      // A shared mapping that may become writable (VM_MAYWRITE, "mw") needs the file read-write;
      // so does one of a write-sealed memfd ("sh" without "mw"): read-only, VM_SHARED is dropped.
      const readWrite = shared &&
        (m.perms[1] === "w" || m.vmFlags.includes("mw") || m.vmFlags.includes("sh"));
      // A memfd's is mapped from its own description, which counts as no writer of the inode
      // (a read-write reopen kept by the mapping would make execveat of the memfd fail: ETXTBSY).
      const own = readWrite && ghost !== undefined &&
        opts.ghosts?.get(m.ghost!)?.ghost.kind === "memfd";
      const oflags = (readWrite ? 2 : 0) | O_CLOEXEC;
      const opened = `${own ? "own" : oflags} ${path}`;
      if (openPath !== opened) {
        if (openPath !== undefined) p.op(SYS.close, [slot(SLOTS.file)]);
        if (own) {
          p.op(SYS.fcntl, [ghost!.transferFd, F_DUPFD_CLOEXEC, 0], {
            store: SLOTS.file,
            comment: "the memfd's own description",
          });
        } else p.op(SYS.open, [p.cstring(path), oflags, 0], { store: SLOTS.file });
        openPath = opened;
      }
      const flags = (m.kind === "file-shared" ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED | growsDown;
      p.op(SYS.mmap, [start, len, mapProt, flags, slot(SLOTS.file), hexNum(m.offset)], {
        comment: mappingLabel(m),
      });
    }
    // Before the pages are written: they land as the policy says (engine/memory/mempolicy.ts).
    if (m.mempolicy) emitMbind(p, start, len, m.mempolicy, mappingLabel(m));
    // (A lazily served area gets its pages after: as good as never faulted here.)
    const servedLater = lazy && lazyMappingEligible(m);
    if (
      accounted && (m.pages.length === 0 || servedLater) && m.kind === "anon" && !m.hugePageSize
    ) {
      // The kernel drops VM_ACCOUNT when write is removed from a never-faulted
      // anonymous area: fault one page in (and drop it again) first.
      p.copy(start, zeroByte, 1, { comment: "give the area an anon_vma" });
      p.op(SYS.madvise, [start, 4096, 4 /* MADV_DONTNEED */]);
    }
    if (m.pages.length > 0) emitHugePageAdvice(p, m);
    // Lazy restore: the pages are served later (engine/memory/lazy.ts).
    if (servedLater) emitHotPages(p, m, hot, SLOTS.image);
    else emitPageLoads(p, proc, m, SLOTS.image, helper); // engine/restore/page_loads.ts
    if (needsWrite) p.op(SYS.mprotect, [start, len, prot]);
    emitVmFlags(p, m);
  }
  if (openPath !== undefined) p.op(SYS.close, [slot(SLOTS.file)]);
  p.op(SYS.close, [slot(SLOTS.image)]);
  return examine;
}

function mappingLabel(m: Mapping): string {
  return `${m.start}-${m.end} ${m.perms} ${m.kind}${m.name ? " " + m.name : ""}`;
}

function emitMm(p: ProgramBuilder, proc: ProcessImage, slotsAddress: bigint): void {
  const auxvWords: bigint[] = [];
  for (const [k, v] of proc.auxv) auxvWords.push(BigInt(k), hexBig(v));
  if (auxvWords.length === 0 || auxvWords[auxvWords.length - 2] !== 0n) auxvWords.push(0n, 0n);
  const auxv = p.u64s(auxvWords);
  if (proc.exe) {
    p.op(SYS.open, [p.cstring(proc.exe.path), O_CLOEXEC, 0], {
      store: SLOTS.exe,
      comment: "new /proc/self/exe",
    });
  }
  const mm = proc.mm;
  const map = prctlMmMap.encode({
    startCode: hexBig(mm.startCode),
    endCode: hexBig(mm.endCode),
    startData: hexBig(mm.startData),
    endData: hexBig(mm.endData),
    startBrk: hexBig(mm.startBrk),
    brk: hexBig(mm.brk),
    startStack: hexBig(mm.startStack),
    argStart: hexBig(mm.argStart),
    argEnd: hexBig(mm.argEnd),
    envStart: hexBig(mm.envStart),
    envEnd: hexBig(mm.envEnd),
    auxv,
    auxvSize: auxvWords.length * 8,
    exeFd: 0xffffffff,
  });
  const mapAddr = p.data(map);
  if (proc.exe) {
    // exe_fd (u32 at +100) is only known at run time: copy the low 4 bytes of its slot.
    p.copy(mapAddr + 100n, slotsAddress + BigInt(SLOTS.exe * 8), 4, { comment: "exe_fd" });
  }
  p.op(SYS.prctl, [PR_SET_MM, PR_SET_MM_MAP, mapAddr, prctlMmMap.size, 0], {
    comment: "mm bounds, auxv, exe",
  });
  if (proc.exe) p.op(SYS.close, [slot(SLOTS.exe)]);
}

/**
 * Lets the fd phase use numbers up to the process's hard RLIMIT_NOFILE (its
 * temporaries sit above the highest fd); the real limits come after.
 */
function emitNofileForFds(p: ProgramBuilder, proc: ProcessImage): void {
  const nofile = proc.rlimits.find((r) => r.resource === 7);
  if (!nofile) return;
  const hard = nofile.hard === "inf" ? RLIM_INFINITY : BigInt(nofile.hard);
  p.op(SYS.prlimit64, [0, 7, p.data(rlimit.encode({ cur: hard, max: hard })), 0], {
    allowFail: true,
    comment: "NOFILE soft = hard while fds are placed",
  });
}

function emitRlimits(p: ProgramBuilder, proc: ProcessImage): void {
  for (const r of proc.rlimits) {
    const v = rlimit.encode({
      cur: r.soft === "inf" ? RLIM_INFINITY : BigInt(r.soft),
      max: r.hard === "inf" ? RLIM_INFINITY : BigInt(r.hard),
    });
    p.op(SYS.prlimit64, [0, r.resource, p.data(v), 0], { allowFail: true, comment: r.name });
  }
}

function emitProcessState(p: ProgramBuilder, proc: ProcessImage, fds: PlannedFd[]): void {
  emitCloexec(p, proc, fds);
  // A deleted cwd is made again for this chdir and removed before the tree runs (deleted_cwd.ts).
  p.op(SYS.chdir, [p.cstring(cwdPath(proc.cwd))]);
  if (proc.root !== "/") p.op(SYS.chroot, [p.cstring(proc.root)], { comment: "root directory" });
  p.op(SYS.umask, [proc.umask]);
  p.op(SYS.personality, [proc.personality], { allowFail: true });
  proc.sigactions.forEach((a, i) => {
    const sig = i + 1;
    if (sig === 9 || sig === 19 || sig === SIGTRAP) return; // SIGTRAP: engine/task/sigtrap.ts
    if (BigInt(a.handler) === 0n && BigInt(a.flags) === 0n && BigInt(a.mask) === 0n) return;
    const act = kernelSigaction.encode({
      handler: hexBig(a.handler),
      flags: hexBig(a.flags),
      restorer: hexBig(a.restorer),
      mask: hexBig(a.mask),
    });
    p.op(SYS.rt_sigaction, [sig, p.data(act), 0, 8], { comment: `signal ${sig}` });
  });
  p.op(SYS.prctl, [PR_SET_NAME, p.cstring(proc.threads[0]?.comm ?? proc.comm), 0, 0, 0]);
}

/** The clone flags that put `child` into its parent's fd table or fs info again. */
function tableFlags(child: ProcessImage | undefined): bigint {
  return (child?.sharesParentFiles ? CLONE_FILES : 0n) | (child?.sharesParentFs ? CLONE_FS : 0n);
}

/** The record of `proc`'s main thread (its first when none has its pid). */
function mainThreadOf(proc: ProcessImage): ProcessImage["threads"][number] | undefined {
  return proc.threads.find((x) => x.tid === proc.pid) ?? proc.threads[0];
}

function emitMainThread(p: ProgramBuilder, proc: ProcessImage): void {
  const t = proc.threads.find((x) => x.tid === proc.pid) ?? proc.threads[0];
  p.op(SYS.set_tid_address, [hexBig(t.clearChildTid)]);
  if (BigInt(t.robustList.head) !== 0n) {
    p.op(SYS.set_robust_list, [hexBig(t.robustList.head), t.robustList.len]);
  }
  if (t.rseq) {
    p.op(SYS.rseq, [hexBig(t.rseq.addr), t.rseq.len, 0, hexBig(t.rseq.sig)], { comment: "rseq" });
  }
  if (BigInt(t.sigaltstack.sp) !== 0n || t.sigaltstack.flags !== 2 /* SS_DISABLE */) {
    const ss = stackT.encode({
      sp: hexBig(t.sigaltstack.sp),
      flags: t.sigaltstack.flags & ~1, /* SS_ONSTACK is not settable */
      size: BigInt(t.sigaltstack.size),
    });
    p.op(SYS.sigaltstack, [p.data(ss), 0], { comment: "sigaltstack" });
  }
}

function emitSignalsAndTimers(p: ProgramBuilder, proc: ProcessImage): void {
  // A pending SIGSTOP is sent when the tree is released (engine/task/stopped.ts),
  // a pending SIGTRAP queued after the program's end (engine/task/sigtrap.ts).
  for (const s of proc.sharedPending.filter((x) => x.signo !== 19 && x.signo !== SIGTRAP)) {
    p.op(SYS.rt_sigqueueinfo, [proc.pid, s.signo, p.data(decodeBase64(s.raw))], {
      comment: `pending signal ${s.signo} (process)`,
    });
  }
  // Only the main thread's own queue here: the kernel accepts SI_USER/SI_TKILL
  // codes only from the target thread itself, so the engine queues the other
  // threads' signals from their own sections (thread_state.ts).
  for (const t of proc.threads.filter((x) => x.tid === proc.pid)) {
    for (const s of t.pending.filter((x) => x.signo !== 19 && x.signo !== SIGTRAP)) {
      p.op(SYS.rt_tgsigqueueinfo, [proc.pid, t.tid, s.signo, p.data(decodeBase64(s.raw))], {
        comment: `pending signal ${s.signo} (thread ${t.tid})`,
      });
    }
  }
  const timers = [proc.itimers.real, proc.itimers.virtual, proc.itimers.prof];
  timers.forEach((t, which) => {
    if (t.valueUs === 0 && t.intervalUs === 0) return;
    // An expired timer whose signal is still pending reads as value 0 with
    // its interval; setitimer with value 0 would disarm it: fire it at once
    // instead (the new signal merges with the restored pending one).
    let valueUs = t.valueUs === 0 ? 1 : t.valueUs;
    // setitimer adds a tick to a CPU-time timer's value (a getitimer right
    // after it reads one tick more): take it off, or each restore adds one.
    const tick = which === 0 ? 0 : cpuTimerTickUs();
    if (valueUs > tick) valueUs -= tick;
    const v = itimerval.encode({
      intervalSec: BigInt(Math.floor(t.intervalUs / 1e6)),
      intervalUsec: BigInt(t.intervalUs % 1e6),
      valueSec: BigInt(Math.floor(valueUs / 1e6)),
      valueUsec: BigInt(valueUs % 1e6),
    });
    p.op(SYS.setitimer, [which, p.data(v), 0], {
      comment: ["ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF"][which],
    });
  });
}
