/**
 * The typed model of a checkpoint: what dump collects, what the image
 * stores (as JSON in a cryo note) and what restore compiles. `show --json`
 * and `readImage()` return exactly these types.
 *
 * Addresses and other 64-bit quantities are hex strings ("0x7ffd...") so
 * the model survives JSON unchanged.
 *
 * @module
 */

import type { ProcessAttrs, ThreadAttrs } from "./task/attrs.ts";
import type { ThreadSched } from "./task/sched.ts";
import type { MemPolicy } from "./memory/mempolicy.ts";
import type { SeccompState } from "./task/seccomp.ts";
import type { InotifyWatchImage } from "./fds/inotify.ts";

/** A 64-bit value as a `0x`-prefixed hex string. */
export type Hex = string;

/** Version of the image format; bumped on any incompatible change. */
export const IMAGE_FORMAT_VERSION = 2;

/**
 * The manifest format version of an image with a `parent` (a pre-copy
 * chain, engine/image/chain.ts): its page runs may point into the parent,
 * which a reader of version {@link IMAGE_FORMAT_VERSION} alone would misread.
 * Its `<pid>.elf` files are version {@link IMAGE_FORMAT_VERSION}.
 */
export const CHAIN_FORMAT_VERSION = 3;

/** The manifest.json of an image directory. */
export interface Manifest {
  /** Always "cryo-image". */
  kind: "cryo-image";
  /** {@link IMAGE_FORMAT_VERSION} at dump time. */
  formatVersion: number;
  /** cryo version that wrote it. */
  toolVersion: string;
  /** ISO time of the dump. */
  createdAt: string;
  /**
   * A random id of the dump, also in each process's image
   * ({@link ProcessImage.dumpId}): a restore refuses a process file of
   * another dump even without its checksum check. Absent in images of older
   * cryo versions.
   */
  dumpId?: string;
  /** Kernel and CPU facts that restore checks. */
  host: HostFacts;
  /** Pid of the root of the dumped tree. */
  rootPid: number;
  /** Every process of the tree, parents before children. */
  processes: ManifestProcess[];
  /** Dump statistics. */
  stats: DumpStats;
  /** Opt-ins the tree needed at dump time ("shell-job", ...); restore needs them too. */
  optIns?: string[];
  /** Deleted files and memfds of the tree, saved by content. */
  ghosts?: GhostFile[];
  /** System V shared memory segments attached by the tree (engine/memory/sysvshm.ts). */
  sysvShm?: SysvShmSegment[];
  /**
   * System V objects of the host's IPC namespace the tree was seen using
   * without holding them (engine/ipc/sysv_used.ts): the restore requires
   * each to be still there, the same one.
   */
  sysvUsed?: SysvUsed[];
  /**
   * "own": the tree was dumped in a pid and mount namespace of its own made
   * by `cryo launch` (its root is pid 1 there; pids are the inner ones);
   * restore re-creates such namespaces (engine/pidns/).
   */
  pidNamespace?: "own";
  /** The other namespaces of a launched tree: UTS, IPC, private tmpfs mounts (engine/pidns/extras.ts). */
  namespaces?: NamespaceExtras;
  /**
   * The parent image of a pre-copy chain (`dump --parent`): its directory
   * (absolute) and the SHA-256 of its manifest.json; page runs with `parent`
   * are read there (engine/image/chain.ts).
   */
  parent?: { dir: string; manifestSha256: string };
  /**
   * A pre-dump (`dump --pre-dump`): the tree was left running with dirty
   * tracking armed; the userfaultfd each process keeps, and the generation
   * a later `--parent` dump must match (engine/dump/tracking.ts).
   */
  tracking?: { generation: string; fds: { pid: number; fd: number }[] };
}

/** What a launched tree's own UTS and IPC namespaces and private mounts hold. */
export interface NamespaceExtras {
  /** Its own UTS namespace: the names in it. */
  uts?: { hostname: string; domainname: string };
  /** Its own IPC namespace (its shm segments, attached or not, are in {@link Manifest.sysvShm}). */
  ipc?: {
    msgQueues: SysvMsgQueue[];
    semSets: SysvSemSet[];
    /** The namespace's limits (/proc/sys/kernel/{msgmax,...}, /proc/sys/fs/mqueue/*), by path. */
    sysctls: Record<string, string>;
  };
  /** tmpfs mounts made in its mount namespace, in mount order. */
  mounts?: TmpfsMount[];
}

/** A System V object the tree used in the host's IPC namespace (engine/ipc/sysv_used.ts). */
export interface SysvUsed {
  kind: "sem" | "msg" | "shm";
  id: number;
  /** 0 = IPC_PRIVATE. */
  key: number;
  /** Its creator's uid and gid. */
  cuid: number;
  cgid: number;
  /** Semaphores of a set, bytes of a segment, 0 for a queue. */
  size: number;
  /** How the dump saw the tree use it (for the restore's error). */
  why: string;
}

/** Owner, mode, key and id of a System V IPC object. */
export interface SysvIpcIds {
  id: number;
  /** 0 = IPC_PRIVATE. */
  key: number;
  mode: number;
  uid: number;
  gid: number;
  cuid: number;
  cgid: number;
}

/** A System V message queue with its messages. */
export interface SysvMsgQueue extends SysvIpcIds {
  /** msg_qbytes, the queue's byte limit. */
  qbytes: number;
  /** Messages in queue order: type (decimal) and text (base64). */
  messages: { mtype: string; text: string }[];
}

/** A System V semaphore set with its values. */
export interface SysvSemSet extends SysvIpcIds {
  values: number[];
}

