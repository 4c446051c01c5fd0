/**
 * Low-level kernel feature probes that need struct layouts: the
 * PAGEMAP_SCAN ioctl, the userfaultfd API handshake, TCP repair mode,
 * clone3 with `set_tid`, PR_SET_MM_MAP_SIZE, memfd_create and pidfd_open.
 *
 * Each function makes one or two raw calls and returns what the kernel
 * said (a result or `-errno`); deciding what that means is the engine's job
 * (engine/check.ts).
 *
 * @module
 */

import { addressOf, cstr, rawSyscall, selfPid } from "./libc.ts";
import { cloneArgs } from "./structs.ts";
import { SYS } from "./sysno.ts";

/** setsockopt(2), not (yet) in {@link SYS}. */
const SYS_SETSOCKOPT = 54;

/** The result of a raw call: the value, or `-errno` when negative. */
export type RawResult = bigint;

/** Closes `fd`, ignoring errors (probe descriptors only). */
export function closeFd(fd: number | bigint): void {
  rawSyscall(SYS.close, fd);
}

/** memfd_create flags. */
export const MFD = { CLOEXEC: 1, ALLOW_SEALING: 2 } as const;

/** memfd_create(name, flags): a new fd or `-errno`. */
export function memfdCreate(name: string, flags: number = MFD.CLOEXEC): RawResult {
  return rawSyscall(SYS.memfd_create, cstr(name), flags);
}

/** pidfd_open(pid, flags): a new fd or `-errno`. */
export function pidfdOpen(pid: number, flags = 0): RawResult {
  return rawSyscall(SYS.pidfd_open, pid, flags);
}

/** PR_GET_SPECULATION_CTRL of `which` (0 store bypass, 1 indirect branch, 2 L1D flush) in this process's calling thread, or -errno. */
export function speculationCtrl(which: number): RawResult {
  return rawSyscall(SYS.prctl, 52, which, 0, 0, 0);
}

/** prctl option PR_SET_MM. */
export const PR_SET_MM = 35;
/** PR_SET_MM sub-option: replace all mm fields at once from a `struct prctl_mm_map`. */
export const PR_SET_MM_MAP = 14;
/** PR_SET_MM sub-option: ask for the size of `struct prctl_mm_map`. */
export const PR_SET_MM_MAP_SIZE = 15;

/**
 * prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE): the size of `struct prctl_mm_map`
 * this kernel expects, or `-errno` (EINVAL without CONFIG_CHECKPOINT_RESTORE).
 */
export function prctlMmMapSize(): RawResult {
  const size = new Uint32Array(1);
  const r = rawSyscall(SYS.prctl, PR_SET_MM, PR_SET_MM_MAP_SIZE, size, 0, 0);
  return r < 0n ? r : BigInt(size[0]);
}

/**
 * Calls clone3 with `set_tid` naming this process's own pid, which is in
 * use for as long as we run, so the call can never create a process:
 *
 * - `-EEXIST`: set_tid is supported and permitted (the pid was taken);
 * - `-EPERM`: set_tid needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN;
 * - `-E2BIG` / `-EINVAL`: clone3 without set_tid (kernel < 5.5);
 * - `-ENOSYS`: no clone3 at all (kernel < 5.3).
 *
 * As a second guard the child stack is set to an unmapped low page: were a
 * child ever created it would fault on its first instruction's stack access
 * and never run any of Deno's code.
 */
export function clone3SetTidInUse(): RawResult {
  const tids = new Int32Array([selfPid()]);
  const args = cloneArgs.encode({
    flags: 0n,
    pidfd: 0n,
    childTid: 0n,
    parentTid: 0n,
    exitSignal: 17n, // SIGCHLD
    stack: 0x1000n,
    stackSize: 0x1000n,
    tls: 0n,
    setTid: addressOf(tids),
    setTidSize: 1n,
    cgroup: 0n,
  });
  return rawSyscall(SYS.clone3, args, args.byteLength);
}

/** The userfaultfd API version (UFFD_API). */
export const UFFD_API = 0xaan;