/** A tmpfs mounted by a launched tree, with its files. */
export interface TmpfsMount {
  mountPoint: string;
  /** Source as mounted ("tmpfs", "none", ...). */
  source: string;
  /** Per-mount options from mountinfo ("rw,nosuid,relatime"). */
  mountOptions: string;
  /** Superblock options from mountinfo ("rw,size=1024k,mode=755"). */
  superOptions: string;
  /** Regular files' contents, one after the other, in this image file. */
  file: string;
  checksum: string;
  /** Every entry, parents before children; "" is the mount's root. */
  entries: TmpfsEntry[];
}

/** One directory, regular file or symlink of a {@link TmpfsMount}. */
export interface TmpfsEntry {
  path: string;
  type: "dir" | "file" | "symlink";
  /** Permission bits with setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  /** Modification and access times, ms since the epoch (not for symlinks). */
  mtime: number;
  atime: number;
  /** Symlink target. */
  target?: string;
  /** Regular file: where its content starts in the data file, and its size. */
  offset?: number;
  size?: number;
}

/** A System V shared memory segment, re-created by the engine with the same id before the launch. */
export interface SysvShmSegment {
  shmid: number;
  /** The key (0 = IPC_PRIVATE, as for every segment marked for removal). */
  key: number;
  size: number;
  /** Permission bits. */
  mode: number;
  uid: number;
  gid: number;
  cuid: number;
  cgid: number;
  /** Marked for removal (IPC_RMID, SHM_DEST): removed again once the tree has attached it. */
  removed: boolean;
  /** A SHM_HUGETLB segment's huge page size in bytes (made again with it). */
  hugePageSize?: number;
  /** Content file in the image directory, and its CRC-32. */
  file: string;
  checksum: string;
}

/** One process entry of the manifest. */
export interface ManifestProcess {
  pid: number;
  ppid: number;
  /** Image file name relative to the directory, e.g. "1234.elf". */
  file: string;
  /** Size of the image file in bytes. */
  size: number;
  /**
   * Checksum of the whole image file, "crc32:<8 hex digits>" (CRC-32 as in
   * zlib; it guards against corruption and truncation, not tampering).
   */
  checksum: string;
  threads: number[];
  comm: string;
  /**
   * Optional: CRC-32 of each block of the page data (engine/image/page_blocks.ts),
   * so that a lazy restore checks pages block by block; absent: whole-file check only.
   */
  pageBlocks?: PageBlocks;
}

/** CRC-32 of each `size`-byte block of an image's `.cryo.pages` (the last block may be shorter). */
export interface PageBlocks {
  /** File offset of the page data (`.cryo.pages`). */
  offset: number;
  /** Its length in bytes. */
  length: number;
  /** Block size in bytes (a multiple of 4096; the dumper writes 1 MiB). */
  size: number;
  /** Base64 of the blocks' CRC-32s as little-endian u32s, ceil(length / size) of them. */
  crcs: string;
}

/** Facts about the dumping host that a restore must match. */
export interface HostFacts {
  /** `uname -r`. */
  kernelRelease: string;
  /** Hostname (informative). */
  hostname: string;
  /** The vvar/vdso mappings: name and size, in address order. */
  vdso: { name: string; size: number }[];
  /** SHA-256 of the [vdso] bytes. */
  vdsoSha256: string;
  /** XCR0 feature mask used by XSAVE areas in this image (hex). */
  xfeatures: Hex;
  /** XSAVE area size in bytes. */
  xsaveSize: number;
  /** Page size. */
  pageSize: number;
  /**
   * CLOCK_MONOTONIC and CLOCK_BOOTTIME (decimal ns) once the tree's state
   * was taken: a restore where they are lower would turn the tree's clocks
   * back (engine/task/clocks.ts). Absent in older images.
   */
  clocks?: { monotonicNs: string; boottimeNs: string };
}

/** Totals reported by a dump. */
export interface DumpStats {
  processes: number;
  threads: number;
  mappings: number;
  /** Bytes of page data written. */
  pagesBytes: number;
  /** Total image bytes. */
  imageBytes: number;
  /** Seconds the tree was frozen. */
  freezeSeconds: number;
  /** Seconds the whole dump took. */
  dumpSeconds: number;
  /**
   * Bytes of pages children share with their parents (copy-on-write since a
   * fork), stored once in the parent's image; absent when none.
   */
  sharedBytes?: number;
  /**
   * `dump --leave-running` with pre-copy: bytes copied while the tree ran,
   * how many of them were still valid at the dump (not written meanwhile),
   * and the seconds of the first freeze (included in `freezeSeconds`).
   */
  precopy?: { bytes: number; reusedBytes: number; frozenSeconds: number };
  /** `dump --parent`: bytes referenced in the parent chain instead of copied. */
  parentReusedBytes?: number;
}

/** Permission bits, owner and times of a directory. */
export interface DirAttrs {
  /** Permission bits (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Access and modification times as [seconds, nanoseconds], when statx told them. */
  atime?: [number, number];
  mtime?: [number, number];
}

/** Everything cryo knows about one process. */
export interface ProcessImage {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  comm: string;
  exe: FileIdentity | null;
  cwd: string;
  root: string;
  /**
   * Device and inode of the cwd and root directories at dump: restore
   * refuses another directory at their paths. Absent in images of older
   * cryo versions.
   */
  dirIds?: { cwd: DirId; root: DirId };
  /**
   * Mode, owner and times of the cwd when it was deleted at dump (the
   * directory a restore makes again gets them back). Absent otherwise and
   * in images of older cryo versions.
   */
  cwdAttrs?: DirAttrs;
  umask: number;
  personality: number;
  cmdline: string[];
  creds: Credentials;
  mm: MmFields;
  /** Raw auxv as pairs [type, value] (hex values). */
  auxv: [number, Hex][];
  rlimits: Rlimit[];
  mappings: Mapping[];
  threads: ThreadState[];
  /** Signal dispositions 1..64 (index 0 = signal 1). */
  sigactions: SigAction[];
  /** Signals pending for the whole process. */
  sharedPending: SigInfoRecord[];
  itimers: { real: ITimer; virtual: ITimer; prof: ITimer };
  fds: FdInfo[];
  /** Child pids (processes of the tree). */
  children: number[];
  /** Start of the bootstrap range reserved for the restore stub. */
  bootstrap: { start: Hex; size: number };
  /** The id of the dump that wrote it ({@link Manifest.dumpId}). */
  dumpId?: string;
  /** Things left out of the image on purpose (policy include/exclude). */
  excluded: { what: string; reason: string }[];
  /** POSIX timers (timer_create), by id; absent in images of processes without any. */
  posixTimers?: PosixTimer[];
  /**
   * Controlling terminal (tty_nr of /proc/<pid>/stat, 0 for none) and the
   * foreground process group of that terminal (tpgid; -1 for none).
   */
  ctty?: { ttyNr: number; fgPgrp: number };
  /** Lines of /proc/<pid>/cgroup ("<id>:<controllers>:<path>"); restore moves it back there. */
  cgroups?: string[];
  /**
   * The threads whose cgroups differ from the process's (a v1 hierarchy's
   * `tasks`, a v2 threaded subtree's `cgroup.threads`): the lines that
   * differ, by tid; restore moves each thread back there. Absent when none.
   */
  threadCgroups?: { tid: number; cgroups: string[] }[];
  /** oom_score_adj, dumpable, subreaper, THP disable, membarrier, login ids (engine/task/). */
  attrs?: ProcessAttrs;
  /**
   * Process-wide memory settings, absent when none: mlockall(MCL_FUTURE)
   * ("onfault" with MCL_ONFAULT), KSM merge-any.
   */
  memoryFlags?: { mlockFuture?: "locked" | "onfault"; ksmMergeAny?: true };
  /**
   * Restored by inheritance: the parent forks it once the parent's memory
   * is in, and it keeps the mappings marked `inherited` instead of exec'ing
   * its image (it shared pages or shared anonymous memory with the parent).
   */
  inheritsMemory?: true;
  /**
   * Its fd table is its parent's (clone with CLONE_FILES, no exec since):
   * `fds` is empty, the parent restores the table once, and this process,
   * restored by inheritance (`inheritsMemory`, never exec'ed), is forked
   * into it with CLONE_FILES and runs its program while the parent waits
   * at that fork (engine/task/shared_tables.ts).
   */
  sharesParentFiles?: true;
  /**
   * Its cwd, root and umask are its parent's (clone with CLONE_FS): the
   * parent forks it with CLONE_FS, so both set the same ones into one
   * fs_struct (engine/task/shared_tables.ts).
   */
  sharesParentFs?: true;
  /**
   * Children of this process that had exited and were not reaped yet
   * (zombies): re-created at restore, exited as they were, for this
   * process to reap. Absent in images without any.
   */
  zombies?: ZombieChild[];
  /**
   * Set when the process was in a group stop (SIGSTOP, SIGTSTP, ...): it is
   * restored stopped by the same signal. Absent when it was running.
   */
  stopped?: GroupStop;
  /**
   * Live children (in the tree) whose continue report (waitpid WCONTINUED)
   * this process had not collected: made again at restore
   * (engine/task/continued.ts). Absent when none.
   */
  continuedChildren?: number[];
}

/** A zombie child: an exited process its parent had not reaped. */
export interface ZombieChild {
  pid: number;
  pgid: number;
  sid: number;
  comm: string;
  /** The raw wait status its parent will read (exit code << 8, or the killing signal). */
  waitStatus: number;
  /** The signal its parent gets when it exits (normally SIGCHLD). */
  exitSignal: number;
  /** Its uids and gids (real, effective, saved, fs) and supplementary groups. */
  creds?: { uid: number[]; gid: number[]; groups: number[] };
}

/** A group stop in effect at the dump. */
export interface GroupStop {
  /** The stop signal (WSTOPSIG of the parent's waitpid(WUNTRACED)). */
  signal: number;
  /**
   * Whether the parent (in the tree) had already collected the stop report
   * (waitpid with WUNTRACED): if so, the restore consumes the new report for
   * it, so the parent does not see the same stop twice.
   */
  reported: boolean;
}

/** Identity of a file, to detect changes between dump and restore. */
export interface FileIdentity {
  path: string;
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  /**
   * Change time in ns since the epoch, as a decimal string (statx): set by
   * the kernel on every write, truncate or metadata change and never by
   * utimes, so a file rewritten with its old mtime still differs. Absent in
   * images of older cryo versions.
   */
  ctimeNs?: string;
  /** A device node's device number (st_rdev): what it opens, whatever its inode. */
  rdev?: number;
}

/** A directory's device and inode. */
export interface DirId {
  dev: number;
  ino: number;
}

/** Real, effective, saved and fs uids/gids plus supplementary groups. */
export interface Credentials {
  uid: [number, number, number, number];
  gid: [number, number, number, number];
  groups: number[];
  capEff: Hex;
}

/** The mm fields of /proc/<pid>/stat, as PR_SET_MM_MAP wants them. */
export interface MmFields {
  startCode: Hex;
  endCode: Hex;
  startData: Hex;
  endData: Hex;
  startBrk: Hex;
  brk: Hex;
  startStack: Hex;
  argStart: Hex;
  argEnd: Hex;
  envStart: Hex;
  envEnd: Hex;
}

/** One resource limit (RLIM_INFINITY = "inf"). */
export interface Rlimit {
  resource: number;
  name: string;
  soft: number | "inf";
  hard: number | "inf";
}

/** How a mapping is backed. */
export type MappingKind =
  | "anon" // private anonymous (incl. heap, stack)
  | "anon-shared" // MAP_SHARED|MAP_ANONYMOUS (or /dev/zero shared)
  | "file-private"
  | "file-shared"
  | "vdso" // [vdso], [vvar], [vvar_vclock]
  | "vsyscall"
  | "sysv-shm" // a System V shm attachment ({@link Mapping.sysvShm}), its pages not saved here
  | "aio" // the ring of a native AIO context ({@link Mapping.aio}), re-created by io_setup
  | "packet-ring"; // a packet socket's mmapped rings ({@link PacketRing}), mapped when the socket is made