/** UFFD_FEATURE_* bits (include/uapi/linux/userfaultfd.h). */
export const UFFD_FEATURE = {
  PAGEFAULT_FLAG_WP: 1n << 0n,
  EVENT_FORK: 1n << 1n,
  EVENT_REMAP: 1n << 2n,
  EVENT_REMOVE: 1n << 3n,
  MISSING_HUGETLBFS: 1n << 4n,
  MISSING_SHMEM: 1n << 5n,
  EVENT_UNMAP: 1n << 6n,
  SIGBUS: 1n << 7n,
  THREAD_ID: 1n << 8n,
  MINOR_HUGETLBFS: 1n << 9n,
  MINOR_SHMEM: 1n << 10n,
  EXACT_ADDRESS: 1n << 11n,
  WP_HUGETLBFS_SHMEM: 1n << 12n,
  WP_UNPOPULATED: 1n << 13n,
  POISON: 1n << 14n,
  WP_ASYNC: 1n << 15n,
  MOVE: 1n << 16n,
} as const;

/** _IOWR(0xAA, 0x3F, struct uffdio_api): 24-byte argument. */
const UFFDIO_API = 0xc018aa3fn;

/** What UFFDIO_API answered. */
export interface UffdApiResult {
  /** 0, or `-errno` of the failing step (userfaultfd() or the ioctl). */
  error: RawResult;
  /** Which step failed, when one did. */
  failedCall?: "userfaultfd" | "UFFDIO_API";
  /** Features the kernel reported (all it supports when 0 was requested). */
  features: bigint;
  /** Bit mask of ioctls available on the fd. */
  ioctls: bigint;
}

/**
 * Opens a userfaultfd (O_CLOEXEC) and performs the UFFDIO_API handshake
 * requesting `features`; closes the fd again.
 */
export function userfaultfdApi(features = 0n): UffdApiResult {
  const O_CLOEXEC = 0o2000000;
  const fd = rawSyscall(SYS.userfaultfd, O_CLOEXEC);
  if (fd < 0n) return { error: fd, failedCall: "userfaultfd", features: 0n, ioctls: 0n };
  try {
    const api = new BigUint64Array([UFFD_API, features, 0n]);
    const r = rawSyscall(SYS.ioctl, fd, UFFDIO_API, api);
    if (r < 0n) return { error: r, failedCall: "UFFDIO_API", features: 0n, ioctls: 0n };
    return { error: 0n, features: api[1], ioctls: api[2] };
  } finally {
    closeFd(fd);
  }
}

/** _IOWR('f', 16, struct pm_scan_arg): 96-byte argument. */
const PAGEMAP_SCAN = 0xc0606610n;

/** PAGE_IS_* categories of PAGEMAP_SCAN (include/uapi/linux/fs.h). */
export const PAGE_IS = {
  WPALLOWED: 1n << 0n,
  WRITTEN: 1n << 1n,
  FILE: 1n << 2n,
  PRESENT: 1n << 3n,
  SWAPPED: 1n << 4n,
  PFNZERO: 1n << 5n,
  HUGE: 1n << 6n,
  SOFT_DIRTY: 1n << 7n,
  GUARD: 1n << 8n,
} as const;

/** One `struct page_region` returned by PAGEMAP_SCAN. */
export interface PageRegion {
  /** First address. */
  start: bigint;
  /** Address just past the region. */
  end: bigint;
  /** PAGE_IS_* bits of the region (masked by `returnMask`). */
  categories: bigint;
}

/** Which pages PAGEMAP_SCAN should report and how. */
export interface PagemapScanQuery {
  /** Page-aligned start of the range. */
  start: bigint;
  /** Page-aligned end of the range. */
  end: bigint;
  /** A page matches when it has any of these categories (0 = no such condition). */
  anyOf: bigint;
  /** Categories reported per region. */
  returnMask: bigint;
  /** Room for this many regions (default 64). */
  maxRegions?: number;
}

/** PAGEMAP_SCAN's answer: regions found and where the walk stopped, or `-errno`. */
export type PagemapScanResult =
  | { error: 0n; regions: PageRegion[]; walkEnd: bigint }
  | { error: RawResult; regions: []; walkEnd: 0n };

/** Opens /proc/<pid>/pagemap, runs {@link pagemapScan} on it and closes it. */
export function pagemapScanPid(pid: number, q: PagemapScanQuery): PagemapScanResult {
  const O_RDONLY_CLOEXEC = 0o2000000;
  const fd = rawSyscall(SYS.open, cstr(`/proc/${pid}/pagemap`), O_RDONLY_CLOEXEC);
  if (fd < 0n) return { error: fd, regions: [], walkEnd: 0n };
  try {
    return pagemapScan(Number(fd), q);
  } finally {
    closeFd(fd);
  }
}