/** One virtual memory area and where its saved pages are in the image. */
export interface Mapping {
  start: Hex;
  end: Hex;
  /** "rwxp" style as in /proc/<pid>/maps. */
  perms: string;
  /** File offset of the mapping (for file mappings). */
  offset: Hex;
  kind: MappingKind;
  /** Pathname column of maps ("[heap]", "/usr/lib/...", "" ...). */
  name: string;
  /** Backing file identity for file mappings. */
  file?: FileIdentity;
  /** smaps VmFlags, e.g. ["rd","wr","mr","mw","me","ac","gd"]. */
  vmFlags: string[];
  /** Runs of saved pages: [address, length, offset into the image file]. */
  pages: PageRun[];
  /** Left out by a policy: restored empty (zero-filled or as the file has it). */
  excluded?: boolean;
  /** A deleted file or memfd saved by content: the id of its {@link GhostFile}. */
  ghost?: string;
  /** Guard regions (MADV_GUARD_INSTALL, pagemap bit 58) inside the mapping. */
  guards?: { addr: Hex; length: number }[];
  /**
   * Kept from the parent's copy (same range, backing and flags): `pages`
   * are only the pages that differ from the parent's, `discard` the pages
   * the parent has and this process has not (dropped with MADV_DONTNEED).
   */
  inherited?: true;
  /** Pages to drop from an inherited mapping. */
  discard?: { addr: Hex; length: number }[];
  /** A System V shm attachment: the shmid (the restore program attaches it with shmat). */
  sysvShm?: number;
  /** The ring of a native AIO context (engine/memory/aio.ts). */
  aio?: AioRing;
  /** Its own NUMA memory policy (mbind), when it has one (engine/memory/mempolicy.ts). */
  mempolicy?: MemPolicy;
  /**
   * A shared anonymous mapping grown past its memory object (mremap): the
   * bytes of it the object covers; the rest raises SIGBUS
   * (engine/memory/shmem_pages.ts). Absent: the object covers it all.
   */
  shmemSize?: number;
  /**
   * A shared anonymous mapping that continues the memory object of the
   * mapping before it (one area split by mprotect or madvise): restored as
   * part of one object with it (engine/memory/shmem_restore.ts).
   */
  shmemJoin?: true;
  /**
   * A piece of a shared anonymous object that this process maps in several
   * places not side by side (a piece moved by mremap): the object's inode
   * (its identity within the dump) and size in bytes. The restore makes the
   * object once, that long, and maps each piece from it at its offset
   * (engine/memory/shmem_restore.ts). `forChildren`: the object is also
   * mapped by inheriting children at other addresses (this process makes
   * it and keeps it mapped until they are forked); `inParent`: the parent
   * made it, and this inheriting child maps its pieces from the parent's
   * mapping of it (engine/memory/inherit.ts).
   */
  shmemObject?: { id: number; size: number; forChildren?: true; inParent?: true };
  /**
   * An anonymous hugetlb mapping (MAP_HUGETLB, VmFlags "ht"): its huge page
   * size in bytes (smaps KernelPageSize), mapped again with it
   * (engine/memory/hugetlb.ts).
   */
  hugePageSize?: number;
}

/** A native AIO context (io_setup), known by its ring mapping; its address is the context id. */
export interface AioRing {
  /** The kernel's index of the context in the process's table (the ring header's id). */
  id: number;
  /** Event slots of the ring (the header's nr). */
  nr: number;
  /** The count io_setup is given at restore: the smallest that makes a ring of this size. */
  nrEvents: number;
  /** Next event to reap. */
  head: number;
  /** Next slot the kernel fills; the events from head to tail are completed and not reaped. */
  tail: number;
  /** The whole ring (header and every event slot), base64. */
  ring: string;
}

/** A contiguous run of saved pages. */
export interface PageRun {
  /** Virtual address of the first page. */
  addr: Hex;
  /** Length in bytes (page multiple). */
  length: number;
  /** Offset of the data in the image file (page aligned). */
  fileOffset: number;
  /**
   * The data is not in this image but in its ancestor this many steps up
   * the parent chain (1: the parent), in the same pid's file at
   * `fileOffset` (engine/image/chain.ts). Absent: in this file.
   */
  parent?: number;
}

/** State of one thread. */
export interface ThreadState {
  tid: number;
  comm: string;
  /** user_regs_struct fields by name (hex). */
  regs: Record<string, Hex>;
  /**
   * XSAVE area, base64 (standard NT_X86_XSTATE layout): in images written
   * before its bytes moved to the thread's `NT_X86_XSTATE` note, and for an
   * area too short to have one. Absent: see {@link xstate}. Read both
   * through engine/image/thread_xsave.ts `threadXsave`.
   */
  xsave?: string;
  /**
   * The XSAVE area's bytes when the record has no {@link xsave}: the
   * thread's `NT_X86_XSTATE` note, attached by the image reader (or by the
   * dump); not enumerable, so never in the JSON
   * (engine/image/thread_xsave.ts).
   */
  xstate?: Uint8Array;
  /** Blocked signals mask (hex). */
  sigmask: Hex;
  /** Signals pending for this thread only. */
  pending: SigInfoRecord[];
  sigaltstack: { sp: Hex; flags: number; size: number };
  /** rseq registration, or null. */
  rseq: { addr: Hex; len: number; sig: Hex; flags: number } | null;
  robustList: { head: Hex; len: number };
  clearChildTid: Hex;
  /** True when the thread was stopped inside a syscall that must restart. */
  syscall: { nr: number; restart: "none" | "restart" | "eintr" };
  /** Policy, priorities, nice, affinity, timer slack, ioprio (engine/task/sched.ts). */
  sched?: ThreadSched;
  /** Its NUMA memory policy (set_mempolicy), when it has one (engine/memory/mempolicy.ts). */
  mempolicy?: MemPolicy;
  /** Parent-death signal and no_new_privs (engine/task/attrs.ts). */
  attrs?: ThreadAttrs;
  /** Seccomp mode and filters (engine/task/seccomp.ts). */
  seccomp?: SeccompState;
  /**
   * This thread's credentials (the kernel keeps them per thread). Absent in
   * images written before credentials were restored: such images are refused.
   */
  creds?: ThreadCredentials;
}

/**
 * One thread's credentials: ids from /proc/<pid>/task/<tid>/status, the
 * securebits and keep-caps flag read by prctl injected into the thread.
 */
export interface ThreadCredentials {
  /** Real, effective, saved set and filesystem uid. */
  uid: [number, number, number, number];
  /** Real, effective, saved set and filesystem gid. */
  gid: [number, number, number, number];
  /** Supplementary groups (sorted, as the kernel keeps them). */
  groups: number[];
  /** Inheritable capabilities (hex mask, bit n = capability n). */
  capInh: Hex;
  /** Permitted capabilities. */
  capPrm: Hex;
  /** Effective capabilities. */
  capEff: Hex;
  /** Capability bounding set. */
  capBnd: Hex;
  /** Ambient capabilities. */
  capAmb: Hex;
  /** prctl(PR_GET_SECUREBITS), including the keep-caps bit (SECBIT_KEEP_CAPS) and lock bits. */
  securebits: number;
  /** prctl(PR_GET_KEEPCAPS). */
  keepCaps: boolean;
  /** The no_new_privs bit. */
  noNewPrivs: boolean;
}

/** A pending signal with its raw siginfo (base64, 128 bytes). */
export interface SigInfoRecord {
  signo: number;
  code: number;
  raw: string;
}

/** A kernel sigaction. */
export interface SigAction {
  handler: Hex;
  flags: Hex;
  restorer: Hex;
  mask: Hex;
}

/** An interval timer value (microseconds). */
export interface ITimer {
  intervalUs: number;
  valueUs: number;
}

/** What an fd refers to. */
export type FdKind =
  | "file"
  | "directory"
  /** An O_PATH fd of a symbolic link itself, a socket's file or a FIFO. */
  | "path"
  | "chardev"
  | "blockdev"
  | "pipe"
  | "fifo"
  | "socket"
  | "eventfd"
  | "epoll"
  | "timerfd"
  | "signalfd"
  | "inotify"
  | "fanotify"
  | "pidfd"
  /** A POSIX message queue descriptor of a named queue (engine/fds/mqueue.ts). */
  | "mqueue"
  | "memfd"
  | "tty"
  | "anon"
  | "unknown";

/** One open file descriptor. */
export interface FdInfo {
  fd: number;
  kind: FdKind;
  /** readlink of /proc/<pid>/fd/<fd>. */
  target: string;
  /** open flags from fdinfo (octal in /proc, number here), without O_CLOEXEC. */
  flags: number;
  cloexec: boolean;
  /** Offset (0 past 2^53: the exact decimal is then in extra.pos). */
  pos: number;
  mntId: number;
  /** File identity for regular files and dirs. */
  file?: FileIdentity;
  /** Per-kind extras from fdinfo (eventfd-count, tfd, inotify wd, ...). */
  extra: Record<string, string>;
  /** Restore hint: how restore re-creates it ("open", "inherit:stdin", ...). */
  restore: string;
  /** Index of another fd (same open file description) this one duplicates. */
  sameAs?: number;
  /** Left out by a policy: restored closed. */
  excluded?: boolean;
  /**
   * Id of the open file description when several processes of the tree
   * hold it (kcmp KCMP_FILE across pids): "<pid>:<fd>" of its first holder.
   */
  description?: string;
  /** F_GETOWN_EX owner (type F_OWNER_TID/PID/PGRP, pid) and F_GETSIG signal, when set. */
  owner?: { type: number; pid: number; sig: number };
  /** An IPv4/IPv6 TCP or UDP socket: its state (engine/fds/tcp.ts, udp.ts). */
  inet?: InetSocket;
  /** A netlink socket: its state (engine/fds/netlink.ts). */
  netlink?: NetlinkSocket;
  /** An AF_PACKET socket: its state (engine/fds/packet.ts). */
  packet?: PacketSocket;
  /** A deleted file or memfd saved by content: the id of its {@link GhostFile}. */
  ghost?: string;
  /** Socket state (unix sockets, on fds 0-2 too; see engine/fds/unix.ts and socket_common.ts). */
  socket?: SocketImage;
  /** inotify watches, by wd, with the paths found at dump (engine/fds/inotify.ts). */
  inotify?: InotifyWatchImage[];
  /**
   * A POSIX message queue (kind "mqueue", engine/fds/mqueue.ts): its name
   * ("/name") and the queue's inode, which the restore opens by name again.
   */
  mqueue?: { name: string; dev: number; ino: number };
}

/** An IPv4 or IPv6 socket address. */
export interface SockAddr {
  address: string;
  port: number;
  flowinfo?: number;
  scopeId?: number;
}

/** One socket option as read with getsockopt and put back with setsockopt. */
export interface SockOption {
  level: number;
  name: number;
  /** For people: "SO_REUSEADDR", "TCP_NODELAY", ... */
  label: string;
  /** An int option's value. */
  int?: number;
  /** Any other option's bytes, base64. */
  bytes?: string;
}

/**
 * A TCP, UDP, UDP-Lite, ICMP echo ("ping": SOCK_DGRAM IPPROTO_ICMP or
 * IPPROTO_ICMPV6) or raw socket (IPv4 or IPv6).
 */