/** Runs the PAGEMAP_SCAN ioctl on an open /proc/<pid>/pagemap fd. */
export function pagemapScan(fd: number, q: PagemapScanQuery): PagemapScanResult {
  const maxRegions = q.maxRegions ?? 64;
  const vec = new BigUint64Array(maxRegions * 3);
  // struct pm_scan_arg: size, flags, start, end, walk_end, vec, vec_len,
  // max_pages, category_inverted, category_mask, category_anyof_mask, return_mask
  const arg = new BigUint64Array([
    96n,
    0n,
    q.start,
    q.end,
    0n,
    addressOf(vec),
    BigInt(maxRegions),
    0n,
    0n,
    0n,
    q.anyOf,
    q.returnMask,
  ]);
  const r = rawSyscall(SYS.ioctl, fd, PAGEMAP_SCAN, arg);
  if (r < 0n) return { error: r, regions: [], walkEnd: 0n };
  const regions: PageRegion[] = [];
  for (let i = 0; i < Number(r); i++) {
    regions.push({ start: vec[i * 3], end: vec[i * 3 + 1], categories: vec[i * 3 + 2] });
  }
  return { error: 0n, regions, walkEnd: arg[4] };
}

const AF_INET = 2;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const SOL_TCP = 6;
const TCP_REPAIR = 19;

/** What a TCP repair probe reached. */
export interface TcpRepairResult {
  /** 0, or `-errno` of the failing step. */
  error: RawResult;
  /** Which step failed, when one did. */
  failedCall?: "socket" | "setsockopt(TCP_REPAIR)";
}

/**
 * Creates an unconnected IPv4 TCP socket, switches it into repair mode
 * (setsockopt TCP_REPAIR = 1, needs CAP_NET_ADMIN) and closes it.
 */
export function tcpRepairProbe(): TcpRepairResult {
  const fd = rawSyscall(SYS.socket, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0n) return { error: fd, failedCall: "socket" };
  try {
    const on = new Int32Array([1]);
    const r = rawSyscall(SYS_SETSOCKOPT, fd, SOL_TCP, TCP_REPAIR, on, 4);
    return r < 0n ? { error: r, failedCall: "setsockopt(TCP_REPAIR)" } : { error: 0n };
  } finally {
    closeFd(fd);
  }
}

/** prctl(PR_TIMER_CREATE_RESTORE_IDS): timer_create takes the timer id it is given. */
export const PR_TIMER_CREATE_RESTORE_IDS = 77;
/** Arguments of {@link PR_TIMER_CREATE_RESTORE_IDS}. */
export const TIMER_RESTORE_IDS = { OFF: 0, ON: 1, GET: 2 } as const;

/**
 * Asks whether timer_create may be given the ids of restored timers
 * (PR_TIMER_CREATE_RESTORE_IDS_GET, Linux 6.14+): 0 or 1, or `-errno`.
 */
export function timerRestoreIdsProbe(): RawResult {
  return rawSyscall(SYS.prctl, PR_TIMER_CREATE_RESTORE_IDS, TIMER_RESTORE_IDS.GET, 0, 0, 0);
}

/** ioctl TFD_IOC_SET_TICKS (_IOW('T', 0, u64)): sets a timerfd's pending expirations. */
export const TFD_IOC_SET_TICKS = 0x40085400;

/**
 * Creates a disarmed timerfd, sets its pending expirations with
 * TFD_IOC_SET_TICKS (needs CONFIG_CHECKPOINT_RESTORE) and closes it:
 * 0, or `-errno` of the failing call.
 */
export function timerfdSetTicksProbe(): RawResult {
  const fd = rawSyscall(SYS.timerfd_create, 1, /* CLOCK_MONOTONIC */ 0o2000000 /* TFD_CLOEXEC */);
  if (fd < 0n) return fd;
  try {
    return rawSyscall(SYS.ioctl, fd, TFD_IOC_SET_TICKS, new BigUint64Array([1n]));
  } finally {
    closeFd(fd);
  }
}