export interface InetSocket {
  family: "ipv4" | "ipv6";
  proto: "tcp" | "udp" | "udplite" | "ping" | "raw";
  /** A raw socket's IP protocol (SO_PROTOCOL: 255 = IPPROTO_RAW, 1 = ICMP, ...). */
  protocol?: number;
  /** TCP: listen, established or closed (never connected); the others: closed. */
  state: "listen" | "established" | "closed";
  /** Bound address, or null for an unbound socket. */
  local: SockAddr | null;
  /** Connected peer, or null. */
  peer: SockAddr | null;
  /** Options put back after the socket is re-created. */
  options: SockOption[];
  /**
   * SO_SNDBUF / SO_RCVBUF as getsockopt reports them, when not the kernel
   * default; `lock`: SO_BUF_LOCK (which sizes are fixed), when not 0 or
   * when a size is recorded.
   */
  buffers?: { snd?: number; rcv?: number; lock?: number };
  /**
   * A TCP listener of a SO_REUSEPORT group whose SO_REUSEPORT was cleared
   * after its bind: bound with it on again, cleared after listen().
   */
  reuseportGroup?: boolean;
  /**
   * UDP: sk_shutdown (1 receive side, 2 send side, 3 both) when not 0. TCP
   * (closed, 3): a connection dumped or restored with `--tcp-close`, back
   * as a socket shut down both ways (reads give 0, writes EPIPE).
   */
  shutdown?: number;
  /**
   * Its classic BPF filter (SO_ATTACH_FILTER): `code`, the instructions
   * (base64 of `struct sock_filter`s) and `locked`, SO_LOCK_FILTER.
   */
  filter?: { code?: string; locked?: boolean };
  /** listen() backlog. */
  backlog?: number;
  /** An established connection's state, read in TCP repair mode. */
  tcp?: TcpConnection;
  /**
   * UDP: the datagrams waiting to be read, oldest first (peeked at dump,
   * sent again from their senders' addresses at restore). Absent when none.
   */
  datagrams?: QueuedDatagram[];
  /** Its owner (sk_uid, the socket inode's owner) when not root: restore creates it with these fs ids. */
  owner?: { uid: number; gid: number };
  /**
   * Bound to an address this host did not have at dump, with IP_FREEBIND and
   * IP_TRANSPARENT off (turned off after the bind): restore binds it with
   * IP_FREEBIND on for the bind only.
   */
  nonLocal?: true;
}

/** A UDP datagram waiting in a socket's receive queue. */
export interface QueuedDatagram {
  /** Its sender, as recvfrom reports it (a v4-mapped address on a dual-stack IPv6 socket). */
  from: SockAddr;
  /** Its payload, base64 (empty for an empty datagram). */
  data: string;
}

/** An established TCP connection as TCP repair mode reads and writes it. */
export interface TcpConnection {
  /** Whether the peer socket belongs to the tree (else it needed the opt-in). */
  peerInTree: boolean;
  /** write_seq: after the last byte queued for sending. */
  sndSeq: number;
  /** rcv_nxt: the next byte expected from the peer. */
  rcvSeq: number;
  /** Send queue (sent-unacknowledged, then unsent), base64. */
  sendQueue: string;
  /** Unsent bytes at the end of the send queue. */
  unsent: number;
  /** Receive queue (received, not read by the process), base64. */
  recvQueue: string;
  mss: number;
  wscale: { snd: number; rcv: number } | null;
  sack: boolean;
  timestamps: boolean;
  /** TCP timestamp clock of the connection. */
  timestamp: number;
  window: { sndWl1: number; sndWnd: number; maxWindow: number; rcvWnd: number; rcvWup: number };
  /**
   * A connection shut down one way or both, by its TCP state: "fin-wait1"
   * (this side's FIN queued or sent, not acknowledged), "fin-wait2" (its
   * FIN acknowledged), "close-wait" (the peer's FIN received), "last-ack"
   * (the peer's FIN received, then this side's sent, not acknowledged),
   * "closing" (this side's FIN sent, then the peer's received, this side's
   * not acknowledged). `sndSeq` counts this side's FIN, `rcvSeq` the
   * peer's; the queues and `unsent` hold bytes only. Absent: established.
   */
  closing?: TcpClosing;
  /** The receive side shut down by the program (shutdown SHUT_RD), not by the peer's FIN. */
  readShut?: true;
}

/** The states of a connection shut down one way or both ({@link TcpConnection.closing}). */
export type TcpClosing = "fin-wait1" | "fin-wait2" | "close-wait" | "last-ack" | "closing";

/** A netlink socket (NETLINK_ROUTE) with nothing queued. */
export interface NetlinkSocket {
  /** Netlink protocol (0 = NETLINK_ROUTE, 15 = NETLINK_KOBJECT_UEVENT). */
  protocol: number;
  /** SOCK_RAW or SOCK_DGRAM (the same for netlink). */
  type: number;
  /** Bound port id (0: not bound). */
  portid: number;
  /** Every multicast group joined (1-based numbers). */
  groups: number[];
  /** Connected destination (port id, group), or null. */
  peer: { portid: number; groups: number } | null;
  /** SOL_NETLINK and SOL_SOCKET options that differ from a fresh socket's. */
  options: SockOption[];
  /** SO_SNDBUF / SO_RCVBUF when not the kernel default; SO_BUF_LOCK as for {@link InetSocket}. */
  buffers?: { snd?: number; rcv?: number; lock?: number };
  /** Its owner (sk_uid, the socket inode's owner) when not root: restore creates it with these fs ids. */
  owner?: { uid: number; gid: number };
}

/** An AF_PACKET socket (SOCK_RAW or SOCK_DGRAM) with nothing queued and no ring. */
export interface PacketSocket {
  /** SOCK_DGRAM (2) or SOCK_RAW (3). */
  type: number;
  /** Its protocol (an ethertype, host order; 0: receives nothing). */
  protocol: number;
  /** Bound interface's index (0: every interface). */
  ifindex: number;
  /** That interface's name at dump (restore refuses when the index names another). */
  ifname?: string;
  /** SOL_PACKET and SOL_SOCKET options that differ from a fresh socket's. */
  options: SockOption[];
  /** SO_SNDBUF / SO_RCVBUF as for {@link InetSocket}. */
  buffers?: { snd?: number; rcv?: number; lock?: number };
  /** PACKET_ADD_MEMBERSHIP entries (type: 0 multicast, 1 promiscuous, 2 all-multicast, 3 unicast). */
  memberships: { ifindex: number; ifname?: string; type: number; address: string; count: number }[];
  /** PACKET_FANOUT's value (group id | mode << 16 | flags << 24), when in a group. */
  fanout?: number;
  /** Its classic BPF filter, as for {@link InetSocket}. */
  filter?: InetSocket["filter"];
  /** Its owner when not root, as for {@link NetlinkSocket}. */
  owner?: { uid: number; gid: number };
  /** Its mmapped rx/tx rings (PACKET_RX_RING, PACKET_TX_RING: engine/fds/packet_ring.ts). */
  ring?: PacketRing;
}

/** One ring's geometry, as PACKET_RX_RING / PACKET_TX_RING take it (`struct tpacket_req3`). */
export interface PacketRingShape {
  blockSize: number;
  blockNr: number;
  frameSize: number;
  frameNr: number;
  /** TPACKET_V3: the block retire timeout, ms. */
  retireTmo: number;
  /** TPACKET_V3: the private area of each block, bytes. */
  sizeofPriv: number;
  /** TPACKET_V3: feature_req_word. */
  features: number;
}

/**
 * The rings of a packet socket and the program's view of them
 * (engine/fds/packet_ring.ts). The restored kernel fills its rx block 0
 * first: that block is mapped where the program's next block is
 * (`rxStart`), the rest following it round the ring.
 */
export interface PacketRing {
  /** PACKET_VERSION: 0 TPACKET_V1, 1 TPACKET_V2, 2 TPACKET_V3. */
  version: number;
  rx?: PacketRingShape;
  tx?: PacketRingShape;
  /** The program's mapping of both rings (one range), if it has one. */
  mapping?: { start: Hex; perms: string };
  /** The rx block, in the program's order, that the kernel fills next. */
  rxStart: number;
  /** Bytes put back into the program's view: offset from the mapping's start, base64. */
  saved: { at: number; data: string }[];
  /** A free range the restore maps the rings at before moving their blocks into place. */
  scratch?: Hex;
}

/**
 * A file that has no name to reopen at restore: a file deleted while open
 * or mapped (or made with O_TMPFILE), or a memfd. Its content is saved in
 * the image directory; restore re-creates it unlinked (in the original
 * directory with O_TMPFILE, or with memfd_create) and every fd and mapping
 * of the tree that used it shares the new one.
 */
export interface GhostFile {
  /** "<dev>:<ino>" of the original inode. */
  id: string;
  /**
   * "linked": a file whose name in the fd or mapping was removed but which
   * has another (a hard link): not copied, reopened by its file handle
   * (`handle`; `file`, `checksum` and `extents` are empty).
   * "dir": a removed directory an fd holds: made again at `name`, opened
   * and removed again at restore (empty: `file`, `checksum` and `extents`
   * are empty). "symlink": a removed symlink an O_PATH fd holds, made
   * again likewise with its content (`linkTarget`).
   */
  kind: "memfd" | "deleted" | "linked" | "dir" | "symlink";
  /** A removed symlink an O_PATH fd holds ("symlink"): its content. */
  linkTarget?: string;
  /** The memfd's name, or the deleted file's path. */
  name: string;
  /** How a "linked" file is found again: its kernel file handle on the mount at `mount`. */
  handle?: { type: number; hex: string; mount: string };
  /** Size in bytes (holes included). */
  size: number;
  /** st_mode permission bits, owner. */
  mode: number;
  uid: number;
  gid: number;
  /** memfd seals (F_SEAL_*). */
  seals: number;
  /** The inode's write-life hint (F_SET_RW_HINT, RWH_WRITE_LIFE_*), when set. */
  writeHint?: number;
  /**
   * Access and modification times, (seconds, nanoseconds), read before the
   * content (which a read would touch) and set back last at restore (a
   * mapping of it the restore makes then moves the access time, as any
   * mmap does).
   * Absent for a "linked" file (the same inode comes back) and in images
   * of cryo before 2026-12-03 (the re-created file then has the restore's times).
   */
  times?: { atime: [number, number]; mtime: [number, number] };
  /** Data extents [offset, length]; the rest are holes. */
  extents: [number, number][];
  /**
   * Unwritten extents [offset, length] (fallocated, never written; also past
   * `size` with FALLOC_FL_KEEP_SIZE), reserved again at restore. Absent when
   * none (or the file system shows none: tmpfs has no FIEMAP).
   */
  unwritten?: [number, number][];
  /**
   * A memfd made with MFD_HUGETLB (hugetlbfs): its huge page size in bytes;
   * `extents` are its huge pages that hold data (all-zero ones are left
   * holes). Re-created with MFD_HUGETLB and filled through a mapping
   * (engine/fds/ghost.ts).
   */
  hugePageSize?: number;
  /** File in the image directory holding the extents' bytes, one after the other. */
  file: string;
  /** CRC-32 of that file, "crc32:<hex>". */
  checksum: string;
}

/**
 * A POSIX timer (timer_create). Times are (seconds, nanoseconds) as
 * timer_gettime reports them: the time left until the next expiry is kept,
 * the time the image spends on disk does not count.
 */
export interface PosixTimer {
  /** Timer id (restored as the same id). */
  id: number;
  /** Clock id as the kernel stores it (CPU-time clocks encode a pid or tid, 0 = the creator). */
  clockid: number;
  /** sigev_notify: SIGEV_SIGNAL 0, SIGEV_NONE 1, SIGEV_THREAD 2, | SIGEV_THREAD_ID 4. */
  notify: number;
  /** Signal number sent on expiry. */
  signo: number;
  /** sigev_value (hex). */
  sigevValue: Hex;
  /** Thread the signal goes to (SIGEV_THREAD_ID), else 0. */
  tid: number;
  /** Time left until the next expiry; (0, 0) = disarmed. */
  value: [number, number];
  /** Reload interval; (0, 0) = one-shot. */
  interval: [number, number];
  /**
   * Its signal was queued and not yet delivered: the record is taken out of
   * the pending signals, and restore lets the timer expire again at once so
   * that the kernel queues its own signal.
   */
  signalPending: boolean;
}

/** A socket option to set again at restore (see engine/fds/socket_common.ts). */
export interface SocketOption {
  /** Its name, e.g. "SO_RCVTIMEO". */
  name: string;
  /** setsockopt level and option number. */
  level: number;
  optname: number;
  /** The option value as getsockopt returned it (base64). */
  value: string;
}

/** One message of a receive queue (a datagram, or a stream's bytes). */
export interface QueuedMessage {
  /** Its bytes (base64). */
  data: string;
  /** Pid of the sender's credentials, when the kernel reported it. */
  credPid?: number;
  /** Sender's address (sun_path bytes, base64) of a datagram from a bound socket. */
  from?: string;
  /** Fds passed with it (SCM_RIGHTS), in order (engine/fds/unix_scm.ts). */
  fds?: InFlightFd[];
}

/**
 * An fd in flight in a queued message: the open file description of a
 * tree fd (`ref`), or one no process of the tree holds (`file`, described
 * like an fd of the tree, its `fd` number meaningless; `again` when another
 * message carries it first). None: not identified yet (the tree pass of engine/fds/unix_scm.ts fills it in).
 */
export interface InFlightFd {
  /** The tree fd whose description it is (its first fd in that process). */
  ref?: { pid: number; fd: number };
  /** A description only the message holds. */
  file?: FdInfo;
  /** With `file`: its number, when other messages carry it too (`again`). */
  id?: number;
  /** The description with this `id`, carried by an earlier message too (one description). */
  again?: number;
}

/** State of a socket (all families). */
export interface SocketImage {
  /** AF_UNIX 1, AF_INET 2, AF_INET6 10, ... */
  family: number;
  /** SOCK_STREAM 1, SOCK_DGRAM 2, SOCK_SEQPACKET 5. */
  type: number;
  protocol: number;
  /** Options that differ from a fresh socket's, plus SO_SNDBUF and SO_RCVBUF. */
  options: SocketOption[];
  /** Unix-domain state (family 1). */
  unix?: UnixSocketImage;
}

/** State of a unix socket, from sock_diag, getsockopt and a peek at its queue. */
export interface UnixSocketImage {
  /** Socket inode (identifies it across the tree). */
  ino: number;
  /** 1 connected, 7 unconnected, 10 listening. */
  state: number;
  /** Bound address: sun_path bytes (base64); absent when unbound. */
  name?: string;
  /** Path-bound sockets: the directory to bind relative names in, and the socket file. */
  file?: {
    /** Absolute directory the (possibly relative) name is looked up from. */
    dir: string;
    /** Mode and owner of the socket file; absent when the file was gone at dump. */
    mode?: number;
    uid?: number;
    gid?: number;
    /**
     * Absolute path the socket file was renamed to after the bind (found in
     * the name's directory at dump: supervisord binds `<path>.<pid>` and
     * renames it to `<path>`). The restore binds at the name, then renames.
     */
    renamed?: string;
    /**
     * Directories removed with the socket file (absolute, outermost first):
     * made again (mode 0700) around the bind, removed again with the file.
     */
    removedDirs?: string[];
    /**
     * The tree's socket (inode) bound later at the same name, whose file is
     * there now: this one is bound first and its file removed, before that
     * one's group binds.
     */
    replacedBy?: number;
  };
  /** Inode of the peer (connected sockets). */
  peer?: number;
  /** The peer's bound address (base64): where an outside peer is reconnected. */
  peerName?: string;
  /** Listeners: backlog and the inodes of connections not accepted yet, in order. */
  listen?: { backlog: number; pending: number[] };
  /** sk_shutdown: bit 0 receive side, bit 1 send side. */
  shutdown: number;
  /** Pid of SO_PEERCRED (who connected, or made the pair). */
  peerCredPid?: number;
  /**
   * Ids the restore cannot give back, refused (engine/fds/unix.ts): an owner
   * (sock_diag) that is not its fd's, SO_PEERCRED's uid and gid when not
   * the owner's, a queued message's credentials when not root's.
   */
  nonRootIds?: string;
  /** The receive queue (each datagram, or a stream's bytes as one message). */
  queue: QueuedMessage[];
  /** The peer was closed by its last holder (its end of the connection is gone). */
  peerClosed?: boolean;
  /**
   * An error is pending (POLLERR; for a unix socket ECONNRESET: its peer was
   * closed with bytes unread). SO_ERROR would clear it, so it is not read.
   */
  pendingError?: boolean;
  /**
   * What the dump saw that cannot be restored (a row id of engine/support.ts
   * and a detail); the tree plan refuses the socket with it.
   */
  refused?: { id: string; detail: string };
  /** SO_PEERGROUPS: the supplementary groups that came with the peer credentials. */
  peerGroups?: number[];
  /** Its owner (its inode's) when not root: its group is made with these ids (engine/fds/socket_owner.ts). */
  creator?: { uid: number; gid: number };
}
